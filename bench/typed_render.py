"""What building the Envoy bootstrap through envoy-data-plane's typed classes would add to `pooler up`'s start.

Run: .venv/bin/python -m bench.typed_render [--runs 5] [--no-pyc-runs 3]
(needs `pip install envoy-data-plane`, which is not a project dependency).

Every measurement is a fresh `python -c` subprocess, so imports are paid in full (the bytecode cache is warm, as
after `pip install`; `--no-pyc-runs` adds runs with an empty `-X pycache_prefix`, i.e. a first-ever start).

- baseline: `import pooler.envoy_config` + `render(config)` (today: plain dicts into envoy/envoy.yaml).
- typed: import the envoy-data-plane modules a Bootstrap needs (bootstrap, and one module per `@type` in the
  config, because betterproto2 resolves `google.protobuf.Any` JSON through a message pool that a module fills
  when it is imported), then build the same config as a typed `Bootstrap` from today's rendered dict
  (`Bootstrap.from_dict`: every field validated and every `typed_config` packed to bytes), then serialise it
  back for Envoy (`to_dict` + `json.dumps`); `bytes(...)` (wire form) is timed apart.
- round trip: every field of today's config must come back from the typed Bootstrap (compared with
  `include_default_values=True`, since proto3 JSON drops fields at their zero value, e.g. `codec_type: AUTO`),
  the wire form must parse back to the same message, and `envoy --mode validate` must accept the typed JSON.

On a busy machine wall times stretch; process CPU (user+sys) is printed beside them as the load-independent
figure. The `pooler up` number is added = typed (import + build + to_dict) - baseline (import + render): it assumes the
typed classes replace the dict building. If they were layered on top of today's dicts (validation only), the
whole typed figure is added instead; both are printed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The envoy-data-plane modules a Bootstrap of this project needs: the bootstrap itself (it pulls in listener,
# cluster, route, core, accesslog) and each extension used as a typed_config / typed_per_filter_config /
# typed_extension_protocol_options. A config @type outside this list is reported as unregistered.
TYPED_MODULES = (
    "envoy_data_plane.envoy.config.bootstrap.v3",
    "envoy_data_plane.envoy.config.listener.v3",
    "envoy_data_plane.envoy.config.cluster.v3",
    "envoy_data_plane.envoy.config.route.v3",
    "envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3",
    "envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3",
    "envoy_data_plane.envoy.extensions.filters.http.lua.v3",
    "envoy_data_plane.envoy.extensions.filters.http.router.v3",
    "envoy_data_plane.envoy.extensions.filters.http.header_mutation.v3",
    "envoy_data_plane.envoy.extensions.filters.http.rbac.v3",
    "envoy_data_plane.envoy.extensions.filters.http.sse_to_metadata.v3",
    "envoy_data_plane.envoy.extensions.filters.http.upstream_codec.v3",
    "envoy_data_plane.envoy.extensions.content_parsers.json.v3",
    "envoy_data_plane.envoy.extensions.access_loggers.grpc.v3",
    "envoy_data_plane.envoy.extensions.access_loggers.file.v3",
    "envoy_data_plane.envoy.extensions.transport_sockets.tls.v3",
    "envoy_data_plane.envoy.extensions.upstreams.http.v3",
)

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    """Resident set size of this process now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def typical_config() -> Any:
    """A complete GatewayConfig as tests/support/gateway.py builds it, with the default (TLS) upstream."""
    from pooler.envoy_config import Endpoint, GatewayConfig

    return GatewayConfig(
        listen=Endpoint.tcp("127.0.0.1", 8080),
        admin=Endpoint.tcp("127.0.0.1", 9901),
        extproc=Endpoint.unix("/run/pooler/extproc.sock"),
        accesslog=Endpoint.unix("/run/pooler/accesslog.sock"),
        local=Endpoint.unix("/run/pooler/l.sock"),
        admin_app=Endpoint.tcp("127.0.0.1", 8081),
        access_log_path="/dev/stdout",
        accesslog_flush_seconds=0.2,
    )


# ---- children (each runs in its own fresh interpreter) ----


def child_baseline() -> None:
    t0, rss0 = time.perf_counter(), rss_mib()
    import pooler.envoy_config as e

    t1, rss1 = time.perf_counter(), rss_mib()
    text = e.render(typical_config())
    t2 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "build": t2 - t1, "rss_import": rss1 - rss0, "chars": len(text)}))


def child_typed(dict_path: str) -> None:
    config = json.loads(Path(dict_path).read_text())  # today's rendered config, loaded before the clock starts
    t0, rss0 = time.perf_counter(), rss_mib()
    import importlib

    for name in TYPED_MODULES:
        importlib.import_module(name)
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

    t1, rss1 = time.perf_counter(), rss_mib()
    missing = unregistered_types(config)
    if missing:  # from_dict would raise on the first one; report them all instead
        print(json.dumps({"import": t1 - t0, "rss_import": rss1 - rss0, "missing": missing}))
        return
    bootstrap = Bootstrap.from_dict(config)
    t2 = time.perf_counter()
    envoy_json = json.dumps(bootstrap.to_dict())
    t3 = time.perf_counter()
    wire = bytes(bootstrap)
    t4, rss4 = time.perf_counter(), rss_mib()
    print(
        json.dumps(
            {
                "import": t1 - t0,
                "build": t2 - t1,
                "to_dict": t3 - t2,
                "bytes": t4 - t3,
                "rss_import": rss1 - rss0,
                "rss_built": rss4 - rss0,
                "missing": [],
                "json_chars": len(envoy_json),
                "wire_bytes": len(wire),
            }
        )
    )


def child_round_trip(dict_path: str) -> None:
    """Not timed: does the typed Bootstrap reproduce today's config?"""
    config = json.loads(Path(dict_path).read_text())
    for name in TYPED_MODULES:
        __import__(name)
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

    missing = unregistered_types(config)
    if missing:
        print(json.dumps({"missing": missing}))
        return
    bootstrap = Bootstrap.from_dict(config)
    envoy_json = json.dumps(bootstrap.to_dict())
    print(json.dumps({"missing": [], **round_trip(config, bootstrap, bytes(bootstrap)), "envoy_json": envoy_json}))


def type_urls(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["@type"]} if "@type" in node else set()
        return found.union(*(type_urls(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(type_urls(v) for v in node))
    return set()


def unregistered_types(config: dict[str, Any]) -> list[str]:
    from envoy_data_plane.message_pool import default_message_pool

    return sorted(url for url in type_urls(config) if url not in default_message_pool.url_to_type)


def same_scalar(a: Any, b: Any) -> bool:
    """Equal as proto3 JSON: "0.010s" == "0.01s" (Duration), 5 == "5" (64-bit integers are strings)."""
    if a == b:
        return True
    if isinstance(a, str | int | float) and isinstance(b, str):
        x, y = (str(a)[:-1], b[:-1]) if str(a).endswith("s") and b.endswith("s") else (str(a), b)
        try:
            return float(x) == float(y)
        except ValueError:
            return False
    return False


def lost_fields(original: Any, back: Any, path: str = "") -> list[str]:
    """Paths of `original` that `back` (a to_dict with defaults, snake_case) does not reproduce."""
    if isinstance(original, dict) and isinstance(back, dict):
        out: list[str] = []
        for key, value in original.items():
            if key not in back:
                out.append(f"{path}/{key} missing")
            else:
                out += lost_fields(value, back[key], f"{path}/{key}")
        return out
    if isinstance(original, list) and isinstance(back, list):
        if len(original) != len(back):
            return [f"{path} length {len(original)} != {len(back)}"]
        return [
            p for i, (a, b) in enumerate(zip(original, back, strict=True)) for p in lost_fields(a, b, f"{path}[{i}]")
        ]
    return [] if same_scalar(original, back) else [f"{path}: {original!r} -> {back!r}"]


def round_trip(config: dict[str, Any], bootstrap: Any, wire: bytes) -> dict[str, Any]:
    import betterproto2

    full = bootstrap.to_dict(casing=betterproto2.Casing.SNAKE, include_default_values=True)
    lost = lost_fields(config, full)
    wire_ok = type(bootstrap).parse(wire).to_dict() == bootstrap.to_dict()
    return {"lost": lost[:20], "lost_count": len(lost), "wire_round_trip": wire_ok}


# ---- parent ----


def run_child(code: str, pycache: str | None = None) -> tuple[float, float, dict[str, Any]]:
    """(process wall, process CPU user+sys, what the child printed)."""
    cmd = [sys.executable, *(["-X", f"pycache_prefix={pycache}"] if pycache else []), "-c", code]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, cpu, result


def envoy_validates(envoy_json: str) -> str:
    envoy = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    if not Path(envoy).exists():
        return "not run (no envoy binary)"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(envoy_json)
    try:
        done = subprocess.run(
            [envoy, "--mode", "validate", "-c", f.name, "--log-level", "error"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.unlink(f.name)
    return "OK" if done.returncode == 0 else f"FAILED: {(done.stdout + done.stderr).strip()[-500:]}"


def fmt(values: list[float]) -> str:
    return f"{min(values) * 1000:8.1f} / {statistics.median(values) * 1000:8.1f} ms"


def paired_diff(a: list[float], b: list[float]) -> list[float]:
    """Order statistics of a minus those of b: min(a) - min(b), median(a) - median(b) (for odd counts)."""
    return [x - y for x, y in zip(sorted(a), sorted(b), strict=True)]


Run = tuple[float, float, dict[str, Any]]


def interleaved(runs: int, codes: tuple[str, str], no_pyc: bool) -> tuple[list[Run], list[Run]]:
    """Baseline and typed alternate, so both see the same machine load."""
    base: list[Run] = []
    typed: list[Run] = []
    for _ in range(runs):
        for code, out in zip(codes, (base, typed), strict=True):
            with tempfile.TemporaryDirectory() as pycache:
                out.append(run_child(code, pycache if no_pyc else None))
    return base, typed


def report(label: str, base: list[Run], typed: list[Run]) -> None:
    b = [r for _, _, r in base]
    t = [r for _, _, r in typed]
    print(f"== {label} ({len(b)} runs each, min / median) ==")
    print(f"baseline import pooler.envoy_config     {fmt([r['import'] for r in b])}")
    print(f"baseline render(config)                 {fmt([r['build'] for r in b])}")
    base_total = [r["import"] + r["build"] for r in b]
    print(f"baseline import + render                {fmt(base_total)}")
    print(f"baseline process wall / CPU             {fmt([w for w, _, _ in base])}  {fmt([c for _, c, _ in base])}")
    if t[0]["missing"]:
        print(f"typed: unregistered @types {t[0]['missing']}; import {fmt([r['import'] for r in t])}\n")
        return
    print(f"typed import (envoy-data-plane)         {fmt([r['import'] for r in t])}")
    print(f"typed build Bootstrap.from_dict         {fmt([r['build'] for r in t])}")
    print(f"typed serialise to_dict + json.dumps    {fmt([r['to_dict'] for r in t])}")
    print(f"typed serialise bytes() (not needed)    {fmt([r['bytes'] for r in t])}")
    typed_total = [r["import"] + r["build"] + r["to_dict"] for r in t]
    print(f"typed import + build + to_dict          {fmt(typed_total)}")
    print(f"typed process wall / CPU                {fmt([w for w, _, _ in typed])}  {fmt([c for _, c, _ in typed])}")
    print(f"ADDED to pooler up: typed - baseline    {fmt(paired_diff(typed_total, base_total))}")
    print(f"ADDED if layered on today's dicts       {fmt(typed_total)}")
    wall_diff = paired_diff([w for w, _, _ in typed], [w for w, _, _ in base])
    cpu_diff = paired_diff([c for _, c, _ in typed], [c for _, c, _ in base])
    print(f"process wall / CPU typed - baseline     {fmt(wall_diff)}  {fmt(cpu_diff)}")
    print(
        f"RSS added by the imports (median): baseline +{statistics.median(r['rss_import'] for r in b):.1f} MiB, "
        f"typed +{statistics.median(r['rss_import'] for r in t):.1f} MiB "
        f"(+{statistics.median(r['rss_built'] for r in t):.1f} MiB once the Bootstrap is built and serialised)\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-pyc-runs", type=int, default=3, help="runs with an empty bytecode cache (0: skip)")
    args = parser.parse_args()

    from importlib.metadata import PackageNotFoundError, version

    try:
        versions = ", ".join(f"{p} {version(p)}" for p in ("envoy-data-plane", "betterproto2", "pydantic"))
    except PackageNotFoundError:
        sys.exit("envoy-data-plane is not installed: .venv/bin/pip install envoy-data-plane")

    import yaml

    from pooler.envoy_config import render

    config = yaml.safe_load(render(typical_config()))
    load_before = os.getloadavg()[0]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    codes = (
        "import bench.typed_render as b; b.child_baseline()",
        f"import bench.typed_render as b; b.child_typed({f.name!r})",
    )
    try:
        results = [("warm .pyc", *interleaved(args.runs, codes, no_pyc=False))]
        if args.no_pyc_runs > 0:
            results.append(("no .pyc, first start", *interleaved(args.no_pyc_runs, codes, no_pyc=True)))
        _, _, checked = run_child(f"import bench.typed_render as b; b.child_round_trip({f.name!r})")
    finally:
        os.unlink(f.name)

    print(
        f"{datetime.date.today()}  python {platform.python_version()} {platform.machine()}, nproc {os.cpu_count()}, "
        f"load avg {load_before:.2f} -> {os.getloadavg()[0]:.2f}\n{versions}"
    )
    print(f"config: {len(type_urls(config))} distinct @types, {len(TYPED_MODULES)} envoy-data-plane modules imported\n")
    for label, base, typed in results:
        report(label, base, typed)

    if checked["missing"]:
        print(f"round trip: not possible, unregistered @types: {checked['missing']}")
        return
    lost = checked["lost"]
    print(
        f"round trip: {checked['lost_count']} field(s) of today's config not reproduced by the typed Bootstrap"
        + (": " + "; ".join(lost) if lost else "")
    )
    print(f"wire form (bytes -> parse) round trip: {'OK' if checked['wire_round_trip'] else 'FAILED'}")
    print(f"envoy --mode validate on the typed to_dict JSON: {envoy_validates(checked['envoy_json'])}")


if __name__ == "__main__":
    main()
