#!/usr/bin/env bash
# Installs the Debian packages the tests need, once: Chromium (the admin browser tests) and LuaJIT (the Envoy Lua
# scripts' unit tests run under the Lua Envoy embeds). Skips quietly when every one is present.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v luajit >/dev/null 2>&1 || missing+=(luajit)
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${missing[*]}: install Debian's package(s) of that name (needs root)" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
