-- Websocket frame helpers the two websocket scripts (ws_view.lua, ws_usage.lua) share: the renderer
-- (pooler/envoy_config/lua/__init__.py) puts this file after json.lua and before those scripts, as one chunk.
-- Positions are 1-based byte indexes.

-- The frame header starting at `pos` of `s`: its first byte, its second byte, the header's length (a mask key
-- included) and the payload's length; nil when `s` ends inside the header.
local function frame_head(s, pos)
  local b0, b1 = string.byte(s, pos, pos + 1)
  if b1 == nil then return nil end
  local plen, hlen = b1 % 128, 2
  if plen == 126 then hlen = 4 elseif plen == 127 then hlen = 10 end
  if b1 >= 128 then hlen = hlen + 4 end
  if #s - pos + 1 < hlen then return nil end
  if plen == 126 then
    local x, y = string.byte(s, pos + 2, pos + 3)
    plen = x * 256 + y
  elseif plen == 127 then
    plen = 0
    for k = pos + 2, pos + 9 do plen = plen * 256 + string.byte(s, k) end
  end
  return b0, b1, hlen, plen
end
