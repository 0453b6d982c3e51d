"""Quota share on the hot path (pooler.share has the policy): tokens per share group and account window, fed by
the access log and reconciled from the request logs with the budgets (every 30 s); each pool's measure is
recomputed from its accounts' live windows at most once a second, so a request's check is a few dict lookups.

Like budgets: checked on a request's first attempt; a refusal is a Codex-shaped 429 (`usage_limit_reached`
type, code `share_exceeded`) naming the window, the share and when the key's use can drop, never forwarded.
Several replicas: each adds its own traffic and takes the larger of its count and the database's at every read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingResponse

from extproc import responses
from pooler.gateway.budgets import BudgetBook, KeyShare, ShareTokens
from pooler.gateway.snapshot import PoolEntry
from pooler.selection.scoring import plan_weight
from pooler.share import WINDOW_NAMES, AccountWindow, ShareUse, key_windows, measure, week_end_of

SHARE_EXCEEDED = "share_exceeded"
STALE_SLACK_SECONDS = 60.0
"""Reported resets jitter by a second or so; a bucket older than its window's start by more is a past window."""
NO_RESET_RETRY_SECONDS = 60


class ShareGate:
    __slots__ = ("_groups", "_measures", "_shares", "_tokens")

    def __init__(self) -> None:
        self._shares: dict[str, KeyShare] = {}
        self._groups: dict[str, tuple[int, str]] = {}
        self._tokens: ShareTokens = {}
        self._measures: dict[int, tuple[int, dict[tuple[str, int], ShareUse], float | None]] = {}
        """pool id -> (the second it was measured in, measure, weekly end). Keyed on the second alone: evidence
        replaces a pool's candidates on nearly every answer, so keying on them too would recompute per request."""

    def seed(self, book: BudgetBook) -> None:
        self._shares, self._groups = book.shares, book.groups
        for slot, (start, db) in book.share_tokens.items():
            have = self._tokens.get(slot)
            if have is None or have[0] < start - STALE_SLACK_SECONDS:
                self._tokens[slot] = (start, dict(db))
                continue
            merged = have[1]
            for group, count in db.items():
                merged[group] = max(merged.get(group, 0), count)
        self._measures.clear()

    def add(self, prefix: str, account_id: int | None, tokens: int, now: float) -> None:
        known = self._groups.get(prefix)
        if known is None or account_id is None or tokens <= 0:
            return
        group = known[1]
        for minutes in WINDOW_NAMES:
            have = self._tokens.get((account_id, minutes))
            if have is None:
                self._tokens[(account_id, minutes)] = (now, {group: tokens})
            else:
                have[1][group] = have[1].get(group, 0) + tokens

    def uses(self, pool: PoolEntry, now: float) -> tuple[dict[tuple[str, int], ShareUse], float | None]:
        """The pool's measure (group, window minutes) -> use, and the end of its weekly window (the earliest
        weekly reset among its accounts; pacing counts days from a week before it)."""
        second = int(now)
        cached = self._measures.get(pool.pool_id)
        # Once a second per pool, not on every evidence change: under load every answer brings new windows, and
        # a measure costs ~2 ms for 20 accounts x 50 groups (bench/budget_bench.py).
        if cached is not None and cached[0] == second:
            return cached[1], cached[2]
        windows = []
        tokens: dict[tuple[int, int], Mapping[str, int]] = {}
        for candidate in pool.candidates:
            weight = plan_weight(candidate.plan_type)
            for w in candidate.windows:
                if w.window_minutes not in WINDOW_NAMES or w.resets_at is None or w.resets_at <= now:
                    continue
                windows.append(
                    AccountWindow(candidate.account_id, weight, w.window_minutes, w.used_percent, w.resets_at)
                )
                slot = (candidate.account_id, w.window_minutes)
                start = w.resets_at - w.window_minutes * 60
                have = self._tokens.get(slot)
                if have is not None and have[0] < start - STALE_SLACK_SECONDS:
                    self._tokens[slot] = have = (start, {})  # the window reset since these were counted
                if have is not None:
                    tokens[slot] = have[1]
        result, week_end = measure(windows, tokens), week_end_of(windows)
        self._measures[pool.pool_id] = (second, result, week_end)
        return result, week_end

    def windows(self, prefix: str, pool: PoolEntry, now: float) -> list[dict[str, Any]] | None:
        """The key's share per window kind (used vs allowed), for its holder and the refusal; None: no share."""
        share = self._shares.get(prefix)
        if share is None:
            return None
        uses, week_end = self.uses(pool, now)
        return key_windows(share.percent, share.pacing, share.group, uses, week_end, now)

    def check(
        self, prefix: str, pool: PoolEntry | None, routing: Mapping[str, Any], now: float
    ) -> ProcessingResponse | None:
        if prefix not in self._shares or pool is None:
            return None
        windows = self.windows(prefix, pool, now)
        over = [w for w in windows or () if w["exceeded"]]
        if not over:
            return None
        worst = max(over, key=lambda w: w["resets_at"] or math.inf)
        return refusal_reply(worst, self._shares[prefix].group, routing, now)


def refusal_reply(window: dict[str, Any], group: str, routing: Mapping[str, Any], now: float) -> ProcessingResponse:
    resets_at = window["resets_at"]
    wait = NO_RESET_RETRY_SECONDS if resets_at is None else max(1, math.ceil(resets_at - now))
    who = "team" if group.startswith("team:") else "key"
    pace = " by today (paced)" if window["paced"] else ""
    message = (
        f"This Pool API {who} has used {window['used_percent']:.1f}% of the pool's {window['window']} capacity; "
        f"its share is {window['allowed_percent']:.1f}%{pace}."
    )
    error: dict[str, Any] = {
        "type": "usage_limit_reached",
        "code": SHARE_EXCEEDED,
        "message": message,
        "param": None,
        "share": window,
        "resets_in_seconds": wait,
    }
    if resets_at is not None:
        error["resets_at"] = resets_at
    body = json.dumps({"error": error}, separators=(",", ":")).encode()
    return responses.immediate(
        429, body, {**routing, "error": SHARE_EXCEEDED}, {"retry-after": str(wait)}, details=f"pooler_{SHARE_EXCEEDED}"
    )
