"""The streamed /v1/chat/completions path vs the Codex route it is translated onto (`python -m bench.v1_bench`).

Both requests go through the same gateway to the same simulator answer (N token deltas); the difference is the
/v1 work: the buffered request body translated by the ext_proc, and every response chunk sent through it
(STREAMED body mode) and turned into chat.completion.chunk events. Reported:
- added time to first token (first content delta) at p50,
- added per-chunk overhead = (total time /v1 - total time Codex route) / number of upstream deltas.

`measure(...)` is the reusable part: bench/run.py can call `v1_results(host, port, key, ...)` on its running
stack; run standalone it starts its own stack through bench.stack (the ops engineer's) when the gateway exists.
Traffic only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CODEX_PATH = "/backend-api/codex/responses"
CHAT_PATH = "/v1/chat/completions"
DEFAULT_TOKENS = 200


@dataclass(frozen=True)
class StreamResult:
    count: int
    errors: int
    ttft_p50_ms: float
    total_p50_ms: float
    chunks_p50: float  # reads from the socket per response (how the bytes arrived)


def chat_body(model: str = "gpt-5.1-codex") -> bytes:
    body = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count to many."}],
    }
    return json.dumps(body).encode()


def codex_body(model: str = "gpt-5.1-codex") -> bytes:
    body = {
        "model": model,
        "stream": True,
        "store": False,
        "instructions": "Be brief.",
        "include": ["reasoning.encrypted_content"],
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Count to many."}]}],
    }
    return json.dumps(body).encode()


def measure(host: str, port: int, path: str, body: bytes, headers: dict[str, str], count: int) -> StreamResult:
    """`count` sequential streamed requests on one keep-alive connection; the first token is the first read
    holding a content delta (`"content":"x` for chat, `output_text.delta` for Responses)."""
    marker = b"output_text.delta" if path == CODEX_PATH else b'"delta":{"content":"'
    conn = http.client.HTTPConnection(host, port, timeout=60)
    ttft: list[float] = []
    totals: list[float] = []
    chunks: list[int] = []
    errors = 0
    try:
        for _ in range(count):
            start = time.perf_counter()
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
            resp = conn.getresponse()
            first: float | None = None
            reads = 0
            tail = b""
            while True:
                data = resp.read1(65536)
                if not data:
                    break
                reads += 1
                if first is None and marker in tail + data:
                    first = time.perf_counter()
                tail = data[-32:]
            done = time.perf_counter()
            if resp.status != 200 or first is None:
                errors += 1
                continue
            ttft.append((first - start) * 1000)
            totals.append((done - start) * 1000)
            chunks.append(reads)
    finally:
        conn.close()
    nan = float("nan")
    return StreamResult(
        count=len(ttft),
        errors=errors,
        ttft_p50_ms=statistics.median(ttft) if ttft else nan,
        total_p50_ms=statistics.median(totals) if totals else nan,
        chunks_p50=statistics.median(chunks) if chunks else nan,
    )


def v1_results(
    host: str,
    port: int,
    key: str,
    count: int = 50,
    tokens: int = DEFAULT_TOKENS,
    codex_port: int | None = None,
    codex_key: str | None = None,
) -> dict[str, Any]:
    """The /v1 chat stream vs the Codex route (the same gateway unless `codex_port` is given). The simulator
    must answer `tokens` deltas with no pacing (configure(text=..., token_rate=0)). The two paths alternate in
    rounds of 10 requests, so drift from other load on the machine hits both alike."""
    codex_headers = {"Authorization": f"Bearer {codex_key or key}", "Accept": "text/event-stream", "session-id": "b"}
    chat_headers = {"Authorization": f"Bearer {key}", "session-id": "bench-v1"}
    runs: dict[str, list[StreamResult]] = {"codex": [], "chat": []}
    for _ in range(max(1, count // 10)):
        runs["codex"].append(measure(host, codex_port or port, CODEX_PATH, codex_body(), codex_headers, 10))
        runs["chat"].append(measure(host, port, CHAT_PATH, chat_body(), chat_headers, 10))
    codex, chat = _merge(runs["codex"]), _merge(runs["chat"])
    return {
        "tokens": tokens,
        "codex_route": asdict(codex),
        "v1_chat": asdict(chat),
        "added_ttft_p50_ms": chat.ttft_p50_ms - codex.ttft_p50_ms,
        "added_total_p50_ms": chat.total_p50_ms - codex.total_p50_ms,
        "added_per_chunk_us": (chat.total_p50_ms - codex.total_p50_ms) * 1000 / tokens,
    }


def _merge(results: list[StreamResult]) -> StreamResult:
    """Medians over rounds (each round's figure is itself a median of 10)."""
    return StreamResult(
        count=sum(r.count for r in results),
        errors=sum(r.errors for r in results),
        ttft_p50_ms=statistics.median(r.ttft_p50_ms for r in results),
        total_p50_ms=statistics.median(r.total_p50_ms for r in results),
        chunks_p50=statistics.median(r.chunks_p50 for r in results),
    )


def long_text(tokens: int) -> str:
    return " ".join(f"w{i}" for i in range(tokens))


@contextmanager
def _gateway(text: str) -> Iterator[tuple[int, str]]:
    """Standalone: the test harness's real gateway (simulator + ext_proc + Envoy) on a throwaway SQLite DB."""
    from pooler.migrate import upgrade
    from tests.support.gateway import running_gateway

    with tempfile.TemporaryDirectory(prefix="pooler-v1-bench-") as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        with running_gateway(url, Path(tmp) / "logs") as gw:
            seeded = gw.seed_pool("v1-bench", ["acct-bench-1"])
            gw.simulator.client.configure(text=text, token_rate=0)
            yield int(gw.url.rsplit(":", 1)[1]), seeded.key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    with _gateway(long_text(args.tokens)) as (port, key):
        results = v1_results("127.0.0.1", port, key, args.count, args.tokens)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_results(results))
    return 0


def format_results(r: dict[str, Any]) -> str:
    c, v = r["codex_route"], r["v1_chat"]
    return "\n".join(
        [
            f"streamed /v1/chat/completions vs Codex route, {r['tokens']} token deltas, {v['count']} requests each",
            f"  codex route   ttft p50 {c['ttft_p50_ms']:7.2f} ms  total p50 {c['total_p50_ms']:7.2f} ms",
            f"  /v1 chat      ttft p50 {v['ttft_p50_ms']:7.2f} ms  total p50 {v['total_p50_ms']:7.2f} ms",
            f"  added ttft p50 {r['added_ttft_p50_ms']:.2f} ms; added per chunk {r['added_per_chunk_us']:.1f} µs",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
