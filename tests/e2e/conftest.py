"""Fixtures for tests/e2e (each area adds its own, self-contained block)."""

from __future__ import annotations

# Codex upstream simulator: `simulator` starts a fresh `pooler simulator` subprocess per test.
from tests.support.simulator import _module_simulator, shared_simulator, simulator  # noqa: F401
