"""The quota surfaces: `x-codex-*` headers, the usage API body, the websocket `codex.rate_limits` event and the
429 `usage_limit_reached` body. All are built from the same window views so they always agree."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pooler.simulator.accounts import Account
from pooler.simulator.state import SimState

ACTIVE_LIMIT = "codex"


def quota_headers(account: Account, now: float) -> dict[str, str]:
    headers = {"x-codex-plan-type": account.plan, "x-codex-active-limit": ACTIVE_LIMIT}
    for slot, window in account.windows():
        v = window.view(now)
        headers[f"x-codex-{slot}-used-percent"] = str(v.used_percent)
        headers[f"x-codex-{slot}-window-minutes"] = str(v.window_minutes)
        headers[f"x-codex-{slot}-reset-at"] = str(v.reset_at)
        headers[f"x-codex-{slot}-reset-after-seconds"] = str(v.reset_after_seconds)
    has_credits = account.credits_balance > 0
    headers["x-codex-credits-has-credits"] = "True" if has_credits else "False"
    headers["x-codex-credits-unlimited"] = "False"
    headers["x-codex-credits-balance"] = f"{account.credits_balance:g}"
    return headers


def _credits(account: Account) -> dict[str, Any]:
    return {"has_credits": account.credits_balance > 0, "unlimited": False, "balance": f"{account.credits_balance:g}"}


def usage_body(account: Account, now: float) -> dict[str, Any]:
    windows: dict[str, Any] = {"primary_window": None, "secondary_window": None}
    for slot, window in account.windows():
        v = window.view(now)
        windows[f"{slot}_window"] = {
            "used_percent": v.used_percent,
            "limit_window_seconds": v.window_minutes * 60,
            "reset_after_seconds": v.reset_after_seconds,
            "reset_at": v.reset_at,
        }
    limited = account.exhausted_until(now) is not None
    return {
        "user_id": account.user_id,
        "account_id": account.account_id,
        "email": account.email,
        "plan_type": account.plan,
        "rate_limit": {"allowed": not limited, "limit_reached": limited, **windows},
        "credits": _credits(account),
        "additional_rate_limits": [],
    }


def rate_limits_event(account: Account, now: float) -> dict[str, Any]:
    limits: dict[str, Any] = {"allowed": True, "limit_reached": False, "primary": None, "secondary": None}
    for slot, window in account.windows():
        v = window.view(now)
        limits[slot] = {
            "used_percent": v.used_percent,
            "window_minutes": v.window_minutes,
            "reset_after_seconds": v.reset_after_seconds,
            "reset_at": v.reset_at,
        }
    limited = account.exhausted_until(now) is not None
    limits["allowed"], limits["limit_reached"] = not limited, limited
    return {"type": "codex.rate_limits", "plan_type": account.plan, "rate_limits": limits, "credits": _credits(account)}


def limit_error(account: Account, now: float, resets_at: int | None = None) -> dict[str, Any]:
    if resets_at is None:
        resets_at = account.exhausted_until(now) or account.primary.view(now).reset_at
    return {
        "error": {
            "type": "usage_limit_reached",
            "message": "The usage limit has been reached",
            "plan_type": account.plan,
            "resets_at": resets_at,
            "resets_in_seconds": max(0, int(resets_at - now)),
        }
    }


def not_included_response(account: Account, now: float, model: str) -> web.Response:
    """A turn for a model outside the account's plan: 429 usage_not_included (not a spent window, so no reset)."""
    body = {
        "error": {
            "type": "usage_not_included",
            "message": f"The {model} model is not included in your plan.",
            "plan_type": account.plan,
        }
    }
    return web.json_response(body, status=429, headers=quota_headers(account, now))


def limit_response(account: Account, now: float, resets_at: int | None = None) -> web.Response:
    return web.json_response(limit_error(account, now, resets_at), status=429, headers=quota_headers(account, now))


async def wham_usage(request: web.Request) -> web.Response:
    state: SimState = request.app["state"]
    account: Account = request["sim_account"]
    now = state.now()
    return web.json_response(usage_body(account, now), headers=quota_headers(account, now))
