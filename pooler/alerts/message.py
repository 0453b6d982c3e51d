"""What an incident notification says: a JSON payload for webhooks and a short text for email.

Built only from the incident row, whose details the rules limited to metadata (pool labels, key prefixes,
counts, states). The privacy line tells readers what was not looked at.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from pooler.models import AlertIncident

PRIVACY_NOTE = "metadata only: no prompts, outputs, payloads, credentials or account identifiers were read"
STATUS_WORDS = {"opened": "open", "escalated": "open (escalated)", "resolved": "resolved"}


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def payload(incident: AlertIncident, event: str, delivery_id: int, sent_at: dt.datetime) -> dict[str, Any]:
    details = dict(incident.details or {})
    return {
        "type": f"incident.{event}",
        "delivery_id": delivery_id,
        "sent_at": _iso(sent_at),
        "incident": {
            "id": incident.id,
            "rule": incident.rule,
            "subject": incident.subject,
            "severity": incident.severity,
            "status": incident.status,
            "title": incident.title,
            "impact": details.pop("impact", None),
            "next_check": details.pop("next_check", None),
            "signals": details,
            "opened_at": _iso(incident.opened_at),
            "resolved_at": _iso(incident.resolved_at),
        },
        "privacy": PRIVACY_NOTE,
    }


def body_bytes(data: dict[str, Any]) -> bytes:
    # Compact and key-sorted: the signature covers exactly these bytes.
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def subject_line(incident: AlertIncident, event: str) -> str:
    tag = "resolved" if event == "resolved" else incident.severity
    return f"[pooler {tag}] {incident.title}"[:200]


def text(incident: AlertIncident, event: str) -> str:
    details = dict(incident.details or {})
    impact = details.pop("impact", "")
    next_check = details.pop("next_check", "")
    signals = ", ".join(f"{k}={_flat(v)}" for k, v in sorted(details.items()))
    lines = [
        f"Status: {incident.severity}, {STATUS_WORDS.get(event, event)}",
        f"Incident: #{incident.id} {incident.title}",
        f"Impact: {impact}",
        f"Signals: {signals}",
        f"Opened: {_iso(incident.opened_at)}",
    ]
    if incident.resolved_at is not None:
        lines.append(f"Resolved: {_iso(incident.resolved_at)}")
    lines += [f"Next check: {next_check}", f"Privacy: {PRIVACY_NOTE}"]
    return "\n".join(lines) + "\n"


def _flat(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)
