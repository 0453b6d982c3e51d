"""A cheap fixed-response Codex upstream (nginx) for the header-path comparison.

The simulator is Python and may be slower than Envoy itself; measuring "direct Envoy" against it would measure
the simulator. nginx answers every POST with the same small Codex SSE reply (response.created, two text
deltas, response.completed with usage), the same shape as the fixed upstream of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def sse_reply() -> str:
    resp: dict[str, object] = {
        "id": "resp_bench",
        "object": "response",
        "status": "in_progress",
        "model": "gpt-5.1-codex",
    }
    usage = {
        "input_tokens": 10183,
        "input_tokens_details": {"cached_tokens": 9984},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 10195,
    }
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": resp},
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "delta": "Hello from"},
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "delta": " nginx."},
        {"type": "response.completed", "response": {**resp, "status": "completed", "usage": usage}},
    ]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e, separators=(',', ':'))}\n\n" for e in events)


def nginx_conf(workdir: Path, port: int) -> str:
    body = sse_reply().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    assert "$" not in body  # nginx would interpolate it
    return f"""
daemon off;
master_process on;
worker_processes 1;
user root;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/body;
  proxy_temp_path {workdir}/proxy;
  fastcgi_temp_path {workdir}/fastcgi;
  uwsgi_temp_path {workdir}/uwsgi;
  scgi_temp_path {workdir}/scgi;
  client_max_body_size 16m;
  client_body_buffer_size 1m;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    default_type text/event-stream;
    location / {{ return 200 "{body}"; }}
  }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (str(Path("/usr/sbin/nginx")) if Path("/usr/sbin/nginx").exists() else None)
