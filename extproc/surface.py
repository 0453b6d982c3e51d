"""Hooks of the request-headers decision beyond auth and the pick: gates, file pins, admission, the client's
quota view, pooled usage. `AttemptProcessor` calls these at fixed points; all of it runs inside the one
request-headers message (no extra synchronous round trip on the Codex routes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf.struct_pb2 import Struct

from extproc import responses
from extproc.admission import AdmissionControl
from extproc.files import FilePins
from extproc.state import GatewayState
from extproc.structs import string_field
from pooler import gateway_contract as gc
from pooler import route_table as rt
from pooler.gateway.files import file_hash, file_id_from_path, file_ids_from_metadata
from pooler.gateway.ratelimit_view import WS_VIEW_KEY, header_values, key_usage_payload, ws_view_value
from pooler.gateway.snapshot import PoolEntry, Snapshot
from pooler.selection import pooled_usage, pooled_usage_payload

WS_EXTENSIONS_HEADER = "sec-websocket-extensions"


class Surface:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.pins = FilePins()
        self.admission = AdmissionControl()
        # pool id -> (candidates it was computed from, second, header values, header values + websocket frame view)
        self._views: dict[int, tuple[object, int, dict[str, str], dict[str, str]]] = {}
        state.finish_hooks.append(self.admission.release)

    # --- gates ----------------------------------------------------------------------------------------------
    def gate(
        self,
        snapshot: Snapshot,
        pool_id: int,
        family: str,
        headers: Mapping[str, str],
        request_ns: Any,
        routing: Mapping[str, Any],
    ) -> ep.ProcessingResponse | None:
        features = snapshot.features
        image = family == gc.ROUTE_IMAGES or string_field(request_ns, gc.REQUEST_IMAGE_TOOL) == "1"
        if image and not features.pool(pool_id).image_generation:
            return responses.error("image_generation_disabled", routing)
        if family == gc.ROUTE_TRANSCRIBE:
            length = headers.get("content-length")
            if length is None or not length.isdigit():
                return responses.error("length_required", routing)
            if features.transcription_max_bytes and int(length) > features.transcription_max_bytes:
                return responses.error("request_too_large", routing)
        return None

    def pinned_account(self, pool_id: int, path: str, request_ns: Any, now: float) -> int | bool | None:
        """The account a referenced file lives in; None = no known file referenced; False = the request names
        files of two different accounts (cannot be served by one)."""
        ids = file_ids_from_metadata(string_field(request_ns, gc.REQUEST_FILE_IDS))
        from_path = file_id_from_path(path)
        if from_path:
            ids.append(from_path)
        if not ids:
            return None
        found: set[int] = set()
        for file_id in ids:
            account = self.pins.lookup(pool_id, file_hash(self.state.ctx.hasher, pool_id, file_id), now)
            if account is not None:
                found.add(account)
        if len(found) > 1:
            return False
        return next(iter(found)) if found else None

    # --- the client's quota view ----------------------------------------------------------------------------
    def view_values(
        self, snapshot: Snapshot, pool: PoolEntry, key_id: int, route: rt.Route, now: float
    ) -> dict[str, str]:
        if not route.pooled_view:
            return {}
        features = snapshot.features
        websocket = route.websocket
        if features.key(key_id).hide_upstream_quota:
            return _with_ws(self.key_payload(snapshot, key_id, pool, now), websocket)
        if not features.pool(pool.pool_id).pooled_rate_limits:
            return {}
        second = int(now)
        cached = self._views.get(pool.pool_id)
        # pooled_usage walks every account: computed at most once per second per pool (and when evidence
        # changed, which replaces `candidates`), so the per-request cost is a dict lookup.
        if cached is None or cached[0] is not pool.candidates or cached[1] != second:
            payload = pooled_usage_payload(pooled_usage(pool.policy, pool.candidates, now), now)
            cached = (pool.candidates, second, _with_ws(payload, False), _with_ws(payload, True))
            self._views[pool.pool_id] = cached
        return cached[3] if websocket else cached[2]

    def key_payload(self, snapshot: Snapshot, key_id: int, pool: PoolEntry, now: float) -> dict[str, Any]:
        key = next((k for k in snapshot.keys.values() if k.key_id == key_id), None)
        used = self.state.tokens.used(key.prefix, now) if key is not None else 0
        plan = pooled_usage(pool.policy, pool.candidates, now).plan_type
        return key_usage_payload(used, key.tokens_per_day if key is not None else None, now, plan)

    def quota_headers(self, snapshot: Snapshot, pool: PoolEntry, key_id: int, now: float) -> dict[str, str]:
        """The `x-codex-*` quota headers of a gateway-made answer (its 429): the figures `/wham/usage` shows this
        key, named as the upstream names them. Not the per-second cached view: this is the rare path, and it
        applies even where the pool's pooled view of forwarded answers is off (no upstream header to keep)."""
        values = header_values(self.usage_payload(snapshot, pool, key_id, now))
        return {header: values[key] for header, key in gc.VIEW_HEADERS.items() if key in values}

    def usage_payload(self, snapshot: Snapshot, pool: PoolEntry, key_id: int, now: float) -> dict[str, Any]:
        if snapshot.features.key(key_id).hide_upstream_quota:
            return self.key_payload(snapshot, key_id, pool, now)
        return pooled_usage_payload(pooled_usage(pool.policy, pool.candidates, now), now)


class ViewValues(dict[str, str]):
    """View values plus what an attempt carries them as, built once (the pooled view is cached per pool per
    second): the NS_VIEW metadata. (Every upgrade drops its compression offer in the processor, view or not.)"""

    __slots__ = ("metadata",)

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.metadata = Struct()
        self.metadata.update(dict(values))


def _with_ws(payload: dict[str, Any], websocket: bool) -> ViewValues:
    values = header_values(payload)
    if websocket and values and (frame := ws_view_value(payload)) is not None:
        values[WS_VIEW_KEY] = frame
    return ViewValues(values)


def attach_view(response: ep.ProcessingResponse, values: Mapping[str, str]) -> None:
    """The view as NS_VIEW dynamic metadata of this attempt. Never as request headers: those reach the upstream.
    The clusters' upstream filter chain (`pooler.attempt_of`) copies it onto the attempt's response as
    `x-pooler-view-*` headers, which Envoy's downstream header_mutation writes over the `x-codex-*` ones and
    removes. Measured: the upstream ext_proc's metadata is not yet in the downstream stream info when the
    response headers are encoded (so `%DYNAMIC_METADATA%` there came out empty), but upstream filters read it."""
    if not values:
        return
    view = values if isinstance(values, ViewValues) else ViewValues(values)
    response.dynamic_metadata.fields[gc.NS_VIEW].struct_value.MergeFrom(view.metadata)
