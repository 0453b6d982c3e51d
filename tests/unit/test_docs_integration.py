"""docs/INTEGRATION.md's route table lists every route of the fragments (pooler/route_table.py), so it cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from pooler import route_table as rt
from pooler.envoy_config.fragments import FRAGMENT_FILES

DOC = Path(__file__).resolve().parents[2] / "docs" / "INTEGRATION.md"
SECTION = "## Every route the fragments add"


def _table_routes() -> list[str]:
    text = DOC.read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.MULTILINE)


def test_every_fragment_route_is_in_the_table_in_match_order() -> None:
    assert _table_routes() == [route.name for route in rt.fragment_routes()]


def test_bundled_only_routes_are_named_as_such() -> None:
    text = DOC.read_text()
    for route in rt.ROUTES:
        if route.bundled_only:
            assert f"`{route.name}`" in text, route.name


def test_every_fragment_file_is_described() -> None:
    text = DOC.read_text()
    for name in FRAGMENT_FILES:
        assert f"| `{name}` |" in text, name
