"""Simulated accounts and their quota windows.

Each account has a primary and (usually) a secondary window, each a token budget over a fixed length. A window
starts at its first use after being empty and resets `minutes` later; usage accrues from the tokens the
simulator generates. Every surface (headers, usage API, websocket event, 429 body) reads the same `view()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pooler.simulator.tokens import Identity

FIVE_HOURS = 300
WEEK = 10080

# (minutes, token budget) for the primary and secondary windows. Free reports only a weekly window, in the
# primary slot, like the real service does for some plans.
PLAN_WINDOWS: dict[str, tuple[tuple[int, int], tuple[int, int] | None]] = {
    "free": ((WEEK, 20_000), None),
    "go": ((FIVE_HOURS, 50_000), (WEEK, 500_000)),
    "plus": ((FIVE_HOURS, 100_000), (WEEK, 1_000_000)),
    "pro": ((FIVE_HOURS, 1_000_000), (WEEK, 10_000_000)),
    "team": ((FIVE_HOURS, 150_000), (WEEK, 1_500_000)),
    "business": ((FIVE_HOURS, 150_000), (WEEK, 1_500_000)),
    "enterprise": ((FIVE_HOURS, 200_000), (WEEK, 2_000_000)),
    "edu": ((FIVE_HOURS, 100_000), (WEEK, 1_000_000)),
}


@dataclass
class WindowView:
    used_percent: int
    window_minutes: int
    reset_at: int
    reset_after_seconds: int
    limit_reached: bool


@dataclass
class Window:
    minutes: int
    budget: int
    used: int = 0
    started_at: float | None = None

    @property
    def seconds(self) -> int:
        return self.minutes * 60

    def roll(self, now: float) -> None:
        """Empties the window once its period is over (the reset happens 'on time', by the simulated clock)."""
        if self.started_at is not None and now >= self.started_at + self.seconds:
            self.used = 0
            self.started_at = None

    def full(self, now: float) -> bool:
        self.roll(now)
        return self.used >= self.budget

    def accrue(self, tokens: int, now: float) -> None:
        self.roll(now)
        if self.started_at is None:
            self.started_at = now
        self.used += max(0, tokens)

    def set_used(self, used: int, now: float) -> None:
        self.roll(now)
        self.used = max(0, used)
        if self.used and self.started_at is None:
            self.started_at = now

    def view(self, now: float) -> WindowView:
        self.roll(now)
        start = self.started_at if self.started_at is not None else now
        reset_at = math.ceil(start + self.seconds)
        full = self.used >= self.budget
        # Integer percent, 100 only when really full, so "100%" and "limit reached" never disagree.
        percent = 100 if full else min(99, self.used * 100 // max(1, self.budget))
        return WindowView(percent, self.minutes, reset_at, max(0, int(reset_at - now)), full)

    def describe(self, now: float) -> dict[str, Any]:
        v = self.view(now)
        return {
            "window_minutes": self.minutes,
            "budget": self.budget,
            "used_tokens": self.used,
            "used_percent": v.used_percent,
            "reset_at": v.reset_at,
            "reset_after_seconds": v.reset_after_seconds,
            "limit_reached": v.limit_reached,
        }


def windows_for_plan(plan: str) -> tuple[Window, Window | None]:
    primary, secondary = PLAN_WINDOWS.get(plan, PLAN_WINDOWS["plus"])
    return Window(*primary), (Window(*secondary) if secondary else None)


@dataclass
class Account:
    account_id: str
    plan: str
    email: str
    user_id: str
    primary: Window
    secondary: Window | None
    # A revoked account rejects its access tokens and refresh tokens (models a password change / re-auth need).
    revoked: bool = False
    # A deactivated account (or workspace) answers every backend call 403 account_deactivated.
    deactivated: bool = False
    # Models outside this account's plan: a turn asking for one answers 429 usage_not_included.
    excluded_models: frozenset[str] = frozenset()
    credits_balance: float = 0.0
    prompt_cache: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, ident: Identity) -> Account:
        ident = ident.filled()
        primary, secondary = windows_for_plan(ident.plan)
        return cls(ident.account_id, ident.plan, ident.email, ident.user_id, primary, secondary)

    def identity(self) -> Identity:
        return Identity(self.account_id, self.plan, self.email, self.user_id)

    def windows(self) -> list[tuple[str, Window]]:
        out = [("primary", self.primary)]
        if self.secondary is not None:
            out.append(("secondary", self.secondary))
        return out

    def exhausted_until(self, now: float) -> int | None:
        """Unix time the account serves again, or None when it has room now."""
        resets = [w.view(now).reset_at for _, w in self.windows() if w.full(now)]
        return max(resets) if resets else None

    def accrue(self, tokens: int, now: float) -> None:
        for _, window in self.windows():
            window.accrue(tokens, now)

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "plan": self.plan,
            "email": self.email,
            "user_id": self.user_id,
            "revoked": self.revoked,
            "deactivated": self.deactivated,
            "excluded_models": sorted(self.excluded_models),
            "primary": self.primary.describe(now),
            "secondary": self.secondary.describe(now) if self.secondary else None,
            "exhausted_until": self.exhausted_until(now),
        }

    def configure(self, spec: dict[str, Any], now: float) -> None:
        """Applies a control-API patch: plan (resets windows to the plan's defaults first), budgets, usage."""
        if "plan" in spec and spec["plan"] != self.plan:
            self.plan = str(spec["plan"])
            self.primary, self.secondary = windows_for_plan(self.plan)
        for key in ("email", "user_id"):
            if key in spec:
                setattr(self, key, str(spec[key]))
        if "revoked" in spec:
            self.revoked = bool(spec["revoked"])
        if "deactivated" in spec:
            self.deactivated = bool(spec["deactivated"])
        if "excluded_models" in spec:
            self.excluded_models = frozenset(str(m) for m in spec["excluded_models"] or ())
        if "credits_balance" in spec:
            self.credits_balance = float(spec["credits_balance"])
        if spec.get("secondary") is False or spec.get("secondary_minutes") == 0:
            self.secondary = None
        for slot in ("primary", "secondary"):
            self._configure_window(slot, spec, now)

    def _configure_window(self, slot: str, spec: dict[str, Any], now: float) -> None:
        window = getattr(self, slot)
        keys = [k for k in spec if k.startswith(slot + "_")]
        if window is None and any(k in spec for k in (f"{slot}_minutes", f"{slot}_budget")):
            window = Window(int(spec.get(f"{slot}_minutes", WEEK)), int(spec.get(f"{slot}_budget", 1_000_000)))
            setattr(self, slot, window)
        if window is None or not keys:
            return
        if f"{slot}_minutes" in spec:
            window.minutes = int(spec[f"{slot}_minutes"])
        if f"{slot}_budget" in spec:
            window.budget = max(1, int(spec[f"{slot}_budget"]))
        if f"{slot}_used" in spec:
            window.set_used(int(spec[f"{slot}_used"]), now)
        if f"{slot}_used_percent" in spec:
            window.set_used(math.ceil(window.budget * float(spec[f"{slot}_used_percent"]) / 100), now)
