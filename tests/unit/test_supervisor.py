"""The `pooler up` supervisor with tiny Python children: prefixed output, restart after a crash, clean stop."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading

from pooler.supervisor import Backoff, ChildSpec, Supervisor
from tests.support.processes import wait_until

SLEEPER = "import sys, time; print('hello from', sys.argv[1], flush=True); time.sleep(600)"
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ignoring TERM', flush=True); "
    "time.sleep(600)"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once reaped or marked Z.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:  # reaped in between
        return False


def test_prefixes_restarts_and_stops() -> None:
    out = io.StringIO()
    specs = [
        ChildSpec("a", [sys.executable, "-c", SLEEPER, "a"], ready_line="hello from a"),
        ChildSpec("b", [sys.executable, "-c", SLEEPER, "b"]),
    ]
    sup = Supervisor(specs, out=out, backoff=Backoff(initial=0.05, maximum=0.2))
    runner = threading.Thread(target=sup.run)
    sup.start_all()
    try:
        assert sup.wait_ready(15)
        runner.start()
        assert "[a] hello from a" in out.getvalue()
        first = sup.child("a").pid
        assert first is not None
        os.killpg(first, signal.SIGKILL)
        wait_until(lambda: sup.child("a").pid != first and sup.child("a").ready, what="a restarted")
        assert "a exited with code -9" in out.getvalue()
        wait_until(lambda: "a is ready again" in out.getvalue(), what="recovery reported")
    finally:
        pids = [c.pid for c in sup.children if c.pid]
        sup.stop_event.set()
        runner.join(20) if runner.is_alive() else sup.stop_all()
    assert not any(alive(pid) for pid in pids)
    assert "all processes stopped" in out.getvalue()


def test_sigkill_after_deadline() -> None:
    out = io.StringIO()
    sup = Supervisor([ChildSpec("s", [sys.executable, "-c", STUBBORN], ready_line="ignoring")], out=out)
    sup.stop_timeout = 0.5
    sup.start_all()
    assert sup.wait_ready(15)
    pid = sup.child("s").pid
    assert pid is not None
    sup.stop_all()
    assert not alive(pid)
    assert "did not stop" in out.getvalue()


def test_backoff_grows_and_caps() -> None:
    b = Backoff(initial=0.5, maximum=4)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1, 2, 4, 4]


def test_children_die_with_a_killed_supervisor() -> None:
    # PR_SET_PDEATHSIG: even a SIGKILLed `pooler up` (no chance to clean up) leaves no child behind.
    script = (
        "import sys, time\n"
        "from pooler.supervisor import ChildSpec, Supervisor\n"
        f"sup = Supervisor([ChildSpec('s', [sys.executable, '-c', {SLEEPER!r}, 's'])])\n"
        "sup.start_all()\n"
        "print('CHILD', sup.child('s').pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        line = next(x for x in parent.stdout if x.startswith("CHILD"))
        child = int(line.split()[1])
        assert alive(child)
        parent.kill()
        parent.wait(10)
        wait_until(lambda: not alive(child), timeout=10, what="orphaned child to exit")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_replace_starts_the_new_child_first_and_stops_the_old_one_only_when_it_is_ready() -> None:
    out = io.StringIO()
    gate = threading.Event()
    spec = ChildSpec("w", [sys.executable, "-c", SLEEPER, "w1"], ready_line="hello from w1")
    sup = Supervisor([spec], out=out, backoff=Backoff(initial=0.05, maximum=0.2))
    sup.start_all()
    replaced: list[bool] = []
    try:
        assert sup.wait_ready(15)
        old = sup.child("w")
        old_pid = old.pid
        assert old_pid is not None
        # Ready only when the test says so (for `pooler up`: Envoy's health check passed the new process).
        new_spec = ChildSpec("w", [sys.executable, "-c", SLEEPER, "w2"], probe=gate.is_set)
        old_alive_meanwhile: list[bool] = []

        def open_gate() -> None:
            wait_until(lambda: "hello from w2" in out.getvalue(), what="replacement started")
            old_alive_meanwhile.append(alive(old_pid))
            gate.set()

        # replace() runs on this thread, as in `pooler up`: a child's PR_SET_PDEATHSIG fires when the thread
        # that started it ends, so a replacement started from a short-lived thread would be stopped with it.
        opener = threading.Thread(target=open_gate)
        opener.start()
        replaced.append(sup.replace(old, new_spec, timeout=30))
        opener.join(30)
        assert old_alive_meanwhile == [True], "the old child must serve until its replacement is ready"
        assert replaced == [True]
        assert not alive(old_pid)
        assert [c.name for c in sup.children] == ["w"] and sup.child("w").pid != old_pid
        assert "exited with code" not in out.getvalue(), "a planned stop is not a crash to restart"
        sup.tick()
        assert sup.child("w").running()
    finally:
        sup.stop_all()


def test_replace_keeps_the_old_child_when_the_new_one_never_gets_ready() -> None:
    out = io.StringIO()
    spec = ChildSpec("w", [sys.executable, "-c", SLEEPER, "w1"], ready_line="hello from w1")
    sup = Supervisor([spec], out=out, stop_timeout=5)
    sup.start_all()
    try:
        assert sup.wait_ready(15)
        old = sup.child("w")
        never = ChildSpec("w", [sys.executable, "-c", SLEEPER, "w2"], probe=lambda: False)
        assert sup.replace(old, never, timeout=1.0) is False
        assert sup.children == [old] and old.running()
        assert "did not become ready; keeping pid" in out.getvalue()
    finally:
        sup.stop_all()


QUITTER = "import sys, time; print('hello from', sys.argv[1], flush=True); time.sleep(float(sys.argv[2]))"


def test_a_handover_lets_the_old_child_exit_by_itself_and_stops_it_after_the_deadline() -> None:
    """For an Envoy hot restart: the old process is not signalled; it exits when its successor says so, and a
    replaced process that overstays its handover is stopped."""
    out = io.StringIO()
    # The old one leaves 3 s after its start by itself, as an Envoy does when its successor tells it to.
    quits = ChildSpec("e", [sys.executable, "-c", QUITTER, "e0", "3"], ready_line="hello from e0")
    sup = Supervisor([quits], out=out)
    sup.start_all()
    try:
        assert sup.wait_ready(15)
        polite = sup.child("e")
        successor = ChildSpec("e", [sys.executable, "-c", SLEEPER, "e1"], ready_line="hello from e1")
        assert sup.replace(polite, successor, timeout=15, handover=30)
        assert polite.running(), "a handover does not signal the old child"
        assert sup.child("e").pid != polite.pid
        wait_until(lambda: (sup.tick(), not sup.retiring)[1], what="the old child reaped")
        assert not polite.running()
        assert "(replaced) has exited" in out.getvalue()
        assert "still running after its handover" not in out.getvalue()
        assert "exited with code" not in out.getvalue(), "a planned exit is not a crash"

        overstays = sup.child("e")
        last = ChildSpec("e", [sys.executable, "-c", SLEEPER, "e2"], ready_line="hello from e2")
        assert sup.replace(overstays, last, timeout=15, handover=0.2)
        wait_until(lambda: (sup.tick(), not sup.retiring)[1], what="the overstaying child stopped")
        assert not overstays.running()
        assert "still running after its handover; stopping it" in out.getvalue()
        assert sup.child("e").running()
    finally:
        sup.stop_all()


def test_a_child_with_a_respawn_spec_restarts_as_that_spec() -> None:
    """An Envoy hot-restart successor that crashes starts again as a first Envoy (epoch 0), not as itself."""
    out = io.StringIO()
    fresh = ChildSpec("e", [sys.executable, "-c", SLEEPER, "fresh"], ready_line="hello from fresh")
    successor = ChildSpec("e", [sys.executable, "-c", SLEEPER, "successor"], respawn=fresh)
    sup = Supervisor([successor], out=out, backoff=Backoff(initial=0.05, maximum=0.2))
    sup.start_all()
    try:
        assert sup.wait_ready(15)
        pid = sup.child("e").pid
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: (sup.tick(), "hello from fresh" in out.getvalue())[1], what="respawned")
        assert sup.child("e").spec is fresh
    finally:
        sup.stop_all()


def test_add_and_remove_change_the_supervised_set() -> None:
    out = io.StringIO()
    sup = Supervisor([ChildSpec("a", [sys.executable, "-c", SLEEPER, "a"])], out=out)
    sup.start_all()
    try:
        assert sup.add(ChildSpec("b", [sys.executable, "-c", SLEEPER, "b"], ready_line="hello from b"), timeout=15)
        assert [c.name for c in sup.children] == ["a", "b"]
        b = sup.child("b")
        sup.remove(b)
        assert [c.name for c in sup.children] == ["a"] and not b.running()
        assert not sup.add(ChildSpec("c", [sys.executable, "-c", "raise SystemExit(3)"], probe=lambda: False), 15)
        assert [c.name for c in sup.children] == ["a"]
    finally:
        sup.stop_all()


def test_run_calls_the_periodic_check() -> None:
    sup = Supervisor([], out=io.StringIO())
    calls: list[int] = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 3:
            sup.stop_event.set()

    runner = threading.Thread(target=sup.run, kwargs={"interval": 0.01, "periodic": (0.01, check)})
    runner.start()
    runner.join(20)
    assert not runner.is_alive() and len(calls) == 3


def test_a_replaced_child_that_ignores_sigterm_is_killed_on_a_later_tick_without_holding_supervision() -> None:
    """An overstaying replaced child gets SIGTERM at its handover deadline and SIGKILL `stop_timeout` later, each
    from a tick that returns at once: supervision of the other children goes on in between."""
    out = io.StringIO()
    stubborn = ChildSpec("e", [sys.executable, "-c", STUBBORN], ready_line="ignoring TERM")
    sup = Supervisor([stubborn], out=out, stop_timeout=60)
    sup.start_all()
    try:
        assert sup.wait_ready(15)
        old = sup.child("e")
        assert sup.replace(
            old, ChildSpec("e", [sys.executable, "-c", SLEEPER, "e1"], ready_line="hello from e1"), 15, handover=0
        )
        sup.tick()
        assert "still running after its handover; stopping it" in out.getvalue()
        assert old.running() and sup.retiring, "SIGTERM is ignored; the tick did not wait for the exit"
        sup.retiring[0].deadline = 0  # as if stop_timeout (60 s) had passed
        wait_until(lambda: (sup.tick(), not sup.retiring)[1], what="the stubborn child killed and reaped")
        assert not old.running()
        assert "did not stop; killing it" in out.getvalue() and "(replaced) has exited" in out.getvalue()
        assert sup.child("e").running()
    finally:
        sup.stop_all()
