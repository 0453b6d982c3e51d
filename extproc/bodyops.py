"""Small upb builders shared by the body-reading stream processors (files, /v1 files, /v1 audio)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from pooler import gateway_contract as gc

OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
JSON = b"application/json"


def set_headers(mutation: ep.HeaderMutation, headers: Iterable[tuple[str, bytes]]) -> None:
    for key, value in headers:
        opt = mutation.set_headers.add()
        opt.header.key = key
        opt.header.raw_value = value
        opt.append_action = OVERWRITE


def status_of(headers: ep.HttpHeaders) -> int:
    for h in headers.headers.headers:
        if h.key == ":status":
            raw = h.raw_value or h.value.encode()
            return int(raw) if raw.isdigit() else 0
    return 0


def error_payload(message: str, code: str, kind: str = "invalid_request_error") -> bytes:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json.dumps(body, separators=(",", ":")).encode()


def immediate(status: int, body: bytes, code: str) -> ep.ProcessingResponse:
    resp = ep.ProcessingResponse()
    imm = resp.immediate_response
    imm.status.code = status
    imm.body = body
    imm.details = f"pooler_{code}"
    set_headers(imm.headers, (("content-type", JSON),))
    resp.dynamic_metadata.fields[gc.NS_ROUTING].struct_value.fields[gc.ROUTING_ERROR].string_value = code
    return resp


def replace_response_body(status: int, original_status: int, payload: Any) -> ep.ProcessingResponse:
    out = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    resp = ep.ProcessingResponse()
    common = resp.response_body.response
    headers = [("content-type", JSON), ("content-length", b"%d" % len(out))]
    if status != original_status:
        headers.append((":status", b"%d" % status))
    set_headers(common.header_mutation, headers)
    common.body_mutation.body = out
    return resp


def replace_request_body(data: bytes, headers: Iterable[tuple[str, bytes]] = ()) -> ep.ProcessingResponse:
    resp = ep.ProcessingResponse()
    common = resp.request_body.response
    set_headers(common.header_mutation, (*headers, ("content-length", b"%d" % len(data))))
    common.body_mutation.body = data
    return resp


def routed_ids(decision: ep.ProcessingResponse) -> tuple[int | None, int | None]:
    """(pool id, account id) the request-headers decision routed this attempt to (None: not routed)."""
    md = decision.dynamic_metadata.fields
    if gc.NS_ROUTING not in md or decision.WhichOneof("response") != "request_headers":
        return None, None
    fields = md[gc.NS_ROUTING].struct_value.fields
    pool = int(fields["pool_id"].number_value) if "pool_id" in fields else None
    account = int(fields["account_id"].number_value) if "account_id" in fields else None
    return pool, account
