"""The Grafana dashboard parses and only uses metric names docs/OPERATIONS.md defines."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dashboard_metrics_are_documented() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    docs = (ROOT / "docs" / "OPERATIONS.md").read_text()
    documented = set(re.findall(r"^\| `(pooler_[a-z_]+)` \|", docs, re.M))
    assert documented, "no metrics table in docs/OPERATIONS.md"
    used: set[str] = set()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for name in re.findall(r"\b(pooler_[a-z_]+)", target["expr"]):
                used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    assert used <= documented, used - documented
    assert documented <= used, f"documented but not on the dashboard: {documented - used}"
