"""The pooler inside an Envoy a team already runs: a hand-made Envoy config (its own listener, its own file access
log, its own route to a small local HTTP server, its own catch-all) merged with `pooler envoy-config --fragments`,
the ext_proc reached over TCP. Real clients through it: the Codex CLI over HTTP and websockets, the openai SDK on
/v1 (translated), pooled usage; the team's route keeps working, also while the ext_proc is down (the pooler's
routes then answer a JSON 503 `gateway_unavailable` at once). A route the team wrote by hand towards a pooler
cluster is refused, never forwarded with an account token. The same client checks run on the bundled config,
whose Envoy shares the ext_proc.
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from pooler.envoy_config import Endpoint
from pooler.envoy_config.fragments import FRAGMENT_FILES, render_fragments
from pooler.gateway.upstream_identity import forbidden_upstream
from tests.support.codex_cli import MODEL, run_codex_exec, write_codex_config
from tests.support.gateway import Gateway, SeededPool, running_gateway
from tests.support.processes import VENV_BIN, ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.e2e
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TEAM_BODY = b"team service says hi"
ANSWER = "Team Envoy answer 5150 from {model}."


class _TeamHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", str(len(TEAM_BODY)))
        self.end_headers()
        self.wfile.write(TEAM_BODY)

    def log_message(self, *args: Any) -> None:
        pass


def team_envoy_config(
    fragments: dict[str, Any], listen_port: int, admin_port: int, team_port: int, team_log: Path
) -> dict[str, Any]:
    """What a team already runs, with the fragments put where their headers say."""
    team_routes = [
        {"name": "team_hello", "match": {"prefix": "/hello"}, "route": {"cluster": "team_service"}},
        # A hand-written route to a pooler cluster (what a user did before the fragments existed).
        {
            "name": "team_shortcut",
            "match": {"prefix": "/shortcut/"},
            "route": {"cluster": "codex_upstream", "prefix_rewrite": "/v1/"},
        },
        {"name": "team_404", "match": {"prefix": "/"}, "direct_response": {"status": 404}},
    ]
    access = fragments["access_log.yaml"]
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "layered_runtime": {"layers": [fragments["runtime.yaml"]]},
        "static_resources": {
            "listeners": [
                {
                    "name": "team_ingress",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": HCM,
                                        "stat_prefix": "team",
                                        # A team's edge adds forwarding headers (x-forwarded-for with the client's
                                        # address, x-envoy-external-address, via): none may reach the upstream.
                                        "use_remote_address": True,
                                        "via": "team-edge",
                                        "access_log": [
                                            {
                                                "name": "envoy.access_loggers.file",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.access_loggers"
                                                    ".file.v3.FileAccessLog",
                                                    "path": str(team_log),
                                                },
                                            },
                                            *access["access_log"],
                                        ],
                                        "local_reply_config": {"mappers": fragments["local_reply.yaml"]["mappers"]},
                                        "http_filters": [
                                            *fragments["http_filters.yaml"],
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": ROUTER,
                                                    "upstream_log": access["upstream_log"],
                                                },
                                            },
                                        ],
                                        "route_config": {
                                            "name": "team",
                                            "virtual_hosts": [
                                                {
                                                    "name": "team",
                                                    "domains": ["*"],
                                                    "routes": [*fragments["routes.yaml"], *team_routes],
                                                }
                                            ],
                                        },
                                    },
                                }
                            ]
                        }
                    ],
                },
                *fragments["listeners.yaml"],
            ],
            "clusters": [
                {
                    "name": "team_service",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "team_service",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {"address": "127.0.0.1", "port_value": team_port}
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                },
                *fragments["clusters.yaml"],
            ],
        },
    }


@dataclasses.dataclass
class TeamEnvoy:
    url: str
    gw: Gateway
    seeded: SeededPool
    team_log: Path


@pytest.fixture(scope="module")
def both(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamEnvoy]:
    log_dir = tmp_path_factory.mktemp("team-envoy")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TeamHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with running_gateway(postgres_url, log_dir, extproc_tcp=True) as gw:
            assert gw.config is not None and gw.config.extproc.port is not None  # the ext_proc over TCP
            config = dataclasses.replace(
                gw.config,
                listen=Endpoint.tcp("127.0.0.1", free_port()),
                admin=Endpoint.tcp("127.0.0.1", free_port()),
                local=Endpoint.unix(gw.sock_dir / "team-local.sock"),
            )
            rendered = render_fragments(config)
            assert set(rendered) == set(FRAGMENT_FILES)
            fragment_dir = log_dir / "fragments"
            fragment_dir.mkdir()
            for name, text in rendered.items():
                (fragment_dir / name).write_text(text)
            # The team's config is built from the files as written (standalone YAML each).
            fragments = {name: yaml.safe_load((fragment_dir / name).read_text()) for name in FRAGMENT_FILES}
            port = config.listen.port
            assert port is not None and config.admin.port is not None
            team_log = log_dir / "team-access.log"
            envoy_yaml = log_dir / "team-envoy.yaml"
            envoy_yaml.write_text(
                yaml.safe_dump(
                    team_envoy_config(fragments, port, config.admin.port, server.server_address[1], team_log)
                )
            )
            envoy = ManagedProcess(
                "team-envoy",
                [str(VENV_BIN / "envoy"), "-c", str(envoy_yaml), "--disable-hot-restart", "--log-level", "warn"],
                log_dir / "team-envoy.log",
            ).start()
            try:
                url = f"http://127.0.0.1:{port}"
                wait_until(lambda: httpx.get(f"{url}/hello", timeout=2).status_code == 200, 60, what="team envoy")
                seeded = gw.seed_pool("team-fragments", ["acct-tf1", "acct-tf2"])
                gw.wait_for_key(seeded)
                yield TeamEnvoy(url, gw, seeded, team_log)
            except BaseException:
                print(envoy.log_text()[-5000:])
                raise
            finally:
                envoy.stop()
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(params=["fragments", "bundled"])
def target(request: pytest.FixtureRequest, both: TeamEnvoy) -> TeamEnvoy:
    """The team's Envoy with the fragments, or the bundled config's Envoy (same ext_proc, same pool)."""
    return both if request.param == "fragments" else dataclasses.replace(both, url=both.gw.url)


@pytest.fixture
def team(both: TeamEnvoy) -> TeamEnvoy:
    return both


def _assert_no_proxy_headers(entries: list[dict[str, Any]]) -> None:
    """The upstream's view: whatever the team's Envoy (or ours) added, no forwarding, Envoy or gateway header."""
    assert entries
    for entry in entries:
        leaked = sorted(name for name in entry["received"] if forbidden_upstream(name))
        assert not leaked, (entry["path"], leaked)


def test_the_team_route_and_readiness(team: TeamEnvoy) -> None:
    hello = httpx.get(f"{team.url}/hello", timeout=5)
    assert hello.status_code == 200 and hello.content == TEAM_BODY
    ready = httpx.get(f"{team.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    # The team's catch-all still answers what it always did (the fragments capture only the pooler's paths).
    assert httpx.get(f"{team.url}/elsewhere", timeout=5).status_code == 404


@pytest.mark.parametrize("websockets", [False, True], ids=["http-sse", "websocket"])
def test_codex_cli(target: TeamEnvoy, tmp_path: Path, websockets: bool) -> None:
    team = target
    sim = team.gw.simulator.client
    sim.configure(text=ANSWER)
    since = max((e["seq"] for e in sim.journal()), default=0)
    family = "responses_ws" if websockets else "responses"
    logged = len(team.gw.request_logs(pool_id=team.seeded.pool_id, route_family=family))
    home = write_codex_config(
        tmp_path / "codex-home",
        provider="team",
        provider_name="Team Envoy",
        base_url=f"{team.url}/backend-api/codex",
        env_key="POOLER_API_KEY",
        websockets=websockets,
    )
    result = run_codex_exec(tmp_path, home, "POOLER_API_KEY", team.seeded.key, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ANSWER.format(model=MODEL) in result.stdout
    entries = [e for e in sim.journal(since=since) if e["route"] == "responses"]
    assert entries and {e["account"] for e in entries} <= {"acct-tf1", "acct-tf2"}
    assert all(e["authorization"].startswith("Bearer ey") for e in entries if e["authorization"])
    _assert_no_proxy_headers([e for e in entries if e["method"] != "WS"])
    rows = team.gw.wait_for_logs(logged + 1, pool_id=team.seeded.pool_id, route_family=family)
    assert rows[-1].account_id in team.seeded.accounts.values()
    if websockets:
        assert any(e["transport"] == "websocket" and e["status"] == 101 for e in entries)
    else:
        assert rows[-1].model == MODEL and rows[-1].total_tokens


def test_openai_sdk_v1_is_translated(target: TeamEnvoy) -> None:
    team = target
    sim = team.gw.simulator.client
    sim.configure(text="Translated through the team Envoy.")
    since = max((e["seq"] for e in sim.journal()), default=0)
    with openai.OpenAI(base_url=f"{team.url}/v1", api_key=team.seeded.key, max_retries=0, timeout=30) as sdk:
        chat = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert chat.choices[0].message.content == "Translated through the team Envoy."
        response = sdk.responses.create(model=MODEL, input="hi")
        assert response.output_text == "Translated through the team Envoy."
        assert MODEL in [m.id for m in sdk.models.list().data]
    # The upstream received Codex requests on the Codex path (translated), with account tokens.
    upstream = [e for e in sim.journal(since=since) if e["route"] == "responses"]
    assert len(upstream) == 2 and all(e["path"] == "/backend-api/codex/responses" for e in upstream)
    _assert_no_proxy_headers(upstream)


def test_pooled_usage(target: TeamEnvoy) -> None:
    team = target
    for path in ("/backend-api/wham/usage", "/api/codex/usage"):
        reply = httpx.get(f"{team.url}{path}", headers={"authorization": f"Bearer {team.seeded.key}"}, timeout=5)
        assert reply.status_code == 200, reply.text
        assert isinstance(reply.json(), dict)
    refused = httpx.get(f"{team.url}/backend-api/wham/usage", timeout=5)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_api_key"


def test_a_hand_written_route_to_a_pooler_cluster_is_refused(team: TeamEnvoy) -> None:
    sim = team.gw.simulator.client
    since = max((e["seq"] for e in sim.journal()), default=0)
    reply = httpx.post(
        f"{team.url}/shortcut/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {team.seeded.key}", "x-pooler-route": "responses"},
        timeout=10,
    )
    assert reply.status_code == 503 and reply.json()["error"]["code"] == "route_not_configured"
    assert sim.journal(since=since) == []  # nothing went upstream, with or without an account token


def test_ext_proc_down_fails_closed_fast_and_the_team_route_keeps_working(team: TeamEnvoy) -> None:
    team.gw.kill_extproc()
    try:
        for url in (team.url, team.gw.url):  # the team's Envoy and the bundled one
            # The client gives up after 1 s: a dead ext_proc must be answered well within that (it is noticed at
            # connect), never by waiting for a timeout.
            reply = httpx.post(
                f"{url}/backend-api/codex/responses",
                json={"model": MODEL, "input": "hi", "stream": True},
                headers={"authorization": f"Bearer {team.seeded.key}"},
                timeout=1.0,
            )
            assert reply.status_code == 503, reply.text
            assert reply.json()["error"]["code"] == "gateway_unavailable"
            assert reply.headers["content-type"].startswith("application/json")
        hello = httpx.get(f"{team.url}/hello", timeout=5)
        assert hello.status_code == 200 and hello.content == TEAM_BODY
        # The team's own errors keep their own bodies (the pooler's mappers match only the pooler's routes).
        assert httpx.get(f"{team.url}/elsewhere", timeout=5).content == b""
    finally:
        team.gw.start_extproc()
    # The team's own access log kept logging its own routes.
    wait_until(lambda: team.team_log.exists() and "/hello" in team.team_log.read_text(), 10, what="team access log")
