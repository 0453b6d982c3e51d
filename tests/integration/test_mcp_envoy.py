"""/mcp through Envoy: the rendered `mcp` route and `pooler_mcp` cluster reach a real `python -m mcp_server`.

The MCP server checks its own tokens, so no ext_proc is needed on this path (none runs here): the SDK client
lists pools and request logs through the Envoy port, and the gates still refuse a request without a token.
"""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pooler.db import make_engine, make_session_factory
from pooler.envoy_config import Endpoint, GatewayConfig, render
from pooler.migrate import upgrade
from pooler.services import mcp_access
from tests.integration.test_mcp_server import PEPPER, McpStack, _gates, _raw_post, _seed, _unwrap, run_client
from tests.support.processes import VENV_BIN, ManagedProcess, free_port, port_open, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def via_envoy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpStack]:
    data_dir: Path = tmp_path_factory.mktemp("mcp-envoy")
    url = f"sqlite:///{data_dir / 'pooler.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    token = _seed(factory)
    mcp_port, listen_port = free_port(), free_port()
    env = {
        "DATABASE_URL": url,
        "POOLER_DATA_DIR": str(data_dir),
        "POOLER_SECRET_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
        "POOLER_KEY_PEPPER": base64.b64encode(PEPPER).decode(),
        "POOLER_MCP_PORT": str(mcp_port),
    }
    sock_dir = Path(tempfile.mkdtemp(prefix="plm", dir="/tmp"))
    config = GatewayConfig(
        listen=Endpoint.tcp("127.0.0.1", listen_port),
        admin=Endpoint.tcp("127.0.0.1", free_port()),
        extproc=Endpoint.unix(sock_dir / "x.sock"),
        accesslog=Endpoint.unix(sock_dir / "a.sock"),
        local=Endpoint.unix(sock_dir / "l.sock"),
        admin_app=Endpoint.tcp("127.0.0.1", free_port()),
        mcp_app=Endpoint.tcp("127.0.0.1", mcp_port),
        upstream_url="http://127.0.0.1:9",
    )
    (data_dir / "envoy.yaml").write_text(render(config))
    mcp = ManagedProcess("mcp", [str(VENV_BIN / "python"), "-m", "mcp_server"], data_dir / "mcp.log", env=env)
    envoy = ManagedProcess(
        "envoy",
        [
            str(VENV_BIN / "envoy"),
            "-c",
            str(data_dir / "envoy.yaml"),
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "--base-id",
            str(secrets.randbelow(1_000_000)),
        ],
        data_dir / "envoy.log",
    )
    try:
        mcp.start()
        envoy.start()
        wait_until(lambda: "pooler-mcp ready" in mcp.log_text() or not mcp.alive(), 20, what="mcp ready")
        wait_until(lambda: port_open(listen_port) or not envoy.alive(), 20, what="envoy listener")
        assert mcp.alive(), mcp.log_text()
        assert envoy.alive(), envoy.log_text()
        yield McpStack(f"http://127.0.0.1:{listen_port}/mcp", factory, token, mcp_access.token_prefix(token), mcp)
    finally:
        envoy.stop()
        mcp.stop()
        engine.dispose()
        for leftover in sock_dir.iterdir():
            leftover.unlink()
        sock_dir.rmdir()


def test_mcp_client_through_envoy(via_envoy: McpStack) -> None:
    _gates(via_envoy, instance=True, operator=True)
    names, pools, logs = run_client(
        via_envoy, via_envoy.token, [("list_pools", {}), ("list_request_logs", {"pool": "team-mcp", "limit": 10})]
    )
    assert "list_pools" in names
    assert any(p["name"] == "team-mcp" for p in _unwrap(pools))
    assert [r["status_code"] for r in _unwrap(logs)] == [401, 429, 200, 200]


def test_mcp_refusals_pass_through_envoy(via_envoy: McpStack) -> None:
    _gates(via_envoy, instance=True, operator=True)
    refused = _raw_post(via_envoy, None)
    assert refused.status_code == 401 and refused.json()["error"]["message"] == "missing_token"
    _gates(via_envoy, instance=False, operator=True)
    assert _raw_post(via_envoy, via_envoy.token).status_code == 403
