"""docker-compose.yml, the Dockerfile, the README's configuration table and pooler/config.py agree.

There is no Docker engine here, so `docker compose config` cannot run: the file is YAML-loaded (anchors and
merge keys resolved as compose does) and checked field by field.
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


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def readme_variables() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`((?:POOLER_|DATABASE_)[A-Z_]+)`", section))


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping (shared through the x-pooler-env anchor)"
    return {k: str(v) for k, v in env.items()}


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
    assert envs[0]["DATABASE_URL"] == f"postgresql://{user}:{password}@postgres:5432/{db}"


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
    assert config.listen_host == "0.0.0.0"  # inside the container: reachable through the published port
    published = {int(p.split(":")[-1]) for p in services["envoy"]["ports"]}
    assert published == {config.listen_port}
    defaults = load_config({})
    # Same ports as a bare-metal `pooler up`, so the docs' URLs hold in both.
    assert (config.listen_port, config.admin_port, config.mcp_port, config.envoy_admin_port) == (
        defaults.listen_port,
        defaults.admin_port,
        defaults.mcp_port,
        defaults.envoy_admin_port,
    )
    assert len({config.listen_port, config.admin_port, config.mcp_port, config.envoy_admin_port}) == 4
    # Loopback-bound processes must share Envoy's network namespace to be reachable by it.
    for name in PYTHON_SERVICES:
        assert services[name]["network_mode"] == "service:envoy", name
        assert "ports" not in services[name], f"{name} listens on loopback only: publish nothing"
    run_volume = "run:" + str(config.extproc_socket.parent)
    for name in [*PYTHON_SERVICES, "envoy"]:
        assert run_volume in services[name]["volumes"], name
    assert config.accesslog_socket.parent == config.extproc_socket.parent


def test_startup_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in [*PYTHON_SERVICES, "envoy"]:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_dockerfile_installs_every_process_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    for package in ["pooler", "envoy", "protos", *PYTHON_SERVICES.values()]:
        assert re.search(rf"^COPY {package} \./{package}$", text, re.M), package
    assert "pip install -e ." in text
    assert re.search(r"^USER pooler$", text, re.M)
