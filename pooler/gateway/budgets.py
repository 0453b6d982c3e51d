"""What the ext_proc needs to enforce key budgets, read from the database: each budgeted key's budgets and its
pool's time zone, the pricing table, and what each key used in its current periods (from the request logs: one
row per request, so retries and failovers of a request count once).

Read with the snapshot and again every `RECONCILE_SECONDS` (extproc/reloader.py): between reads, the ext_proc
counts what its own access log reports. With several replicas each counts its own traffic and takes the larger
of its count and the database's at every read, so a key can overshoot a hard limit by what the other replicas
served since the last read (at most `RECONCILE_SECONDS` plus one writer flush).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from pooler.budgets import (
    Budget,
    BudgetState,
    Period,
    Usage,
    parse_stored,
    period_bounds,
    request_tokens,
    states,
    zone,
)
from pooler.models import PoolAssignment, PoolKey, PoolSettings, QuotaWindow, RequestLog, UpstreamAccount
from pooler.pricing import PRICING_SETTING, Prices, estimate, usable
from pooler.selection.scoring import plan_weight
from pooler.settings import get_json_setting
from pooler.share import WINDOW_NAMES, AccountWindow, group_of, key_windows, measure, week_end_of

RECONCILE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class KeyBudgets:
    key_id: int
    prefix: str
    tz: ZoneInfo
    budgets: tuple[Budget, ...]

    @property
    def periods(self) -> frozenset[Period]:
        return frozenset(b.period for b in self.budgets)


@dataclass(frozen=True, slots=True)
class KeyShare:
    pool_id: int
    percent: float
    group: str
    pacing: bool


ShareTokens = dict[tuple[int, int], tuple[float, dict[str, int]]]
"""(account id, window minutes) -> (the window's start, share group -> tokens since then)."""


@dataclass(slots=True)
class BudgetBook:
    """Budgeted keys by prefix, the prices, and the usage read from the database at `loaded_at`."""

    keys: dict[str, KeyBudgets] = field(default_factory=dict)
    prices: Prices = field(default_factory=dict)
    used: dict[tuple[str, Period], tuple[float, Usage]] = field(default_factory=dict)
    """(prefix, period) -> (the period's start, usage since then)."""
    zones: dict[int, str] = field(default_factory=dict)
    """pool id -> its time zone's name (where its budget periods start)."""
    shares: dict[str, KeyShare] = field(default_factory=dict)
    """Keys with a quota share, by prefix."""
    groups: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Every key of a pool that has a quota share: prefix -> (pool id, share group); their tokens dilute."""
    share_tokens: ShareTokens = field(default_factory=dict)

    def key_states(self, now: float) -> dict[str, list[BudgetState]]:
        """Each budgeted key's budgets with the usage read (the admin and the alert rules; the ext_proc counts
        on from here itself)."""
        out = {}
        for prefix, entry in self.keys.items():
            used = {period: usage for (p, period), (_, usage) in self.used.items() if p == prefix}
            out[prefix] = states(entry.budgets, used, now, entry.tz)
        return out


def load_budget_book(session: Session, now: dt.datetime) -> BudgetBook:
    zones = {s.pool_id: s.time_zone for s in session.scalars(select(PoolSettings))}
    keys: dict[str, KeyBudgets] = {}
    all_keys = list(session.scalars(select(PoolKey).options(selectinload(PoolKey.budgets))))
    shares = {
        k.prefix: KeyShare(k.pool_id, k.share_percent, group_of(k.prefix, k.share_team), k.share_pacing)
        for k in all_keys
        if k.share_percent is not None
    }
    share_pools = {s.pool_id for s in shares.values()}
    groups = {k.prefix: (k.pool_id, group_of(k.prefix, k.share_team)) for k in all_keys if k.pool_id in share_pools}
    for key in all_keys:
        parsed = (parse_stored(r.period, r.unit, r.hard_limit, r.soft_limit) for r in key.budgets)
        budgets = [b for b in parsed if b is not None]
        if budgets:
            keys[key.prefix] = KeyBudgets(key.id, key.prefix, zone(zones.get(key.pool_id)), tuple(budgets))
    prices = usable(get_json_setting(session, PRICING_SETTING))
    used = read_usage(session, keys, prices, now.timestamp())
    tokens = read_share_tokens(session, groups, share_pools, now.timestamp())
    return BudgetBook(keys, prices, used, zones, shares, groups, tokens)


def read_share_tokens(
    session: Session, groups: Mapping[str, tuple[int, str]], pool_ids: Iterable[int], now: float
) -> ShareTokens:
    """Tokens per share group on each account of the share pools, in each account's current 5-hour and weekly
    window (from its latest quota window rows): one grouped query per account window."""
    pools = set(pool_ids)
    if not pools:
        return {}
    accounts = set(session.scalars(select(PoolAssignment.account_id).where(PoolAssignment.pool_id.in_(pools))))
    out: ShareTokens = {}
    windows = session.scalars(
        select(QuotaWindow).where(
            QuotaWindow.account_id.in_(accounts),
            QuotaWindow.limit_family == "codex",
            QuotaWindow.window_minutes.in_(WINDOW_NAMES),
        )
    )
    for window in windows:
        if window.resets_at is None or window.resets_at.timestamp() <= now:
            continue
        start = window.resets_at.timestamp() - window.window_minutes * 60
        rows = session.execute(
            select(RequestLog.key_prefix, func.sum(RequestLog.input_tokens), func.sum(RequestLog.output_tokens))
            .where(
                RequestLog.account_id == window.account_id,
                RequestLog.created_at >= dt.datetime.fromtimestamp(start, dt.UTC),
                RequestLog.key_prefix.is_not(None),
            )
            .group_by(RequestLog.key_prefix)
        )
        by_group: dict[str, int] = {}
        for prefix, input_tokens, output_tokens in rows:
            known = groups.get(str(prefix))
            if known is not None:
                count = request_tokens(int(input_tokens or 0), int(output_tokens or 0))
                by_group[known[1]] = by_group.get(known[1], 0) + count
        slot = (window.account_id, window.window_minutes)
        if slot not in out or out[slot][0] < start:
            out[slot] = (start, by_group)
    return out


def read_usage(
    session: Session, keys: Mapping[str, KeyBudgets], prices: Prices, now: float
) -> dict[tuple[str, Period], tuple[float, Usage]]:
    """Each budgeted key's usage in each of its current periods: one grouped query per key and period."""
    used: dict[tuple[str, Period], tuple[float, Usage]] = {}
    for prefix, entry in keys.items():
        for period in entry.periods:
            start, _ = period_bounds(period, now, entry.tz)
            rows = session.execute(
                select(
                    RequestLog.model,
                    func.sum(RequestLog.input_tokens),
                    func.sum(RequestLog.cached_tokens),
                    func.sum(RequestLog.output_tokens),
                )
                .where(
                    RequestLog.key_prefix == prefix,
                    RequestLog.created_at >= dt.datetime.fromtimestamp(start, dt.UTC),
                )
                .group_by(RequestLog.model)
            )
            total = Usage()
            for model, input_tokens, cached, output in rows:
                total = total + request_usage(prices, model, int(input_tokens or 0), int(cached or 0), int(output or 0))
            used[(prefix, period)] = (start, total)
    return used


def request_usage(prices: Prices, model: str | None, input_tokens: int, cached: int, output: int) -> Usage:
    """What one request (or a sum of requests of one model) counts against budgets."""
    return Usage(request_tokens(input_tokens, output), estimate(prices, model, input_tokens, cached, output))


def pool_account_windows(session: Session, pool_ids: Iterable[int], now: float) -> dict[int, list[AccountWindow]]:
    """Each pool's accounts' live 5-hour and weekly windows (latest row per account and kind) with plan weights:
    what the admin measures shares and projects exhaustion from (the ext_proc uses its live candidates)."""
    pools = set(pool_ids)
    if not pools:
        return {}
    members: dict[int, list[int]] = {}
    for pool_id, account_id in session.execute(
        select(PoolAssignment.pool_id, PoolAssignment.account_id).where(PoolAssignment.pool_id.in_(pools))
    ):
        members.setdefault(account_id, []).append(pool_id)
    rows = session.execute(select(UpstreamAccount.id, UpstreamAccount.plan_type).where(UpstreamAccount.id.in_(members)))
    plans = {int(account_id): plan for account_id, plan in rows}
    latest: dict[tuple[int, int], QuotaWindow] = {}
    for window in session.scalars(
        select(QuotaWindow).where(
            QuotaWindow.account_id.in_(members),
            QuotaWindow.limit_family == "codex",
            QuotaWindow.window_minutes.in_(WINDOW_NAMES),
        )
    ):
        slot = (window.account_id, window.window_minutes)
        if slot not in latest or latest[slot].observed_at < window.observed_at:
            latest[slot] = window
    out: dict[int, list[AccountWindow]] = {p: [] for p in pools}
    for (account_id, minutes), window in latest.items():
        if window.resets_at is None or window.resets_at.timestamp() <= now:
            continue
        weight = plan_weight(plans.get(account_id))
        view = AccountWindow(account_id, weight, minutes, window.used_percent, window.resets_at.timestamp())
        for pool_id in members.get(account_id, []):
            out[pool_id].append(view)
    return out


def key_share_windows(book: BudgetBook, windows: Mapping[int, list[AccountWindow]], now: float) -> dict[str, Any]:
    """Each share key's windows (used vs allowed) as the database knows them (the admin's view)."""
    out: dict[str, Any] = {}
    tokens = {slot: groups for slot, (_, groups) in book.share_tokens.items()}
    for prefix, share in book.shares.items():
        pool_windows = windows.get(share.pool_id, [])
        uses = measure(pool_windows, tokens)
        out[prefix] = key_windows(share.percent, share.pacing, share.group, uses, week_end_of(pool_windows), now)
    return out
