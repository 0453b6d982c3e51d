"""docker-compose.yml, the Dockerfile, the README's configuration table and pooler/config.py agree.

`make test` has no Docker engine, so `docker compose config` cannot run here: the file is YAML-loaded (anchors
and merge keys resolved as compose does, `${VAR:-default}` read as its default) and checked field by field.
`make test-compose` (tests_compose/) builds the image and runs the stack for real.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pooler.config import load_config

ROOT = Path(__file__).resolve().parents[2]
PYTHON_SERVICES = {
    "extproc": "extproc",
    "admin": "admin_flask",
    "scheduler": "scheduler",
    "mcp": "mcp_server",
}
SHARED = ("DATABASE_URL", "POOLER_SECRET_KEYS", "POOLER_KEY_PEPPER")
DEFAULTED = re.compile(r"\$\{([A-Z_]+):-([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def readme_variables() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`((?:POOLER_|DATABASE_)[A-Z_]+)`", section))


def with_defaults(value: str) -> str:
    """`${VAR:-default}` as compose interpolates it when VAR is unset; `${VAR:?message}` is left as written."""
    return DEFAULTED.sub(lambda m: m.group(2), value)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping (shared through the x-pooler-env anchor)"
    return {k: with_defaults(str(v)) for k, v in env.items()}


def test_every_process_is_a_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "envoy", "extproc", "admin", "scheduler", "mcp", "migrate"} <= set(services)
    for name, module in PYTHON_SERVICES.items():
        assert services[name]["command"] == ["python", "-m", module], name
        assert (ROOT / module / "__main__.py").exists(), module
    assert services["migrate"]["command"] == ["pooler", "db", "upgrade"]
    assert "exec envoy -c" in " ".join(services["envoy"]["command"])


def test_python_services_share_one_environment_and_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    pooler_services = [*PYTHON_SERVICES, "envoy", "migrate"]
    envs = [env_of(services[name]) for name in pooler_services]
    assert all(env == envs[0] for env in envs)
    assert {services[name]["image"] for name in pooler_services} == {"codex-pooler:latest"}
    for name in SHARED:
        assert envs[0].get(name), name
    # Secrets come from the operator's environment, never from the file.
    assert envs[0]["POOLER_SECRET_KEYS"].startswith("${POOLER_SECRET_KEYS:?")
    assert envs[0]["POOLER_KEY_PEPPER"].startswith("${POOLER_KEY_PEPPER:?")
    postgres = env_of(services["postgres"])
    user, password, db = postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
    # Host networking: the database is on loopback, on the port the postgres service is told (PGPORT).
    assert envs[0]["DATABASE_URL"] == f"postgresql://{user}:{password}@127.0.0.1:{postgres['PGPORT']}/{db}"
    assert "listen_addresses=127.0.0.1" in services["postgres"]["command"]


def test_environment_is_documented_and_read_by_config(compose: dict[str, Any]) -> None:
    env = env_of(compose["services"]["extproc"])
    documented = readme_variables()
    config_source = (ROOT / "pooler" / "config.py").read_text()
    for name in env:
        assert name in documented, f"{name} is missing from the README configuration table"
        assert f'"{name}"' in config_source, f"{name} is not read by pooler/config.py"


def test_ports_agree_with_config(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = env_of(services["envoy"])
    config = load_config(env)
    assert config.database_url.startswith("postgresql+psycopg://")
    assert config.listen_host == "0.0.0.0"  # the client listener faces the network by default
    defaults = load_config({})
    # Same ports as a bare-metal `pooler up` unless the environment says otherwise, so the docs' URLs hold.
    assert (config.listen_port, config.admin_port, config.mcp_port, config.envoy_admin_port) == (
        defaults.listen_port,
        defaults.admin_port,
        defaults.mcp_port,
        defaults.envoy_admin_port,
    )
    assert len({config.listen_port, config.admin_port, config.mcp_port, config.envoy_admin_port}) == 4
    # Every port comes from the environment (two stacks, or a stack and a test, can share one host) ...
    raw = services["envoy"]["environment"]
    for name in ("POOLER_LISTEN_HOST", "POOLER_LISTEN_PORT", "POOLER_ADMIN_PORT", "POOLER_MCP_PORT"):
        assert str(raw[name]).startswith(f"${{{name}:-"), name
    # ... because every container uses the host's network: loopback-only processes are reachable by Envoy
    # and by nothing else, and there is nothing to publish.
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        assert "ports" not in service, f"{name}: host networking publishes nothing"
    run_volume = "run:" + str(config.extproc_socket.parent)
    for name in [*PYTHON_SERVICES, "envoy"]:
        assert run_volume in services[name]["volumes"], name
    assert config.accesslog_socket.parent == config.extproc_socket.parent


def test_startup_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in [*PYTHON_SERVICES, "envoy"]:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_test_override_only_swaps_the_database(compose: dict[str, Any]) -> None:
    """tests_compose/docker-compose.test.yml may change where the database is, nothing else of the stack."""
    override: dict[str, Any] = yaml.safe_load((ROOT / "tests_compose" / "docker-compose.test.yml").read_text())
    services = override["services"]
    assert set(services) == set(compose["services"])
    for name in [*PYTHON_SERVICES, "envoy", "migrate"]:
        assert list(services[name]) == ["environment"], name
        assert list(services[name]["environment"]) == ["DATABASE_URL"], name


def test_dockerfile_installs_every_process_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    # python:3.11-slim for users; `make test-compose` passes a local base image instead.
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    for package in ["pooler", "envoy", *PYTHON_SERVICES.values()]:
        assert re.search(rf"^COPY {package} \./{package}$", text, re.M), package
        assert (ROOT / package).is_dir(), package
    assert "pip install --no-deps -e ." in text
    assert re.search(r"^USER pooler$", text, re.M)
