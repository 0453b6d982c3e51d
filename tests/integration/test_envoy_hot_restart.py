"""`pooler up` applies a config change by a hot restart of Envoy, under steady streaming load, on PostgreSQL: a
pool's max_attempts raised above the rendered retries, `extproc_workers` changed (1 -> 2 -> 1) and the
first-event hold turned off reach the running Envoy within seconds, no client sees a failure, every completed
request has its row, and the replaced Envoy exits by itself after its drain."""

from __future__ import annotations

import datetime as dt
import os
import signal
from pathlib import Path

import pytest
import yaml

from pooler.envoy_config import render
from pooler.envoy_hot_restart import EnvoyProcess
from pooler.up import envoy_binary
from tests.support.envoy_configs import sample_config
from tests.support.pooler_up import (
    Load,
    PoolerUp,
    assert_every_completed_request_logged,
    change_demo_pool,
    change_settings,
    envoy_epoch,
    latest_pid,
    pooler_up_with_workers,
    wait_for_envoy_epoch,
    without_stream_cap,
)
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

DRAIN_SECONDS = 3


def _rendered_retries(up: PoolerUp) -> set[int]:
    """num_retries of every route retry policy in the envoy.yaml `pooler up` wrote."""
    found: set[int] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            policy = node.get("retry_policy")
            if isinstance(policy, dict) and "num_retries" in policy:
                found.add(int(policy["num_retries"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((up.data_dir / "envoy.yaml").read_text()))
    return found


def _extproc_workers_now(up: PoolerUp, count: int) -> bool:
    return f"ext_proc: {count} decision worker(s) now" in up.log()


def test_config_changes_are_applied_by_hot_restart_without_a_failed_request(tmp_path: Path) -> None:
    with pooler_up_with_workers(tmp_path, 1, envoy_drain_seconds=DRAIN_SECONDS) as up:
        without_stream_cap(up)
        assert envoy_epoch(up) == 0
        retries = max(_rendered_retries(up))
        since = dt.datetime.now(dt.UTC)
        with Load(up) as load:
            load.wait_more(25, "traffic flowing")

            # A pool that may try more accounts than Envoy retries: the rendered retry count must follow.
            change_demo_pool(up, max_attempts=retries + 3)
            wait_for_envoy_epoch(up, 1, "hot restart after max_attempts changed")
            assert max(_rendered_retries(up)) == retries + 2
            load.wait_more(25, "traffic after the first hot restart")
            wait_until(lambda: "(replaced) has exited" in up.log(), timeout=DRAIN_SECONDS + 30, what="old Envoy gone")
            assert "still running after its handover" not in up.log(), "Envoy's own parent shutdown must end it"

            # More workers: Envoy lists their slots first, then they start (and the first turns replica mode on).
            change_settings(up.database_url, extproc_workers=2)
            wait_for_envoy_epoch(up, 2, "hot restart after extproc_workers 1 -> 2")
            wait_until(lambda: _extproc_workers_now(up, 2), timeout=120, what="a second worker")
            load.wait_more(25, "traffic with two workers")

            change_settings(up.database_url, extproc_workers=1)
            wait_for_envoy_epoch(up, 3, "hot restart after extproc_workers 2 -> 1")
            wait_until(lambda: _extproc_workers_now(up, 1), timeout=120, what="back to one worker")
            load.wait_more(25, "traffic with one worker again")

            # A filter taken out of the data path: the first-event hold off.
            assert "pooler.decision_guard" in (up.data_dir / "envoy.yaml").read_text()
            change_settings(up.database_url, first_event_hold=False)
            wait_for_envoy_epoch(up, 4, "hot restart after first_event_hold off")
            assert "pooler.decision_guard" not in (up.data_dir / "envoy.yaml").read_text()
            load.wait_more(25, "traffic without the hold")

        log = up.log()
        assert "[pooler] stopped extproc-" in log
        assert "did not become ready" not in log and "Envoy refuses" not in log
        assert_every_completed_request_logged(up, load, since)

        # A hot-restarted Envoy that crashes starts again on its own (epoch 0: a successor needs a living parent).
        os.kill(latest_pid(up, "envoy"), signal.SIGKILL)
        wait_until(lambda: "restarted envoy" in up.log() and envoy_epoch(up) == 0, timeout=60, what="Envoy back")
        wait_until(lambda: up.respond().status_code == 200, timeout=30, what="traffic after the Envoy crash")


def test_a_config_envoy_refuses_never_reaches_a_hot_restart(tmp_path: Path) -> None:
    """`envoy --mode validate` runs before a hot restart: the running Envoy closes its admin the moment a
    successor starts, so a config the successor cannot load must be caught before."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    envoy = EnvoyProcess(envoy_binary(), run_dir / "envoy.yaml", admin_port=1, ready=lambda: False)
    good = render(sample_config(tmp_path))
    assert envoy.invalid(good) is None
    problem = envoy.invalid(good.replace("num_retries", "num_retriez", 1))
    assert problem and "num_retriez" in problem
    assert list(run_dir.iterdir()) == [], "the candidate file is removed"
