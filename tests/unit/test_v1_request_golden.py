"""Golden tests: /v1 request bodies -> Codex backend bodies (pure, no I/O).

Each file under golden/v1/<kind>/ holds `request` and `expected`; run with UPDATE_GOLDEN=1 to (re)write
`expected`, then review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pooler.v1.chat_request import chat_to_responses
from pooler.v1.responses_request import UpstreamRequest, normalize_responses

GOLDEN = Path(__file__).parent / "golden" / "v1"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def translated(result: UpstreamRequest) -> dict[str, Any]:
    return {
        "body": result.body,
        "model": result.model,
        "stream": result.stream,
        "include_usage": result.include_usage,
        "dropped": list(result.dropped),
    }


def check(path: Path, actual: dict[str, Any]) -> None:
    case = json.loads(path.read_text())
    if UPDATE:
        case["expected"] = actual
        path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")
    assert actual == case["expected"]


@pytest.mark.parametrize("path", sorted((GOLDEN / "chat_request").glob("*.json")), ids=lambda p: p.stem)
def test_chat_request_golden(path: Path) -> None:
    check(path, translated(chat_to_responses(json.loads(path.read_text())["request"])))


@pytest.mark.parametrize("path", sorted((GOLDEN / "responses_request").glob("*.json")), ids=lambda p: p.stem)
def test_responses_request_golden(path: Path) -> None:
    check(path, translated(normalize_responses(json.loads(path.read_text())["request"])))
