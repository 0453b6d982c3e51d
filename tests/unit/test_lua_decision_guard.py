"""The decision guard (pooler/envoy_config/lua/decision_guard.lua) under LuaJIT with a stub Envoy handle: an
attempt the ext_proc marked goes on without the mark; one without it (the ext_proc's stream failed before it
decided, so the filter failed open) gets the 500 local reply and never reaches the upstream."""

from __future__ import annotations

from pooler import gateway_contract as gc
from pooler.envoy_config.lua import DECISION_GUARD_LUA
from tests.support.luajit import lua_string, run_lua


def guarded(headers: dict[str, str]) -> tuple[str | None, bool]:
    """(the local reply's status or None, whether the mark is still in the headers afterwards)."""
    fields = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
    driver = (
        f"local headers = {{{fields}}}\n"
        "local handle = request_handle(headers, nil)\n"
        "envoy_on_request(handle)\n"
        f"emit(handle.replied and handle.replied.status, headers[{lua_string(gc.DECIDED_HEADER)}] ~= nil)"
    )
    status, marked = run_lua(DECISION_GUARD_LUA, driver)
    assert status is None or isinstance(status, bytes)
    return (status.decode() if status else None), bool(marked)


def test_a_decided_attempt_goes_on_without_the_mark() -> None:
    assert guarded({"authorization": "Bearer account-token", gc.DECIDED_HEADER: "1"}) == (None, False)


def test_an_undecided_attempt_is_refused_with_the_fail_closed_500() -> None:
    # The client's own request, untouched because the ext_proc never answered: its Pool key must not go upstream.
    assert guarded({"authorization": "Bearer cpk_client_pool_key"}) == ("500", False)
    assert guarded({}) == ("500", False)
