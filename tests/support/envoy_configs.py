"""Inputs the renderer tests share: a GatewayConfig on fixed loopback ports and unix sockets, and the Kubernetes
overlay's render script loaded as a module."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

from pooler.envoy_config import Endpoint, GatewayConfig

REPO = Path(__file__).resolve().parents[2]


def sample_config(tmp: Path, **changes: object) -> GatewayConfig:
    """Fixed ports (the config is only rendered, never started) and sockets under `tmp`."""
    base = GatewayConfig(
        listen=Endpoint.tcp("127.0.0.1", 18080),
        admin=Endpoint.tcp("127.0.0.1", 19901),
        extproc=Endpoint.unix(tmp / "extproc.sock"),
        accesslog=Endpoint.unix(tmp / "accesslog.sock"),
        local=Endpoint.unix(tmp / "local.sock"),
        admin_app=Endpoint.tcp("127.0.0.1", 18081),
        upstream_url="http://127.0.0.1:18999",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def load_render_deploy() -> ModuleType:
    """scripts/render-deploy.py (a script, not a package module) as a module."""
    spec = importlib.util.spec_from_file_location("render_deploy", REPO / "scripts" / "render-deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
