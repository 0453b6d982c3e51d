"""The catalogue of DB-managed operational settings, and typed get/set helpers.

Everything an operator may tune at run time lives here (the environment only holds what is needed before the
database can be read, see pooler.config). Adding a setting is one `_s(...)` line in `CATALOGUE`. Values are
stored as `{"v": <json>}`; JSON-object settings (type `dict`) are read with `get_json_setting`, so every
`get_setting` caller keeps a scalar type; secret settings are sealed in the secret box (subject "setting", kind = the
setting's name) and stored as `{"key_id", "nonce", "ciphertext"}` in base64, never in clear.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pooler import audit
from pooler.audit import Actor
from pooler.crypto.secretbox import Sealed, SecretBox
from pooler.errors import NotFoundError, PoolerError, SecretBoxError
from pooler.models import Setting, utcnow
from pooler.versions import bump_routing_version

SETTING_SUBJECT = "setting"
SettingValue = str | int | float | bool
JsonObject = dict[str, Any]
MAX_JSON_SETTING_BYTES = 64 * 1024


class Unit(StrEnum):
    """What a numeric setting counts, so the admin can show an input with its unit and a readable value."""

    NONE = ""
    SECONDS = "seconds"
    MILLISECONDS = "ms"
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    BYTES = "bytes"
    PERCENT = "%"


class Kind(StrEnum):
    """How a setting is edited: the admin picks its input from this."""

    TOGGLE = "toggle"
    NUMBER = "number"
    DURATION = "duration"
    URL = "url"
    SECRET = "secret"
    TEXT = "text"
    JSON = "json"


_ACRONYMS = {"smtp": "SMTP", "mcp": "MCP", "oauth": "OAuth", "url": "URL", "id": "ID", "ttl": "TTL", "ws": "WebSocket"}
DURATION_UNITS = frozenset({Unit.SECONDS, Unit.MILLISECONDS, Unit.MINUTES, Unit.HOURS, Unit.DAYS})


@dataclass(frozen=True)
class SettingDef:
    name: str
    type: type[SettingValue] | type[JsonObject]
    default: SettingValue | JsonObject | None
    description: str
    secret: bool = False
    minimum: float | None = None
    maximum: float | None = None
    unit: Unit = Unit.NONE
    group: str = "Other"
    """What the setting controls: the admin shows one form per group, in catalogue order."""

    @property
    def is_json(self) -> bool:
        return self.type is dict

    @property
    def kind(self) -> Kind:
        if self.secret:
            return Kind.SECRET
        if self.is_json:
            return Kind.JSON
        if self.type is bool:
            return Kind.TOGGLE
        if self.type in (int, float):
            return Kind.DURATION if self.unit in DURATION_UNITS else Kind.NUMBER
        return Kind.URL if self.name.endswith("_url") else Kind.TEXT

    @property
    def title(self) -> str:
        """A readable name: `request_log_retention_days` -> `Request log retention` (the unit is shown apart)."""
        words = self.name.split("_")
        if self.unit is not Unit.NONE and words[-1] in {
            "seconds",
            "ms",
            "minutes",
            "hours",
            "days",
            "bytes",
            "percent",
        }:
            words = words[:-1]
        text = " ".join(_ACRONYMS.get(w, w) for w in words)
        return text[0].upper() + text[1:]

    def coerce(self, value: object) -> SettingValue | JsonObject:
        """Validates a value of the right type (strings from a form or the CLI are parsed)."""
        if self.is_json:
            return _json_object(self, value)
        if isinstance(value, str) and self.type is not str:
            value = _parse_text(self, value)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is not bool and isinstance(value, bool)):
            raise PoolerError(f"setting {self.name} must be of type {self.type.__name__}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise PoolerError(f"setting {self.name} must be at least {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise PoolerError(f"setting {self.name} must be at most {self.maximum:g}")
        if isinstance(value, str) and self.name.endswith("_url") and not value.startswith(("http://", "https://")):
            raise PoolerError(f"setting {self.name} must be an http:// or https:// URL")
        return value


def _json_object(definition: SettingDef, value: object) -> JsonObject:
    """A JSON object (parsed from text when given text), at most MAX_JSON_SETTING_BYTES once serialised."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise PoolerError(f"setting {definition.name} must be a JSON object (the text is not JSON)") from None
    if not isinstance(value, dict):
        raise PoolerError(f"setting {definition.name} must be a JSON object")
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError):
        raise PoolerError(f"setting {definition.name} must be plain JSON") from None
    if size > MAX_JSON_SETTING_BYTES:
        raise PoolerError(f"setting {definition.name} is larger than {MAX_JSON_SETTING_BYTES // 1024} KiB")
    return {str(k): v for k, v in value.items()}


def _parse_text(definition: SettingDef, text: str) -> SettingValue:
    text = text.strip()
    try:
        if definition.type is bool:
            lowered = text.lower()
            if lowered in {"true", "yes", "on", "1"}:
                return True
            if lowered in {"false", "no", "off", "0"}:
                return False
            raise ValueError(text)
        if definition.type is int:
            return int(text)
        if definition.type is float:
            return float(text)
    except ValueError:
        pass
    # The value is not echoed: it might be a secret typed into the wrong setting.
    raise PoolerError(f"setting {definition.name} must be of type {definition.type.__name__}")


def _s(
    name: str,
    type_: type[SettingValue] | type[JsonObject],
    default: SettingValue | JsonObject | None,
    description: str,
    *,
    secret: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    unit: Unit = Unit.NONE,
) -> SettingDef:
    return SettingDef(name, type_, default, description, secret, minimum, maximum, unit=unit)


def _group(group: str, *defs: SettingDef) -> tuple[SettingDef, ...]:
    return tuple(replace(d, group=group) for d in defs)


_DEFS = (
    *_group(
        "Upstream and sign-in",
        _s("upstream_base_url", str, "https://chatgpt.com", "Codex backend base URL (point at the simulator in tests)"),
        _s("auth_base_url", str, "https://auth.openai.com", "OAuth server base URL used for token refresh and login"),
        _s("oauth_client_id", str, "app_EMoamEEZ73f0CkXaXp7hrann", "OAuth client id Codex uses for refresh/login"),
    ),
    *_group(
        "Tokens and quota",
        _s(
            "refresh_horizon_hours",
            int,
            24,
            "Refresh access tokens expiring within this many hours",
            minimum=1,
            unit=Unit.HOURS,
        ),
        _s(
            "usage_poll_interval_seconds",
            int,
            300,
            "Seconds between usage API polls per account",
            minimum=30,
            unit=Unit.SECONDS,
        ),
        _s(
            "quota_evidence_stale_seconds",
            int,
            900,
            "Quota evidence older than this is treated as unknown",
            minimum=1,
            unit=Unit.SECONDS,
        ),
    ),
    *_group(
        "Routing",
        _s("sticky_ttl_default_seconds", int, 3600, "Sticky-session TTL for new pools", minimum=0, unit=Unit.SECONDS),
        _s(
            "demotion_seconds",
            int,
            30,
            "Seconds an account is demoted after a 5xx or connect failure",
            minimum=0,
            unit=Unit.SECONDS,
        ),
        # The gateway surface (docs/GATEWAY_SURFACE.md); read by the ext_proc with the routing snapshot.
        _s(
            "file_pin_ttl_seconds",
            int,
            604800,
            "Seconds a file id stays pinned to the account that created it",
            minimum=60,
            unit=Unit.SECONDS,
        ),
        _s(
            "transcription_max_bytes",
            int,
            26214400,
            "Largest transcription upload (bytes) the gateway forwards",
            minimum=1,
            unit=Unit.BYTES,
        ),
    ),
    *_group(
        "Gateway processes",
        # Read by `pooler up` (the endpoints are in the rendered Envoy config, the drain on Envoy's command line):
        # it applies a change by a hot restart of Envoy within seconds. DB settings, not env vars: nothing needs
        # them before the database is read.
        _s(
            "extproc_workers",
            int,
            0,
            "ext_proc decision workers `pooler up` runs per host (0 = one per CPU core)",
            minimum=0,
            maximum=64,
        ),
        _s(
            "first_event_hold",
            bool,
            True,
            "Hold each streamed Codex answer until its first event, so a turn failing before it starts is retried "
            "on another account (the response phases of its ext_proc stream; applied by an Envoy restart)",
        ),
        _s(
            "envoy_drain_seconds",
            int,
            600,
            "Seconds requests in flight on the old Envoy may go on after a hot restart (`pooler up`)",
            minimum=1,
            maximum=3600,
            unit=Unit.SECONDS,
        ),
    ),
    *_group(
        "Admission control",
        _s("admission_limit_responses", int, 0, "Concurrent Codex HTTP responses requests (0 = unlimited)", minimum=0),
        _s("admission_limit_responses_ws", int, 0, "Concurrent Codex websocket connections (0 = unlimited)", minimum=0),
        _s("admission_limit_compact", int, 0, "Concurrent compact requests (0 = unlimited)", minimum=0),
        _s("admission_limit_v1", int, 0, "Concurrent /v1 responses + chat requests (0 = unlimited)", minimum=0),
        _s("admission_limit_files", int, 0, "Concurrent file create/finalize requests (0 = unlimited)", minimum=0),
        _s("admission_limit_media", int, 0, "Concurrent transcription + image requests (0 = unlimited)", minimum=0),
        _s("admission_queue_size", int, 0, "Requests per route family that may wait for a free slot", minimum=0),
        _s(
            "admission_queue_wait_ms",
            int,
            1000,
            "Longest wait in the admission queue (below the ext_proc timeout)",
            minimum=0,
            maximum=1500,
            unit=Unit.MILLISECONDS,
        ),
        _s(
            "admission_retry_after_seconds",
            int,
            1,
            "retry-after sent with server_is_overloaded",
            minimum=1,
            unit=Unit.SECONDS,
        ),
    ),
    *_group(
        "Alert rules",
        _s(
            "alert_cooldown_seconds",
            int,
            600,
            "Seconds a condition stays clear before its incident resolves",
            minimum=0,
            unit=Unit.SECONDS,
        ),
        _s(
            "alert_min_routable_accounts",
            int,
            2,
            "Pools with fewer routable accounts than this raise a watch",
            minimum=1,
        ),
        _s(
            "alert_quota_percent",
            float,
            90.0,
            "Quota windows at or above this percent alert",
            minimum=1,
            maximum=100,
            unit=Unit.PERCENT,
        ),
        _s("alert_key_error_threshold", int, 20, "401/403 answers per key prefix in the window that alert", minimum=1),
        _s(
            "alert_key_error_window_minutes",
            int,
            15,
            "Window of the key errors spike rule",
            minimum=1,
            unit=Unit.MINUTES,
        ),
        _s(
            "alert_job_failure_runs",
            int,
            3,
            "Consecutive failed runs of a scheduler job that raise an alert",
            minimum=1,
        ),
        _s(
            "alert_cache_drop_points",
            int,
            20,
            "Percentage points a pool's last-hour cached input share may fall below its 24 h baseline",
            minimum=1,
            unit=Unit.PERCENT,
        ),
        _s(
            "alert_cache_min_input_tokens",
            int,
            100000,
            "Input tokens a pool needs in the last hour (and the baseline) before its cache share alerts",
            minimum=1,
        ),
    ),
    *_group(
        "Alert delivery",
        _s("alert_webhook_url", str, None, "Alert webhook receiver (POST, HMAC-SHA256 signed); empty = no webhook"),
        _s("alert_webhook_secret", str, None, "Signing secret for alert webhooks (x-pooler-signature)", secret=True),
        _s("alert_email_to", str, None, "Comma-separated alert email recipients; empty = no email"),
        _s("alert_email_from", str, "pooler@localhost", "From address of alert emails"),
        _s("smtp_host", str, None, "SMTP server for alert email"),
        _s("smtp_port", int, 587, "SMTP server port", minimum=1, maximum=65535),
        _s("smtp_username", str, None, "SMTP login user (empty = no login)"),
        _s("smtp_password", str, None, "SMTP login password", secret=True),
        _s("smtp_starttls", bool, True, "Upgrade the SMTP connection with STARTTLS before login"),
    ),
    *_group(
        "Admin sign-in",
        # Admin sign-in sessions (pooler.services.admin_sessions): read on every admin request, so a change applies
        # to sessions already open.
        _s(
            "admin_session_idle_minutes",
            int,
            120,
            "Admin sessions end after this many minutes without a request",
            minimum=1,
            maximum=7 * 24 * 60,
            unit=Unit.MINUTES,
        ),
        _s(
            "admin_session_max_hours",
            int,
            12,
            "Admin sessions end this many hours after sign-in",
            minimum=1,
            maximum=720,
            unit=Unit.HOURS,
        ),
    ),
    *_group(
        "Retention",
        _s(
            "request_log_retention_days",
            int,
            30,
            "Days request logs are kept before cleanup",
            minimum=1,
            unit=Unit.DAYS,
        ),
    ),
    *_group(
        "Integrations",
        _s("mcp_enabled", bool, False, "Instance-wide gate of the read-only MCP endpoint (/mcp)"),
        _s(
            "metrics_token_hash",
            str,
            None,
            "Keyed hash of the /metrics bearer token (pooler.metrics_token); empty = open",
        ),
    ),
    *_group(
        "Admin",
        # The pricing table (pooler.pricing): the cost estimate and money budgets; unset = pooler/pricing.json.
        _s(
            "admin_model_pricing",
            dict,
            None,
            "Model pricing for estimated cost: model -> {input, cached_input, output} USD per 1M tokens "
            "(unset = vendored)",
        ),
        _s(
            "admin_live_refresh_seconds",
            int,
            20,
            "How often live admin pages (dashboard, pool, accounts, alerts, jobs) refresh themselves",
            minimum=1,
            maximum=3600,
            unit=Unit.SECONDS,
        ),
    ),
)
CATALOGUE: dict[str, SettingDef] = {d.name: d for d in _DEFS}


@dataclass(frozen=True)
class SettingView:
    definition: SettingDef
    value: SettingValue | JsonObject | None
    """None for secrets (never displayed); see `is_set`."""
    is_default: bool
    is_set: bool


def definition(name: str) -> SettingDef:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise NotFoundError(f"unknown setting {name!r}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _open(box: SecretBox, name: str, stored: dict[str, Any]) -> SettingValue:
    try:
        sealed = Sealed(
            key_id=str(stored["key_id"]),
            nonce=base64.b64decode(stored["nonce"]),
            ciphertext=base64.b64decode(stored["ciphertext"]),
        )
    except (KeyError, TypeError, ValueError):
        raise SecretBoxError(f"secret setting {name} is malformed") from None
    value: SettingValue = json.loads(box.open(SETTING_SUBJECT, name, sealed))
    return value


def _seal(box: SecretBox, name: str, value: SettingValue) -> dict[str, Any]:
    sealed = box.seal(SETTING_SUBJECT, name, json.dumps(value))
    return {"key_id": sealed.key_id, "nonce": _b64(sealed.nonce), "ciphertext": _b64(sealed.ciphertext)}


def sealed_setting(stored: dict[str, Any]) -> Sealed:
    """The sealed form of a secret setting's stored value (used by secret rotation)."""
    return Sealed(str(stored["key_id"]), base64.b64decode(stored["nonce"]), base64.b64decode(stored["ciphertext"]))


def reseal_setting(box: SecretBox, name: str, stored: dict[str, Any]) -> dict[str, Any]:
    """Opens a stored secret setting with whichever key sealed it and seals it with the current key."""
    return _seal(box, name, _open(box, name, stored))


def get_setting(session: Session, name: str, box: SecretBox | None = None) -> SettingValue | None:
    """The stored value, else the catalogue default. Secret settings need the box."""
    d = definition(name)
    if d.is_json:
        raise PoolerError(f"setting {name} is a JSON object: read it with get_json_setting")
    row = session.get(Setting, name)
    if row is None:
        return d.default if not isinstance(d.default, dict) else None
    if d.secret:
        if box is None:
            raise SecretBoxError(f"reading secret setting {name} needs the secret box")
        return _open(box, name, row.value)
    value: SettingValue | None = row.value.get("v", d.default)
    return value


def get_number(session: Session, name: str) -> int | float:
    """A numeric setting: the stored value, else the catalogue default (also when a stored value is not a
    number, which `set_setting` never writes)."""
    value = get_setting(session, name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    default = definition(name).default
    if isinstance(default, int | float) and not isinstance(default, bool):
        return default
    raise PoolerError(f"setting {name} has no numeric default")


def get_json_setting(session: Session, name: str) -> JsonObject | None:
    """A JSON-object setting: the stored object, else the catalogue default (a copy), else None."""
    d = definition(name)
    if not d.is_json:
        raise PoolerError(f"setting {name} is not a JSON object: read it with get_setting")
    row = session.get(Setting, name)
    stored = None if row is None else row.value.get("v")
    if isinstance(stored, dict):
        return dict(stored)
    return json.loads(json.dumps(d.default)) if isinstance(d.default, dict) else None


def set_setting(
    session: Session, name: str, value: object, *, actor: Actor, box: SecretBox | None = None
) -> SettingValue | JsonObject:
    """Validates and stores a value (sealed when secret); audits the change without the value of secrets."""
    d = definition(name)
    coerced = d.coerce(value)
    row = session.get(Setting, name)
    old = None if row is None or d.secret else row.value.get("v")
    if d.secret:
        if box is None:
            raise SecretBoxError(f"writing secret setting {name} needs the secret box")
        if isinstance(coerced, dict):
            raise PoolerError(f"setting {name}: secret JSON settings are not supported")
        stored = _seal(box, name, coerced)
    else:
        stored = {"v": coerced}
    if row is None:
        row = Setting(name=name, value=stored)
        session.add(row)
    row.value, row.updated_at, row.updated_by = stored, utcnow(), actor.label
    details: dict[str, Any] = {"old": old, "new": coerced}
    if d.secret:
        details = {"secret": True}
    elif isinstance(coerced, dict):
        # A table can be large: the audit trail records its size, the settings row holds the content.
        details = {"entries": len(coerced), "old_entries": len(old) if isinstance(old, dict) else None}
    audit.record(
        session,
        actor,
        action="setting.update",
        target_type="setting",
        target_id=name,
        target_label=name,
        details=details,
    )
    # Upstream URLs, demotion and stickiness shape routing: gateways reload on change.
    bump_routing_version(session)
    return coerced


def reset_setting(session: Session, name: str, *, actor: Actor) -> None:
    definition(name)
    row = session.get(Setting, name)
    if row is None:
        return
    session.delete(row)
    audit.record(
        session,
        actor,
        action="setting.reset",
        target_type="setting",
        target_id=name,
        target_label=name,
    )
    bump_routing_version(session)


def list_settings(session: Session) -> list[SettingView]:
    """Every catalogue entry with its effective value; secret values are never returned."""
    rows = {row.name: row for row in session.scalars(select(Setting))}
    views = []
    for d in CATALOGUE.values():
        row = rows.get(d.name)
        if d.secret:
            views.append(SettingView(d, None, is_default=row is None, is_set=row is not None or d.default is not None))
        else:
            value = d.default if row is None else row.value.get("v", d.default)
            views.append(SettingView(d, value, is_default=row is None, is_set=value is not None))
    return views
