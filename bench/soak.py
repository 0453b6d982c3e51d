"""Soak test (not CI): N concurrent Codex-like sessions through the gateway for M minutes.

    python -m bench.soak --sessions 16 --minutes 3

What runs: a throwaway PostgreSQL database, the Codex simulator (3 accounts, budgets raised so no window fills,
replies streamed at `--token-rate` tokens/s), two ext_proc replicas in replica mode behind one Envoy
(tests/support/gateway.py, the same harness as the multi-replica integration tests). Each session is a
thread posting a ~40 KB Codex CLI-shaped body (bench/codex_body.py) with its own `session-id` (so stickiness
applies) and reading the SSE stream to its end. Meanwhile:
- every `--fault-every` seconds one account (in turn) answers its next `--fault-count` requests with 429 +
  retry-after (simulator faults): the gateway fails over, the others still have quota;
- at half time both replicas are restarted one after the other (SIGTERM drain, start, back in rotation);
- ext_proc RSS of every replica process is sampled every `--sample-every` seconds.

Report (stdout + var/soak/soak-<time>.json): requests sent, client-visible failures (any non-200 or a stream
without `response.completed`; with one account limited at a time every failure counts), request-log rows of
the soak pool vs requests sent, RSS series per process and its change after warm-up. Only 127.0.0.1; the run
stops by itself after M minutes (+ drain) and every process is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.codex_body import codex_body
from pooler import gateway_contract as gc
from pooler.migrate import upgrade
from pooler.models import RequestLog
from tests.support.databases import throwaway_postgres_database
from tests.support.gateway import Gateway, running_gateway
from tests.support.processes import ManagedProcess, wait_until

BUDGET = 10**15  # tokens: no quota window fills during a soak; the 429s come from injected faults only
ACCOUNTS = ["soak-a1", "soak-a2", "soak-a3"]
# ~120 output tokens per turn: at 50 tokens/s a turn streams for ~2.5 s, like a short Codex answer.
REPLY_TEXT = " ".join(["The pool keeps this Codex session on one account while quota lasts."] * 10)


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    samples: list[str] = field(default_factory=list)
    """The first few failures, for the report."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, failure: str | None) -> None:
        with self.lock:
            self.sent += 1
            if failure is None:
                self.ok += 1
                return
            self.failed += 1
            if len(self.samples) < 10:
                self.samples.append(failure)


@dataclass
class RssSeries:
    name: str
    pid: int
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since start, MiB)."""


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def session_loop(gw: Gateway, key: str, session: int, deadline: float, tally: Tally) -> None:
    """One Codex-like session: turn after turn on one session id until the deadline, each stream read to its end."""
    headers = {
        "Authorization": f"Bearer {key}",
        "session-id": f"soak-session-{session}",
        "content-type": "application/json",
        "accept": "text/event-stream",
    }
    with httpx.Client(timeout=httpx.Timeout(60.0, connect=5.0)) as client:
        turn = 0
        while time.monotonic() < deadline:
            body = codex_body(session=f"soak-session-{session}", prompt=f"turn {turn} of session {session}")
            turn += 1
            failure: str | None = None
            try:
                with client.stream("POST", f"{gw.codex_base}/responses", content=body, headers=headers) as r:
                    text = "".join(r.iter_text())
                    if r.status_code != 200:
                        failure = f"status {r.status_code}: {text[:160]}"
                    elif "response.completed" not in text:
                        failure = "stream ended without response.completed"
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"[:200]
            tally.add(failure)


def restart_replicas(gw: Gateway, events: list[str], started: float) -> None:
    """A rolling restart of every ext_proc: SIGTERM (drain), start again, wait until Envoy has it back."""
    events.append(f"{time.monotonic() - started:.1f}s restart replica 1")
    gw.replicas[1].stop()
    gw.start_replica(1)
    gw.wait_replicas_healthy(2)
    events.append(f"{time.monotonic() - started:.1f}s restart replica 0")
    gw.extproc.stop()
    gw.start_extproc()
    gw.wait_replicas_healthy(2)
    events.append(f"{time.monotonic() - started:.1f}s both replicas back")


def processes(gw: Gateway) -> list[tuple[str, ManagedProcess]]:
    return [("extproc-0", gw.extproc), *((f"extproc-{n}", p) for n, p in sorted(gw.replicas.items()))]


def soak_rows(gw: Gateway, pool_id: int) -> int:
    with gw.ctx.session_factory() as session:
        query = select(func.count()).where(RequestLog.pool_id == pool_id, RequestLog.route_family == gc.ROUTE_RESPONSES)
        return int(session.scalar(query) or 0)


def failovers(gw: Gateway, pool_id: int) -> int:
    with gw.ctx.session_factory() as session:
        query = select(func.count()).where(RequestLog.pool_id == pool_id, RequestLog.attempt_count > 1)
        return int(session.scalar(query) or 0)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with throwaway_postgres_database("pooler_soak") as url:
        upgrade(url)
        with running_gateway(url, workdir, extproc_replicas=2) as gw:
            sim = gw.simulator.client
            seeded = gw.seed_pool("soak", ACCOUNTS, plan="pro")
            for account in ACCOUNTS:  # after seeding: creating an account with a plan resets its windows
                sim.upsert_account(account, primary_budget=BUDGET, secondary_budget=BUDGET)
            sim.configure(token_rate=args.token_rate, text=REPLY_TEXT)

            started = time.monotonic()
            deadline = started + args.minutes * 60
            tally = Tally()
            events: list[str] = []
            series: dict[tuple[str, int], RssSeries] = {}
            threads = [
                threading.Thread(target=session_loop, args=(gw, seeded.key, n, deadline, tally), daemon=True)
                for n in range(args.sessions)
            ]
            for thread in threads:
                thread.start()
            next_fault, next_sample, fault_n, restarted = started, started, 0, False
            while time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_sample:
                    for name, proc in processes(gw):
                        pid = proc.proc.pid if proc.proc is not None else None
                        mib = rss_mib(pid) if pid else None
                        if pid and mib is not None:
                            entry = series.setdefault((name, pid), RssSeries(name, pid))
                            entry.samples.append((round(now - started, 1), round(mib, 1)))
                    next_sample = now + args.sample_every
                if now >= next_fault + args.fault_every:
                    account = ACCOUNTS[fault_n % len(ACCOUNTS)]
                    # Disarm the previous burst first: a fault armed on an account no session uses stays armed,
                    # and three armed accounts make one request see 429 everywhere (a legitimate all-limited
                    # answer, not the failure this soak looks for). retry-after < the burst interval, so at most
                    # one account is limited at any time.
                    sim.clear_faults()
                    sim.add_fault(
                        "status", status=429, account=account, count=args.fault_count, headers={"retry-after": "10"}
                    )
                    events.append(f"{now - started:.1f}s 429 x{args.fault_count} on {account}")
                    fault_n, next_fault = fault_n + 1, now
                if not restarted and now >= started + args.minutes * 30:
                    restarted = True
                    restart_replicas(gw, events, started)
                    continue
                time.sleep(0.5)  # the driver's own pacing; sessions run on their own threads
            for thread in threads:
                thread.join(timeout=120)
            sent = tally.sent
            with contextlib.suppress(TimeoutError):  # a shortfall is reported below as a mismatch
                wait_until(lambda: soak_rows(gw, seeded.pool_id) >= sent, timeout=30, what="request-log rows")
            rows = soak_rows(gw, seeded.pool_id)
            faults_hit = sum(1 for e in sim.journal(route="responses") if e.get("fault") == "status:429")
            failed_over = failovers(gw, seeded.pool_id)
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "sessions": args.sessions,
        "minutes": args.minutes,
        "token_rate": args.token_rate,
        "requests_sent": sent,
        "requests_ok": tally.ok,
        "client_failures": tally.failed,
        "failure_samples": tally.samples,
        "request_log_rows": rows,
        "injected_429s_served": faults_hit,
        "requests_failed_over": failed_over,
        "events": events,
        "rss": [asdict(s) for s in series.values()],
    }


def machine() -> str:
    cpu = "?"
    try:
        names = [
            x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in x
        ]
        cpu = f"{len(names)} x {names[0]}" if names else cpu
    except OSError:
        pass
    load = os.getloadavg()[0]
    return f"{cpu}, Linux {platform.release()}, Python {platform.python_version()}, load {load:.2f} at end"


def rss_verdict(entry: dict[str, Any], warmup: float) -> str:
    samples = [mib for t, mib in entry["samples"] if t - entry["samples"][0][0] >= warmup]
    if len(samples) < 2:
        return f"{entry['name']} (pid {entry['pid']}): too few samples after warm-up"
    return (
        f"{entry['name']} (pid {entry['pid']}): {samples[0]:.1f} -> {samples[-1]:.1f} MiB "
        f"({samples[-1] - samples[0]:+.1f}) over {len(samples)} samples after {warmup:.0f} s warm-up, "
        f"max {max(samples):.1f}"
    )


def markdown(report: dict[str, Any], warmup: float) -> str:
    verdict = "PASS" if report["client_failures"] == 0 else "FAIL"
    rows_ok = "PASS" if report["request_log_rows"] == report["requests_sent"] else "FAIL"
    lines = [
        f"Run {report['date']} on {report['machine']}. {report['sessions']} sessions, {report['minutes']} min, "
        f"{report['token_rate']:g} tokens/s, 2 ext_proc replicas (PostgreSQL), rolling restart at half time.",
        "",
        "| check | measured | |",
        "| --- | --- | --- |",
        f"| client-visible failures (one account limited at a time) | {report['client_failures']} of "
        f"{report['requests_sent']:,} | {verdict} |",
        f"| request-log rows == requests sent | {report['request_log_rows']:,} / {report['requests_sent']:,} "
        f"| {rows_ok} |",
        f"| injected 429s the simulator answered / requests that failed over | "
        f"{report['injected_429s_served']} / {report['requests_failed_over']} | |",
        "",
        "Events: " + "; ".join(report["events"]),
        "",
        "ext_proc RSS:",
        *[f"- {rss_verdict(entry, warmup)}" for entry in report["rss"]],
    ]
    if report["failure_samples"]:
        lines += ["", "Failures (first 10):", *[f"- {f}" for f in report["failure_samples"]]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--token-rate", type=float, default=50.0, help="simulated output tokens per second")
    parser.add_argument("--fault-every", type=float, default=15.0, help="seconds between 429 bursts (> 10 s)")
    parser.add_argument("--fault-count", type=int, default=5, help="429s per burst (one account)")
    parser.add_argument("--sample-every", type=float, default=10.0, help="RSS sampling interval, seconds")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of a process's life before RSS counts")
    parser.add_argument("--out", type=Path, default=Path("var/soak"))
    args = parser.parse_args(argv)
    if not (1 <= args.sessions <= 256 and 0 < args.minutes <= 120 and args.fault_every > 10):
        parser.error("--sessions 1..256, --minutes up to 120, --fault-every above the 10 s retry-after")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    workdir = args.out / f"soak-{stamp}"
    report = run(args, workdir)
    text = markdown(report, args.warmup)
    (args.out / f"soak-{stamp}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"soak-{stamp}.md").write_text(text + "\n")
    print(text)
    ok = report["client_failures"] == 0 and report["request_log_rows"] == report["requests_sent"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
