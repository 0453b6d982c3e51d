"""A small process supervisor for `pooler up`: start children, prefix their output, restart crashes, stop all.

Each child runs in its own session (process group), so a terminal's Ctrl-C reaches only the supervisor, which
then stops the children in order (SIGTERM to each group, SIGKILL after a deadline); nothing is left behind. On
Linux the children also get PR_SET_PDEATHSIG, so even a SIGKILLed supervisor does not orphan them.

The core never imports process packages: children are argv lists (`python -m extproc`), and readiness is either
a probe (a callable, e.g. "the port answers") or a substring of the child's output.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

Probe = Callable[[], bool]


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    probe: Probe | None = None
    """Polled until it returns True; the child is then ready."""
    ready_line: str | None = None
    """A substring of the child's output that means ready (used when there is no probe)."""
    restart: bool = True
    respawn: ChildSpec | None = None
    """Started in this one's place when it exits unplanned (an Envoy started as a hot-restart successor cannot
    start again as one: the parent it would hand over from is gone)."""


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    stable_after: float = 30.0
    """A child that stayed up this long has its backoff reset: a crash after a day is not a crash loop."""

    def delay(self, consecutive_crashes: int) -> float:
        return float(min(self.maximum, self.initial * 2 ** max(0, consecutive_crashes - 1)))


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


# Loaded once in the parent: the forked child (which may have been forked while output threads run) then only
# makes one foreign call before exec, with nothing to import or allocate that could wait on another thread's lock.
_LIBC = _load_libc() if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGTERM us when the supervisor dies.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    def __init__(self, spec: ChildSpec, emit: Callable[[str, str], None]) -> None:
        self.spec = spec
        self._emit = emit
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.starts = 0
        self.crashes = 0
        self.restart_at: float | None = None
        self.ready = False
        self.announced = False
        """Whether the supervisor has reported this start as ready (recoveries are reported once)."""
        self._reader: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, base_env: Mapping[str, str]) -> None:
        self.ready = False
        self.announced = False
        self.restart_at = None
        env = {**base_env, **self.spec.env}
        self.proc = subprocess.Popen(
            list(self.spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_set_pdeathsig if _LIBC is not None else None,
        )
        self.started_at = time.monotonic()
        self.starts += 1
        self._reader = threading.Thread(target=self._pump, args=(self.proc,), name=f"out-{self.name}", daemon=True)
        self._reader.start()

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            self._emit(self.name, line)
            if self.spec.ready_line and self.spec.probe is None and self.spec.ready_line in line:
                self.ready = True
        proc.stdout.close()

    def poll_ready(self) -> bool:
        if self.ready or not self.running():
            return self.ready
        if self.spec.probe is not None:
            try:
                self.ready = bool(self.spec.probe())
            except Exception:  # a probe may fail in any way until the child is up
                self.ready = False
        elif self.spec.ready_line is None:
            self.ready = True
        return self.ready

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def join_output(self, timeout: float = 2.0) -> None:
        if self._reader is not None:
            self._reader.join(timeout)


@dataclass
class Retiring:
    """A replaced child handing over (an Envoy after its hot restart): it should exit by itself before
    `deadline` (monotonic); past it, SIGTERM, and past the next deadline (`stop_timeout` later) SIGKILL."""

    child: Child
    deadline: float
    terminated: bool = False


class Supervisor:
    """Runs a fixed set of children until `stop_event` is set; see `run`."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        out: IO[str] | None = None,
        backoff: Backoff | None = None,
        base_env: Mapping[str, str] | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        self._out = out or sys.stdout
        self._lock = threading.Lock()
        self.children = [Child(spec, self.emit) for spec in specs]
        self.backoff = backoff or Backoff()
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.stop_timeout = stop_timeout
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.retiring: list[Retiring] = []
        """Replaced children that stop by themselves (an Envoy after its hot-restart handover), each with the
        monotonic deadline after which it is stopped."""

    def emit(self, name: str, line: str) -> None:
        with self._lock:
            self._out.write(f"[{name}] {line}\n")
            self._out.flush()

    def say(self, line: str) -> None:
        self.emit("pooler", line)

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def start_all(self) -> None:
        for child in self.children:
            child.start(self.base_env)
            self.say(f"started {child.name} (pid {child.pid})")

    def all_ready(self) -> bool:
        return all(c.poll_ready() for c in self.children)

    def tick(self, now: float | None = None) -> None:
        """One supervision step: notice exits, schedule and perform restarts, report recoveries."""
        now = time.monotonic() if now is None else now
        for child in self.children:
            if child.proc is None:
                continue
            code = child.proc.poll()
            if code is None:
                if child.starts > 1 and not child.announced and child.poll_ready():
                    child.announced = True
                    self.say(f"{child.name} is ready again after restart")
                continue
            if child.restart_at is None:
                child.join_output(0.5)
                if not child.spec.restart:
                    self.say(f"{child.name} exited with code {code}; not restarting it")
                    child.proc = None
                    continue
                uptime = now - child.started_at
                child.crashes = 1 if uptime >= self.backoff.stable_after else child.crashes + 1
                delay = self.backoff.delay(child.crashes)
                child.restart_at = now + delay
                child.ready = False
                self.say(f"{child.name} exited with code {code} after {uptime:.1f}s; restarting in {delay:.1f}s")
            elif now >= child.restart_at:
                if child.spec.respawn is not None:
                    child.spec = child.spec.respawn
                child.start(self.base_env)
                self.say(f"restarted {child.name} (pid {child.pid}, start #{child.starts})")
        self._reap_retiring(now)

    def _reap_retiring(self, now: float) -> None:
        """Reaps replaced children that exited, and signals one that overstays (one signal per tick, never a
        wait: this runs inside supervision, and waiting here held every other child's for `stop_timeout`)."""
        for entry in list(self.retiring):
            child = entry.child
            if child.running():
                if now < entry.deadline:
                    continue
                if not entry.terminated:
                    self.say(
                        f"{child.name} pid {child.pid} (replaced) is still running after its handover; stopping it"
                    )
                    child.signal_group(signal.SIGTERM)
                    entry.terminated, entry.deadline = True, now + self.stop_timeout
                else:
                    self.say(f"{child.name} pid {child.pid} (replaced) did not stop; killing it")
                    child.signal_group(signal.SIGKILL)
                    entry.deadline = now + self.stop_timeout
                continue
            self.retiring.remove(entry)
            _sweep_group(child)
            self.say(f"{child.name} pid {child.pid} (replaced) has exited")

    def replace(
        self, old: Child, spec: ChildSpec, timeout: float, interval: float = 0.1, handover: float | None = None
    ) -> bool:
        """Zero-downtime swap: start `spec` beside `old`, wait until it is ready (its probe: for `pooler up`'s
        ext_proc processes, Envoy's health check passes it), then stop `old` (SIGTERM: it drains) and wait for
        its exit. Other children are supervised meanwhile. False (the new child stopped, `old` kept) when it
        never got ready in `timeout`.

        `handover`: `old` is not signalled but expected to exit by itself within that many seconds (an Envoy
        whose hot-restart successor tells it when); it is supervised meanwhile and stopped after that."""
        new = self._start_ready(spec, timeout, interval, instead_of=old)
        if new is None:
            return False
        # Out of the supervised set first: its exit is the plan, not a crash to restart.
        self.children[self.children.index(old)] = new
        if handover is not None:
            self.retiring.append(Retiring(old, time.monotonic() + handover))
            self.say(f"{new.name} now runs as pid {new.pid}; pid {old.pid} hands over and exits within {handover:.0f}s")
            return True
        deadline = time.monotonic() + timeout
        old.signal_group(signal.SIGTERM)
        while old.running() and time.monotonic() < deadline + self.stop_timeout:
            self.tick()
            self.stop_event.wait(interval)
        self._stop_one(old)
        self.say(f"{new.name} now runs as pid {new.pid}")
        return True

    def add(self, spec: ChildSpec, timeout: float, interval: float = 0.1) -> bool:
        """Starts one more child and waits until it is ready (stopped again, False, if it never is)."""
        new = self._start_ready(spec, timeout, interval)
        if new is None:
            return False
        self.children.append(new)
        self.say(f"{new.name} now runs as pid {new.pid}")
        return True

    def remove(self, child: Child) -> None:
        """Stops one child for good (SIGTERM: it drains; SIGKILL after `stop_timeout`)."""
        self.children.remove(child)
        self._stop_one(child)
        self.say(f"stopped {child.name} (pid {child.pid})")

    def _start_ready(
        self, spec: ChildSpec, timeout: float, interval: float, instead_of: Child | None = None
    ) -> Child | None:
        """Starts `spec` outside the supervised set and supervises the rest until it is ready; None (and the
        child stopped) when it exits or is not ready within `timeout`."""
        new = Child(spec, self.emit)
        new.start(self.base_env)
        replacing = f" to replace pid {instead_of.pid}" if instead_of is not None else ""
        self.say(f"started {new.name} (pid {new.pid}){replacing}")
        deadline = time.monotonic() + timeout
        while not new.poll_ready():
            if self.stop_event.is_set() or time.monotonic() >= deadline or not new.running():
                kept = f"; keeping pid {instead_of.pid}" if instead_of is not None else ""
                self.say(f"{new.name} (pid {new.pid}) did not become ready{kept}")
                self._stop_one(new)
                return None
            self.tick()
            self.stop_event.wait(interval)
        return new

    def _stop_one(self, child: Child) -> None:
        child.signal_group(signal.SIGTERM)
        if child.proc is not None:
            try:
                child.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                child.signal_group(signal.SIGKILL)
                child.proc.wait(5)
        _sweep_group(child)

    def wait_ready(self, timeout: float, interval: float = 0.1) -> bool:
        """Supervises while waiting until every child is ready; False on timeout or stop."""
        deadline = time.monotonic() + timeout
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            self.tick()
            if self.all_ready():
                return True
            self.stop_event.wait(interval)
        return False

    def run(
        self,
        interval: float = 0.1,
        on_reload: Callable[[], None] | None = None,
        periodic: tuple[float, Callable[[], None]] | None = None,
    ) -> None:
        """Supervises until `stop_event` is set, then stops everything. `reload_event` (SIGHUP) runs
        `on_reload` on this thread (a rolling restart supervises while it waits); `periodic` (seconds, call)
        runs its call that often, on this thread too."""
        next_periodic = time.monotonic() + periodic[0] if periodic else None
        try:
            while not self.stop_event.is_set():
                if self.reload_event.is_set():
                    self.reload_event.clear()
                    if on_reload is not None:
                        on_reload()
                if periodic is not None and next_periodic is not None and time.monotonic() >= next_periodic:
                    periodic[1]()
                    next_periodic = time.monotonic() + periodic[0]
                self.tick()
                self.stop_event.wait(interval)
        finally:
            self.stop_all()

    def stop_all(self) -> None:
        """SIGTERM every child's process group, wait up to `stop_timeout`, then SIGKILL what is left."""
        running = [c for c in self.children + [r.child for r in self.retiring] if c.running()]
        for child in reversed(running):  # Envoy first is not needed; reverse start order is the usual courtesy
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop within {self.stop_timeout:.0f}s; killing it")
                child.signal_group(signal.SIGKILL)
                child.proc.wait(5)
        for child in self.children + [r.child for r in self.retiring]:
            _sweep_group(child)
        if running:
            self.say("all processes stopped")


def install_signal_handlers(stop_event: threading.Event, reload_event: threading.Event | None = None) -> None:
    """SIGINT and SIGTERM set `stop_event` (the supervisor then stops its children and returns); SIGHUP sets
    `reload_event` when given."""

    def handler(signum: int, _frame: object) -> None:
        stop_event.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if reload_event is not None:
        signal.signal(signal.SIGHUP, lambda _signum, _frame: reload_event.set())


def _sweep_group(child: Child) -> None:
    """After `child` exited: grandchildren (gunicorn workers) may outlive a cleanly stopped parent, so its whole
    process group goes; then its output thread is joined."""
    if child.proc is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.proc.pid, signal.SIGKILL)
    child.join_output()
