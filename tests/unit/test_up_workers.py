"""`pooler up`'s ext_proc processes: how many workers, where each listens, what Envoy is given."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pooler.config import load_config
from pooler.envoy_config import build_replica_parts, config_from_env
from pooler.envoy_config.clusters import metrics_cluster
from pooler.up import DatabaseRouting, ExtprocLayout, extproc_groups, render_envoy_text, worker_count


def test_worker_count_is_the_setting_else_one_per_core_and_one_on_sqlite() -> None:
    assert worker_count(3, cpus=8, sqlite=False) == 3
    assert worker_count(3, cpus=8, sqlite=True) == 3  # set explicitly: the operator's choice
    assert worker_count(0, cpus=8, sqlite=False) == 8
    assert worker_count(0, cpus=None, sqlite=False) == 1
    assert worker_count(0, cpus=8, sqlite=True) == 1


def test_layout_has_a_free_slot_for_the_workers_and_for_the_two_receivers(tmp_path: Path) -> None:
    config = load_config({"POOLER_DATA_DIR": str(tmp_path)})
    layout = ExtprocLayout.of(config, 2)
    sock = tmp_path.resolve() / "extproc.sock"
    assert layout.worker_sockets == (sock, Path(f"{sock}.1"), Path(f"{sock}.2"))
    receiver = tmp_path.resolve() / "accesslog.sock"
    assert layout.receiver_sockets == (receiver, Path(f"{receiver}.1"), Path(f"{receiver}.2"))

    gateway = layout.gateway(config_from_env(config))
    parts = build_replica_parts(gateway)
    # Workers are balanced: one locality with every slot.
    assert [e["endpoint"]["address"]["pipe"]["path"] for e in parts["extproc_endpoints"]] == [
        str(p) for p in layout.worker_sockets
    ]
    # Receivers fail over: the first slot, then each further slot at the next priority.
    assert [e["endpoint"]["address"]["pipe"]["path"] for e in parts["accesslog_endpoints"]] == [str(receiver)]
    standby = json.loads("[" + parts["accesslog_standby_localities"].lstrip(", ") + "]")
    assert [(s["priority"], s["lb_endpoints"][0]["endpoint"]["address"]["pipe"]["path"]) for s in standby] == [
        (1, f"{receiver}.1"),
        (2, f"{receiver}.2"),
    ]
    # An empty slot must never get traffic: health checks, and no panic routing to unhealthy endpoints.
    assert parts["replica_health_checks"] and parts["accesslog_health_checks"]
    assert parts["replica_lb_config"] == parts["accesslog_lb_config"] == {"healthy_panic_threshold": {"value": 0}}
    # /metrics follows the receivers in the same order.
    metrics = metrics_cluster(gateway)
    assert [
        (loc["priority"], loc["lb_endpoints"][0]["endpoint"]["address"]["pipe"]["path"])
        for loc in metrics["load_assignment"]["endpoints"]
    ] == [(n, f"{p}.metrics") for n, p in enumerate(layout.receiver_sockets)]
    assert metrics["health_checks"][0]["tcp_health_check"] == {}


def test_one_worker_still_gets_a_surge_slot_and_no_replica_mode(tmp_path: Path) -> None:
    config = load_config({"POOLER_DATA_DIR": str(tmp_path)})
    layout = ExtprocLayout.of(config, 1)
    assert len(layout.worker_sockets) == 2
    receivers, workers = extproc_groups(config, layout, {})
    (spec,) = workers.start_specs(["extproc-1"])
    assert "POOLER_EXTPROC_SHARED" not in spec.env
    assert spec.env["POOLER_EXTPROC_SOCKET"] == str(layout.worker_sockets[0])
    assert list(spec.argv[-2:]) == ["--role", "decide"]
    first, second = receivers.start_specs(["accesslog-1", "accesslog-2"])
    assert [first.env["POOLER_ACCESSLOG_SOCKET"], second.env["POOLER_ACCESSLOG_SOCKET"]] == [
        str(p) for p in layout.receiver_sockets[:2]
    ]
    assert list(first.argv[-2:]) == ["--role", "access-log"]


def test_several_workers_run_in_replica_mode_and_bind_no_tcp_port(tmp_path: Path) -> None:
    config = load_config({"POOLER_DATA_DIR": str(tmp_path)})
    layout = ExtprocLayout.of(config, 3)
    _, workers = extproc_groups(config, layout, {"POOLER_EXTPROC_DRAIN_SECONDS": "4"})
    specs = workers.start_specs(["extproc-1", "extproc-2", "extproc-3"])
    assert [s.env["POOLER_EXTPROC_SOCKET"] for s in specs] == [str(p) for p in layout.worker_sockets[:3]]
    assert all(s.env["POOLER_EXTPROC_SHARED"] == "1" for s in specs)
    assert all(s.env["POOLER_EXTPROC_LISTEN"] == s.env["POOLER_METRICS_LISTEN"] == "" for s in specs)
    assert all(s.env["POOLER_EXTPROC_DRAIN_SECONDS"] == "4" for s in specs)
    assert workers.taken == dict(zip(["extproc-1", "extproc-2", "extproc-3"], layout.worker_sockets[:3], strict=True))


def test_the_envoy_config_follows_what_the_database_says(tmp_path: Path) -> None:
    """What `pooler up` compares every few seconds and applies by a hot restart: the retry count, the upstream,
    the worker slots and the first-event hold all come from the database's routing."""
    config = load_config({"POOLER_DATA_DIR": str(tmp_path)})
    routing = DatabaseRouting(
        upstream="http://127.0.0.1:9",
        max_attempts=[3],
        workers_setting=1,
        drain_seconds=5,
        first_event_hold=True,
    )
    base = render_envoy_text(config, routing, ExtprocLayout.of(config, 1))
    assert "pooler.decision_guard" in base and '"num_retries": 2' in base
    assert render_envoy_text(config, routing, ExtprocLayout.of(config, 1)) == base, "rendering is deterministic"
    changed = {
        "retries": dataclasses.replace(routing, max_attempts=[3, 6]),
        "upstream": dataclasses.replace(routing, upstream="http://127.0.0.1:10"),
        "hold": dataclasses.replace(routing, first_event_hold=False),
    }
    texts = {what: render_envoy_text(config, r, ExtprocLayout.of(config, 1)) for what, r in changed.items()}
    assert all(text != base for text in texts.values())
    assert '"num_retries": 5' in texts["retries"]
    assert "pooler.decision_guard" not in texts["hold"]
    two_workers = render_envoy_text(config, routing, ExtprocLayout.of(config, 2))
    assert f"{tmp_path.resolve() / 'extproc.sock'}.2" in two_workers
    assert f"{tmp_path.resolve() / 'extproc.sock'}.2" not in base
