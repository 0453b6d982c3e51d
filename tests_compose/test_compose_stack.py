"""The shipped Dockerfile and docker-compose.yml, run for real: one Codex CLI turn through the compose stack.

What runs: the image is built (`docker-compose build`, on the local base image `make test-compose` passes in
POOLER_BASE_IMAGE), the stack is brought up with the shipped compose file plus
tests_compose/docker-compose.test.yml (the host's PostgreSQL instead of the postgres:16 service, a fresh
database per run), the Codex upstream simulator runs on the host as the upstream, and the pinned Codex CLI
sends one turn to the compose Envoy with a Pool key made inside a container. Every container uses host
networking, every port is a free one on 127.0.0.1. At the end `docker-compose down -v` must leave no
container, volume, network or listening port behind.

Not proven here: the postgres:16 service itself (see the override file), and the public python:3.11-slim base
(the build uses a debootstrap bookworm image with the same Python minor version).
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, select

from pooler.models import RequestLog, UpstreamAccount
from tests.support.codex_cli import MODEL, run_codex_exec, write_codex_config
from tests.support.databases import psycopg_url, throwaway_postgres_database
from tests.support.processes import REPO_ROOT, VENV_BIN, free_port, port_open
from tests.support.simulator import RunningSimulator, running_simulator

COMPOSE_FILES = (REPO_ROOT / "docker-compose.yml", REPO_ROOT / "tests_compose" / "docker-compose.test.yml")
LONG_RUNNING = ("envoy", "extproc", "admin", "scheduler", "mcp")
ACCOUNT = "acct-1"
POOL = "compose"
ANSWER = "Compose answer 2718 from {model}."
KEY_ENV = "POOLER_API_KEY"
T = TypeVar("T")

pytestmark = pytest.mark.timeout(1800)  # the first image build alone can take minutes


class CommandFailed(RuntimeError):
    pass


class StackBroken(RuntimeError):
    """A long-running service exited or was restarted: waiting on would only hide the cause."""


@dataclass
class Compose:
    project: str
    ports: dict[str, int]
    env: dict[str, str] = field(repr=False)
    """The environment docker-compose interpolates from: it holds the secret keys, so it is never printed."""

    @classmethod
    def create(cls, database_url: str) -> Compose:
        ports = {name: free_port() for name in ("listen", "admin", "mcp", "envoy_admin")}

        def key() -> str:
            return base64.b64encode(secrets.token_bytes(32)).decode()

        env = {
            **os.environ,  # PATH, DOCKER_HOST, and POOLER_BASE_IMAGE when the make target set it
            "POOLER_SECRET_KEYS": f"k1:{key()}",
            "POOLER_KEY_PEPPER": key(),
            "POOLER_LISTEN_HOST": "127.0.0.1",
            "POOLER_LISTEN_PORT": str(ports["listen"]),
            "POOLER_ADMIN_PORT": str(ports["admin"]),
            "POOLER_MCP_PORT": str(ports["mcp"]),
            "POOLER_ENVOY_ADMIN_PORT": str(ports["envoy_admin"]),
            "POOLER_TEST_DATABASE_URL": database_url,
            "POOLER_LOG_LEVEL": "INFO",
        }
        return cls(project=f"poolertest{secrets.token_hex(4)}", ports=ports, env=env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['listen']}"

    def argv(self, *args: str) -> list[str]:
        files = [arg for path in COMPOSE_FILES for arg in ("-f", str(path))]
        return ["docker-compose", "--project-name", self.project, *files, *args]

    def run(
        self, *args: str, stdin: str | None = None, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args),
            cwd=REPO_ROOT,
            env=self.env,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            # args never carry a secret; a failed command printed no key.
            raise CommandFailed(
                f"docker-compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def pooler(self, *args: str, stdin: str | None = None) -> str:
        """`pooler ...` in a one-off container of the image, with the stack's environment (not its deps)."""
        return self.run("run", "--rm", "--no-deps", "-T", "migrate", "pooler", *args, stdin=stdin).stdout

    def container_ids(self, service: str) -> list[str]:
        # The docker CLI, not docker-compose: these run every poll round and docker-compose 1.x (Python) takes
        # about a second to start.
        project = f"label=com.docker.compose.project={self.project}"
        return docker(
            "ps", "--all", "--quiet", "--filter", project, "--filter", f"label=com.docker.compose.service={service}"
        ).split()

    def states(self) -> dict[str, tuple[str, int]]:
        """long-running service -> (container status, restart count)."""
        ids = [cid for service in LONG_RUNNING for cid in self.container_ids(service)]
        if not ids:
            return {}
        fmt = '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{.RestartCount}}'
        states: dict[str, tuple[str, int]] = {}
        for line in docker("inspect", "--format", fmt, *ids).splitlines():
            service, status, restarts = line.split()
            states[service] = (status, int(restarts))
        return states

    def assert_alive(self) -> None:
        for service, (status, restarts) in self.states().items():
            if status in {"exited", "dead"} or restarts > 0:
                raise StackBroken(f"service {service} is {status} after {restarts} restarts")

    def service_log(self, service: str) -> str:
        """One service's output, stdout and stderr together (the Python services log to stderr)."""
        text = ""
        for cid in self.container_ids(service):
            out = subprocess.run(["docker", "logs", cid], capture_output=True, text=True, timeout=60, check=True)
            text += out.stdout + out.stderr
        return text

    def logs(self, *services: str) -> str:
        return self.run("logs", "--no-color", "--timestamps", *services, check=False).stdout

    def down(self) -> None:
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "20")

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": docker("ps", "--all", "--quiet", "--filter", label).split(),
            "volumes": docker("volume", "ls", "--quiet", "--filter", label).split(),
            "networks": docker("network", "ls", "--quiet", "--filter", label).split(),
            "ports": [name for name, port in self.ports.items() if port_open(port)],
        }


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=60).stdout


def poll(predicate: Callable[[], T | None], what: str, timeout: float, guard: Callable[[], None]) -> T:
    """Until `predicate` returns something truthy; `guard` runs first each round and raises to stop early."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        guard()
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, OSError) as exc:  # not listening yet
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}: last error {last!r}")
        time.sleep(0.25)


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    return httpx.get(url, headers=headers, timeout=5).status_code


def admin_shows_first_owner_page(url: str) -> bool:
    """With no operator yet the admin sends /login to the first-owner form: that page means the admin answered
    through Envoy's /admin route and read the database."""
    r = httpx.get(f"{url}/admin/login", follow_redirects=True, timeout=5)
    return r.status_code == 200 and r.url.path == "/admin/bootstrap"


@contextmanager
def logs_on_failure(compose: Compose, sim: RunningSimulator) -> Iterator[None]:
    try:
        yield
    except BaseException:
        print(f"===== docker-compose logs ({compose.project}) =====\n{compose.logs()}")
        print(f"===== simulator (last 4000 chars) =====\n{sim.process.log_text()[-4000:]}")
        raise


def upstream_of(envoy_yaml: str) -> dict[str, Any]:
    """The socket address of the rendered `codex_upstream` cluster (where Envoy sends Codex traffic)."""
    clusters = yaml.safe_load(envoy_yaml)["static_resources"]["clusters"]
    (cluster,) = [c for c in clusters if c["name"] == "codex_upstream"]
    address: dict[str, Any] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    return dict(address["socket_address"])


def request_log_rows(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(psycopg_url(database_url))
    try:
        with engine.connect() as conn:
            result = conn.execute(
                select(
                    RequestLog.route_family,
                    RequestLog.status_code,
                    RequestLog.model,
                    RequestLog.key_prefix,
                    RequestLog.output_tokens,
                    UpstreamAccount.chatgpt_account_id,
                )
                .join(UpstreamAccount, RequestLog.account_id == UpstreamAccount.id, isouter=True)
                .where(RequestLog.route_family == "responses")
            )
            return [dict(row._mapping) for row in result]
    finally:
        engine.dispose()


def test_compose_stack_serves_a_codex_turn(tmp_path: Path) -> None:
    timings: dict[str, float] = {}

    def timed(phase: str, started: float) -> None:
        timings[phase] = round(time.monotonic() - started, 1)

    with ExitStack() as stack:
        database_url = stack.enter_context(throwaway_postgres_database("pooler_compose"))
        sim = stack.enter_context(running_simulator(tmp_path / "logs", accounts=2, cli=True))
        compose = Compose.create(database_url)
        # Safety net for a failure before the checked `down` at the end (a second down is a no-op).
        stack.callback(lambda: compose.run("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False))
        with logs_on_failure(compose, sim):
            started = time.monotonic()
            compose.run("build", "migrate", timeout=1200)  # every service shares this one build and image
            timed("build", started)

            # Migrate first, on its own: the stand-in postgres service must turn healthy before it runs
            # (depends_on), and the container must exit 0 on the fresh database.
            started = time.monotonic()
            compose.run("run", "--rm", "-T", "migrate")
            # Point the stack at the simulator before Envoy first starts (it renders upstream_base_url into
            # its config at start), so no container ever resolves or dials the real upstream or auth server.
            compose.pooler("setting", "set", "upstream_base_url", sim.base_url)
            compose.pooler("setting", "set", "auth_base_url", sim.base_url)
            compose.pooler("pool", "create", POOL)
            auth_json = subprocess.run(
                [str(VENV_BIN / "pooler"), "simulator", "make-auth", "--account", ACCOUNT],
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            compose.pooler("account", "import", "--pool", POOL, "-", stdin=auth_json)
            key = compose.pooler("key", "create", "--pool", POOL, "--label", "compose test").strip()
            # Assertions on the key are computed first: pytest would print a failing operand, i.e. the secret.
            printed_a_key = key.startswith("cpk_")
            assert printed_a_key, "key create printed no Pool key"
            timed("migrate+seed", started)

            started = time.monotonic()
            compose.run("up", "-d")
            guard = compose.assert_alive
            envoy_admin = f"http://127.0.0.1:{compose.ports['envoy_admin']}"
            poll(lambda: status_of(f"{envoy_admin}/ready") == 200, "Envoy admin /ready", 120, guard)
            poll(lambda: status_of(f"{compose.url}/readyz") == 200, "/readyz through Envoy (ext_proc up)", 120, guard)
            poll(lambda: admin_shows_first_owner_page(compose.url), "the admin through Envoy", 120, guard)
            poll(lambda: status_of(f"http://127.0.0.1:{compose.ports['mcp']}/healthz") == 200, "MCP", 120, guard)
            poll(lambda: "acquired leadership" in compose.service_log("scheduler"), "scheduler leader", 120, guard)
            poll(
                lambda: status_of(f"{compose.url}/backend-api/wham/usage", {"Authorization": f"Bearer {key}"}) == 200,
                "the ext_proc snapshot to know the key",
                60,
                guard,
            )
            timed("up+ready", started)

            rendered = compose.run("exec", "-T", "envoy", "cat", "/var/lib/pooler/run/envoy.yaml").stdout
            assert upstream_of(rendered) == {"address": "127.0.0.1", "port_value": sim.port}

            started = time.monotonic()
            sim.client.configure(text=ANSWER)
            home = write_codex_config(
                tmp_path / "codex-home",
                provider="pooler",
                provider_name="Codex Pooler (compose)",
                base_url=f"{compose.url}/backend-api/codex",
                env_key=KEY_ENV,
                websockets=False,
            )
            result = run_codex_exec(tmp_path, home, KEY_ENV, key, timeout=120)
            assert result.returncode == 0, result.stdout + result.stderr
            assert ANSWER.format(model=MODEL) in result.stdout

            turns = [e for e in sim.client.journal(route="responses") if e.get("usage")]
            assert len(turns) == 1, turns
            assert turns[0]["account"] == ACCOUNT
            # The upstream saw the imported account's token (a JWT), never the Pool key, in any request.
            assert all((e["authorization"] or "").startswith("Bearer ey") for e in turns)
            key_reached_upstream = any(key in (e["authorization"] or "") for e in sim.client.journal())
            assert not key_reached_upstream, "the upstream saw the Pool key"
            rows = poll(lambda: request_log_rows(database_url), "the request log row (access-log writer)", 30, guard)
            assert len(rows) == 1, rows
            row = rows[0]
            assert row["status_code"] == 200 and row["model"] == MODEL
            assert row["chatgpt_account_id"] == ACCOUNT
            row_names_the_key = bool(row["key_prefix"]) and key.startswith(row["key_prefix"])
            assert row_names_the_key, "the request log row does not carry the Pool key's prefix"
            assert row["output_tokens"] == turns[0]["usage"]["output_tokens"]
            timed("codex turn", started)

            status = compose.run("exec", "-T", "admin", "pooler", "status").stdout
            # The CLI inside a running service container sees the migrated database and the compose keyring.
            assert "reachable, revision" in status and "(head)" in status and "pepper set" in status, status
            compose.assert_alive()  # nothing crashed or restarted behind the turn

        started = time.monotonic()
        compose.down()
        timed("down", started)
        leftovers = compose.leftovers()
        assert leftovers == {"containers": [], "volumes": [], "networks": [], "ports": []}, leftovers
    print(f"compose test phases (s): {timings}")
