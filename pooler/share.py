"""Quota share: how much of a pool's 5-hour and weekly capacity a key (or a team of keys) used, and whether it may
go on. Pure functions over plain data; the ext_proc (extproc/share.py) feeds them.

Capacity: every account of the pool contributes `plan_weight x 100%` of each window kind (the selection's plan
weights, pooler.selection.scoring: a pro account counts more than a plus one). Attribution: an account's
reported used percent in its current window is split between the share groups whose requests ran on that account
in that window, in proportion to their tokens (input + output, from the request logs). So what the upstream
counts on an account is charged to the keys that used it; usage the gateway did not route (the account's owner
using it directly) is charged to those keys as well - the safe side for a limit. An account the gateway sent no
tokens to in its window is charged to nobody.

Pacing (optional per key): the weekly share is spread evenly over the days of the pool's weekly window - by the
end of day d of 7 a key may have used `share x d / 7` - so a key cannot take its whole week on Monday.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FIVE_HOURS = 300
WEEKLY = 10080
WINDOW_NAMES: Mapping[int, str] = {FIVE_HOURS: "5h", WEEKLY: "weekly"}
DAY_SECONDS = 86400.0


@dataclass(frozen=True, slots=True)
class AccountWindow:
    account_id: int
    weight: float
    window_minutes: int
    used_percent: float
    resets_at: float | None


@dataclass(frozen=True, slots=True)
class ShareUse:
    """One group's measured use of one window kind, in percent of the pool's capacity of that kind."""

    window_minutes: int
    used_percent: float
    resets_at: float | None
    """The earliest reset among the accounts charged to the group (when its use can first drop)."""


def measure(
    windows: Iterable[AccountWindow], tokens: Mapping[tuple[int, int], Mapping[str, int]]
) -> dict[tuple[str, int], ShareUse]:
    """(group, window minutes) -> its use. `tokens`: (account id, window minutes) -> group -> tokens in the
    account's current window."""
    capacity: dict[int, float] = {}
    charged: dict[tuple[str, int], float] = {}
    resets: dict[tuple[str, int], float] = {}
    for w in windows:
        if w.window_minutes not in WINDOW_NAMES:
            continue
        capacity[w.window_minutes] = capacity.get(w.window_minutes, 0.0) + w.weight * 100.0
        by_group = tokens.get((w.account_id, w.window_minutes))
        total = sum(by_group.values()) if by_group else 0
        if not by_group or total <= 0:
            continue
        for group, count in by_group.items():
            slot = (group, w.window_minutes)
            charged[slot] = charged.get(slot, 0.0) + w.weight * w.used_percent * count / total
            if w.resets_at is not None and count > 0:
                resets[slot] = min(resets.get(slot, math.inf), w.resets_at)
    return {
        slot: ShareUse(slot[1], 100.0 * value / capacity[slot[1]], resets.get(slot))
        for slot, value in charged.items()
        if capacity.get(slot[1])
    }


def paced_percent(share_percent: float, week_ends_at: float, now: float) -> float:
    """The part of a weekly share a paced key may have used by now: share x (whole days begun) / 7."""
    started = week_ends_at - 7 * DAY_SECONDS
    days_begun = min(7, max(1, math.floor((now - started) / DAY_SECONDS) + 1))
    return share_percent * days_begun / 7


def next_pace_step(week_ends_at: float, now: float) -> float:
    """When a paced key's allowance next grows (the next day of the pool's weekly window)."""
    started = week_ends_at - 7 * DAY_SECONDS
    return min(week_ends_at, started + (math.floor((now - started) / DAY_SECONDS) + 1) * DAY_SECONDS)


def group_of(key_prefix: str, team: str | None) -> str:
    """Keys of one team share one measure; a key without a team is its own group."""
    return f"team:{team}" if team else f"key:{key_prefix}"


def pool_used_percent(windows: Iterable[AccountWindow], window_minutes: int) -> tuple[float, float] | None:
    """The pool's used percent of one window kind (plan-weighted) and the weighted mean start of those windows;
    None without any live window of that kind."""
    weight = used = start = 0.0
    for w in windows:
        if w.window_minutes != window_minutes or w.resets_at is None:
            continue
        weight += w.weight
        used += w.weight * w.used_percent
        start += w.weight * (w.resets_at - window_minutes * 60)
    if weight <= 0:
        return None
    return used / weight, start / weight


def projected_exhaustion(windows: Iterable[AccountWindow], window_minutes: int, now: float) -> float | None:
    """When the pool's capacity of a window kind runs out at the rate used so far in the current windows; None
    when nothing was used yet or it would not run out before the windows reset."""
    measured = pool_used_percent(windows, window_minutes)
    if measured is None:
        return None
    used, started = measured
    if used >= 100:
        return now
    elapsed = now - started
    if used <= 0 or elapsed <= 0:
        return None
    at = now + (100 - used) * elapsed / used
    return at if at < started + window_minutes * 60 else None


def key_windows(
    percent: float,
    pacing: bool,
    group: str,
    uses: Mapping[tuple[str, int], ShareUse],
    week_end: float | None,
    now: float,
) -> list[dict[str, Any]]:
    """A key's share per window kind: used vs allowed (paced on the weekly window), whether it is exceeded, and
    when it can go on (the earliest reset of an account charged to it; for a paced key under its whole share,
    the next day of the week)."""
    out = []
    for minutes in (FIVE_HOURS, WEEKLY):
        use = uses.get((group, minutes))
        used = use.used_percent if use is not None else 0.0
        paced = minutes == WEEKLY and pacing and week_end is not None
        allowed = paced_percent(percent, week_end, now) if paced and week_end is not None else percent
        exceeded = used >= allowed
        resets_at = use.resets_at if use is not None else None
        if paced and week_end is not None and exceeded and used < percent:
            resets_at = next_pace_step(week_end, now)
        out.append(
            {
                "window": WINDOW_NAMES[minutes],
                "used_percent": round(used, 3),
                "allowed_percent": round(allowed, 3),
                "share_percent": percent,
                "paced": paced,
                "exceeded": exceeded,
                "resets_at": None if resets_at is None else int(resets_at),
            }
        )
    return out


def week_end_of(windows: Iterable[AccountWindow]) -> float | None:
    """The end of the pool's weekly window for pacing: the earliest weekly reset among its accounts."""
    ends = [w.resets_at for w in windows if w.window_minutes == WEEKLY and w.resets_at is not None]
    return min(ends) if ends else None
