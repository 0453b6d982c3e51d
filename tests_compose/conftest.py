"""The compose test runs only through `make test-compose` (scripts/test-compose.sh), which sets
POOLER_COMPOSE_TEST=1 after making sure dockerd, docker-compose and the base image are there.

`make test` never collects this directory (it runs `pytest tests`); the skip below is for someone who points
pytest at it by hand without the target.
"""

from __future__ import annotations

import os

import pytest

SKIP_REASON = (
    "the Docker Compose test needs root, a running dockerd and several minutes: run it with `make test-compose` "
    "(or set POOLER_COMPOSE_TEST=1 with dockerd and docker-compose available)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("POOLER_COMPOSE_TEST") == "1":
        return
    for item in items:
        item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
