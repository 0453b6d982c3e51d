"""The first-event hold's own cost, A/B in one run (`python -m bench.first_event_ab`): the same stack as `make
bench`, then interleaved rounds of the gateway with the hold against the same gateway without it (same ext_proc,
envoy_config `first_event_hold=False`): SSE time to first byte (sequential requests) against the simulator and
nginx, and wrk throughput at c=1 and c=16 against nginx. Interleaving and medians over rounds keep a loaded
machine's drift out of the difference, which is what this reports."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import PATH, Runner, machine
from bench.stack import make_stack, seed, start
from bench.ttfb import measure_ttfb

PAIRS = (("gateway", "nohold"), ("nohold", "gateway"))


def run(rounds: int, requests: int, seconds: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="pooler-bench-hold-"))
    stack = make_stack(workdir)
    samples: dict[str, list[float]] = {}
    try:
        seed(stack)
        start(stack)
        runner = Runner(stack, seconds)
        for target in ("gateway_sim", "nohold_sim", "gateway_nginx", "nohold_nginx"):
            runner.wrk(target, 4, seconds=2)  # warm-up
        for r in range(rounds):
            for kind in PAIRS[r % 2]:
                for upstream in ("sim", "nginx"):
                    target = f"{kind}_{upstream}"
                    res = measure_ttfb(
                        "127.0.0.1", stack.ports[target], PATH, runner.body, runner.token(target), requests
                    )
                    samples.setdefault(f"ttfb_p50_ms {target}", []).append(res.p50_ms)
                    samples.setdefault(f"errors {target}", []).append(res.errors)
                for c in (1, 16):
                    w = runner.wrk(f"{kind}_nginx", c)
                    samples.setdefault(f"rps c={c} {kind}_nginx", []).append(w.rps)
                    samples.setdefault(f"p50_ms c={c} {kind}_nginx", []).append(w.p50_ms)
            print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    finally:
        stack.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    summary = {
        "hold_added_ttfb_p50_ms_sim": medians["ttfb_p50_ms gateway_sim"] - medians["ttfb_p50_ms nohold_sim"],
        "hold_added_ttfb_p50_ms_nginx": medians["ttfb_p50_ms gateway_nginx"] - medians["ttfb_p50_ms nohold_nginx"],
        "hold_throughput_ratio_c1_nginx": medians["rps c=1 gateway_nginx"] / medians["rps c=1 nohold_nginx"],
        "hold_throughput_ratio_c16_nginx": medians["rps c=16 gateway_nginx"] / medians["rps c=16 nohold_nginx"],
    }
    return {"machine": machine(), "rounds": rounds, "medians": medians, "samples": samples, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_event_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=300, help="sequential TTFB requests per path and round")
    parser.add_argument("--seconds", type=float, default=4.0, help="each wrk run")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = run(args.rounds, args.requests, args.seconds)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
