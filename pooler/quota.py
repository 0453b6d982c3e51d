"""Quota evidence: parse upstream rate-limit reports into window observations, and record them.

Sources: `x-codex-*` response headers (seen by the gateway), the usage API JSON (polled by the scheduler),
and a 429 `usage_limit_reached` body. Windows are keyed by length in minutes: 300 is the 5-hour window and
10080 the weekly one; some plans report only a weekly window, in the primary slot, so the slot name is
never used to guess the window.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pooler.models import QuotaWindow
from pooler.states import FIVE_HOUR_MINUTES, WEEKLY_MINUTES, QuotaSource

DEFAULT_FAMILY = "codex"
_USED_HEADER_RE = re.compile(r"^x-([a-z0-9][a-z0-9._-]*?)-(?:primary|secondary)-used-percent$")


@dataclass(frozen=True)
class WindowObservation:
    limit_family: str
    window_minutes: int
    used_percent: float
    resets_at: dt.datetime | None


def window_kind(minutes: int) -> str:
    if minutes == FIVE_HOUR_MINUTES:
        return "five_hour"
    if minutes == WEEKLY_MINUTES:
        return "weekly"
    return "other"


def _float(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is no evidence


def _reset_time(reset_at: object, reset_after: object, now: dt.datetime) -> dt.datetime | None:
    at = _float(reset_at)
    if at is not None and at > 0:
        return dt.datetime.fromtimestamp(at, dt.UTC)
    after = _float(reset_after)
    if after is not None and after >= 0:
        return now + dt.timedelta(seconds=after)
    return None


def _clamp_percent(value: float) -> float:
    return max(0.0, min(100.0, value))


def parse_rate_limit_headers(headers: Mapping[str, str], now: dt.datetime) -> list[WindowObservation]:
    """`x-<family>-<slot>-used-percent|window-minutes|reset-at|reset-after-seconds` for slots primary, secondary.

    `headers` must have lower-case names. A slot without both percent and window length is ignored.
    """
    observations: list[WindowObservation] = []
    families = {m.group(1) for m in map(_USED_HEADER_RE.match, headers) if m}
    for family in sorted(families):
        for slot in ("primary", "secondary"):
            base = f"x-{family}-{slot}-"
            used = _float(headers.get(base + "used-percent"))
            minutes = _float(headers.get(base + "window-minutes"))
            if used is None or minutes is None or minutes <= 0:
                continue
            observations.append(
                WindowObservation(
                    limit_family=family,
                    window_minutes=int(minutes),
                    used_percent=_clamp_percent(used),
                    resets_at=_reset_time(
                        headers.get(base + "reset-at"), headers.get(base + "reset-after-seconds"), now
                    ),
                )
            )
    return observations


def _usage_window(family: str, window: object, now: dt.datetime) -> WindowObservation | None:
    if not isinstance(window, Mapping):
        return None
    used = _float(window.get("used_percent"))
    seconds = _float(window.get("limit_window_seconds"))
    if seconds is None:
        minutes = _float(window.get("window_minutes"))
        seconds = None if minutes is None else minutes * 60
    if used is None or seconds is None or seconds <= 0:
        return None
    return WindowObservation(
        limit_family=family,
        window_minutes=round(seconds / 60),
        used_percent=_clamp_percent(used),
        resets_at=_reset_time(window.get("reset_at"), window.get("reset_after_seconds"), now),
    )


def parse_usage_payload(payload: object, now: dt.datetime) -> list[WindowObservation]:
    """The usage API (`/backend-api/wham/usage`) JSON; unknown shapes yield no evidence rather than an error."""
    if not isinstance(payload, Mapping):
        return []
    observations: list[WindowObservation] = []
    rate_limit = payload.get("rate_limit")
    if isinstance(rate_limit, Mapping):
        for key in ("primary_window", "secondary_window"):
            obs = _usage_window(DEFAULT_FAMILY, rate_limit.get(key), now)
            if obs is not None:
                observations.append(obs)
    extra = payload.get("additional_rate_limits")
    if isinstance(extra, list):
        for item in extra:
            if not isinstance(item, Mapping):
                continue
            family = str(item.get("limit_name") or item.get("metered_feature") or item.get("name") or "other")[:64]
            limits = item.get("rate_limit") if isinstance(item.get("rate_limit"), Mapping) else item
            assert isinstance(limits, Mapping)
            for key in ("primary_window", "secondary_window"):
                obs = _usage_window(family, limits.get(key), now)
                if obs is not None:
                    observations.append(obs)
    return observations


def parse_rate_limits_event(event: Mapping[str, Any], now: dt.datetime) -> list[WindowObservation]:
    """The websocket `codex.rate_limits` event (`rate_limits.primary|secondary` with `window_minutes`)."""
    limits = event.get("rate_limits")
    if not isinstance(limits, Mapping):
        return []
    found = (_usage_window(DEFAULT_FAMILY, limits.get(slot), now) for slot in ("primary", "secondary"))
    return [obs for obs in found if obs is not None]


def limit_error_reset(body: object, now: dt.datetime) -> dt.datetime | None:
    """`resets_at` (or `resets_in_seconds`) of a 429 `usage_limit_reached` body, if it has one."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if not isinstance(error, Mapping) or error.get("type", error.get("code")) != "usage_limit_reached":
        return None
    return _reset_time(error.get("resets_at"), error.get("resets_in_seconds"), now)


def record_observations(
    session: Session,
    account_id: int,
    observations: list[WindowObservation],
    source: QuotaSource,
    observed_at: dt.datetime,
) -> int:
    """Upserts one row per (family, window); older evidence never overwrites newer. Returns rows written."""
    if not observations:
        return 0
    existing = {
        (row.limit_family, row.window_minutes): row
        for row in session.scalars(select(QuotaWindow).where(QuotaWindow.account_id == account_id))
    }
    written = 0
    for obs in observations:
        row = existing.get((obs.limit_family, obs.window_minutes))
        if row is None:
            row = QuotaWindow(account_id=account_id, limit_family=obs.limit_family, window_minutes=obs.window_minutes)
            session.add(row)
            existing[(obs.limit_family, obs.window_minutes)] = row
        elif row.observed_at > observed_at:
            continue
        row.used_percent = obs.used_percent
        row.resets_at = obs.resets_at
        row.source = str(source)
        row.observed_at = observed_at
        written += 1
    return written
