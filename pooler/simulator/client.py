"""A small synchronous client for the simulator's control API (used by tests, the demo and benchmarks)."""

from __future__ import annotations

from typing import Any

import httpx


class SimulatorClient:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # URLs a gateway or client should be configured with.
    @property
    def codex_base_url(self) -> str:
        return f"{self.base_url}/backend-api/codex"

    @property
    def auth_base_url(self) -> str:
        return self.base_url

    def _call(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        resp = self._http.request(method, path, json=json, params=params)
        resp.raise_for_status()
        return resp.json()

    def health(self) -> bool:
        return bool(self._call("GET", "/_sim/health")["ok"])

    def reset(self) -> None:
        self._call("POST", "/_sim/reset")

    # Faults ---------------------------------------------------------------------------------------------
    def add_fault(self, kind: str, **fields: Any) -> dict[str, Any]:
        """E.g. add_fault("status", status=429, account="acct-1", count=2); see faults.py for all fields."""
        result: dict[str, Any] = self._call("POST", "/_sim/faults", json={"kind": kind, **fields})["faults"][0]
        return result

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_sim/faults")["faults"])

    def clear_faults(self) -> int:
        return int(self._call("DELETE", "/_sim/faults")["removed"])

    # Journal --------------------------------------------------------------------------------------------
    def journal(self, since: int = 0, route: str | None = None) -> list[dict[str, Any]]:
        entries = list(self._call("GET", "/_sim/journal", params={"since": since})["entries"])
        return [e for e in entries if route is None or e["route"] == route]

    def clear_journal(self) -> None:
        self._call("DELETE", "/_sim/journal")

    # Clock ----------------------------------------------------------------------------------------------
    def streams(self) -> dict[str, dict[str, int]]:
        """{"open": {account: n}, "max": {account: n}}: concurrent requests per account (pooler.simulator.streams)."""
        result: dict[str, dict[str, int]] = self._call("GET", "/_sim/streams")
        return result

    def forget_stream_maxima(self) -> None:
        self._call("DELETE", "/_sim/streams")

    def clock(self) -> dict[str, float]:
        return dict(self._call("GET", "/_sim/clock"))

    def now(self) -> float:
        return float(self.clock()["now"])

    def advance_clock(self, seconds: float) -> float:
        return float(self._call("POST", "/_sim/clock", json={"advance": seconds})["now"])

    def set_clock(self, *, offset: float | None = None, now: float | None = None) -> float:
        body = {k: v for k, v in (("offset", offset), ("now", now)) if v is not None}
        return float(self._call("POST", "/_sim/clock", json=body)["now"])

    # Accounts and credentials ---------------------------------------------------------------------------
    def accounts(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_sim/accounts")["accounts"])

    def account(self, account_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/_sim/accounts/{account_id}"))

    def upsert_account(self, account_id: str, **fields: Any) -> dict[str, Any]:
        """Creates or configures: plan, primary_budget, primary_used, primary_used_percent, primary_minutes,
        the same for secondary (secondary=False removes it), revoked, email, credits_balance."""
        return dict(self._call("POST", "/_sim/accounts", json={"account_id": account_id, **fields}))

    def make_auth(self, account_id: str, plan: str | None = None, **fields: Any) -> dict[str, Any]:
        """An auth.json document for the account (created if new), signed with the running simulator's secret."""
        body = {"account_id": account_id, **({"plan": plan} if plan else {}), **fields}
        return dict(self._call("POST", "/_sim/tokens", json=body))

    def access_token(self, account_id: str, **fields: Any) -> str:
        return str(self.make_auth(account_id, **fields)["tokens"]["access_token"])

    # Generated output -----------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_sim/config"))

    def configure(self, **fields: Any) -> dict[str, Any]:
        """text, token_rate (tokens/s, 0 = flat out), reasoning_tokens, device_auto_approve_polls, ..."""
        return dict(self._call("POST", "/_sim/config", json=fields))

    def script(self, *responses: dict[str, Any]) -> int:
        """Queues answers for the next turns: {"text": ...} or {"function_call": {"name", "arguments"}}."""
        return int(self._call("POST", "/_sim/script", json={"responses": list(responses)})["queued"])

    def script_function_call(self, name: str, arguments: Any, call_id: str | None = None) -> int:
        call = {"name": name, "arguments": arguments, **({"call_id": call_id} if call_id else {})}
        return self.script({"function_call": call})

    def clear_script(self) -> None:
        self._call("DELETE", "/_sim/script")

    def approve_device(self, user_code: str, account_id: str | None = None) -> dict[str, Any]:
        return dict(self._call("POST", "/_sim/device/approve", json={"user_code": user_code, "account_id": account_id}))
