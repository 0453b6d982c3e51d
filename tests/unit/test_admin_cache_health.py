"""The cache-health page and its queries on both databases: cached share per hour and per account, switches by
cause, the sessions that moved most, and the alert's per-pool facts (last hour vs the 24 h before)."""

from __future__ import annotations

import datetime as dt

from pooler.context import CoreContext
from pooler.gateway import switch_causes as sc
from pooler.models import RequestLog, utcnow
from pooler.services.cache_health import cache_health, cache_shares
from pooler.services.seed import SeedResult, seed
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth


def _rows(ctx: CoreContext) -> tuple[SeedResult, int, dt.datetime]:
    """The demo data set (no tokens on its own rows' causes) plus one conversation that moved twice this hour."""
    now = utcnow()
    with ctx.session_factory.begin() as session:
        data = seed(session, ctx.box, ctx.hasher, requests=0)
        pool = data.pools["team-a"]
        accounts = sorted(data.accounts.values())

        def row(n: int, when: dt.datetime, cause: str | None, account: int, cached: int, session_hash: str) -> None:
            session.add(
                RequestLog(
                    created_at=when,
                    request_id=f"cache-{n}",
                    pool_id=pool,
                    account_id=account,
                    route_family="responses",
                    key_prefix="cpk_cache",
                    method="POST",
                    status_code=200,
                    input_tokens=1000,
                    cached_tokens=cached,
                    session_hash=session_hash,
                    switch_cause=cause,
                )
            )

        earlier = now - dt.timedelta(hours=5)
        for n in range(10):  # a steady baseline: 90% cached
            row(n, earlier, None if n else sc.FIRST_TURN, accounts[0], 900, "b" * 64)
        row(20, now - dt.timedelta(minutes=30), sc.ACCOUNT_SPENT, accounts[1], 0, "c" * 64)
        row(21, now - dt.timedelta(minutes=20), None, accounts[1], 800, "c" * 64)
        row(22, now - dt.timedelta(minutes=10), sc.ACCOUNT_DEMOTED, accounts[0], 0, "c" * 64)
        row(23, now - dt.timedelta(minutes=5), sc.NO_SESSION, accounts[0], 0, None)  # type: ignore[arg-type]
    return data, pool, now


def test_the_queries_count_shares_causes_and_moved_sessions(core_ctx: CoreContext) -> None:
    _, pool, now = _rows(core_ctx)
    with core_ctx.session_factory() as session:
        health = cache_health(session, pool, now)
        shares = {s.pool_id: s for s in cache_shares(session, now)}
    assert health.input_tokens == 14_000 and health.cached_tokens == 9_800 and health.share == 70.0
    assert health.causes[sc.ACCOUNT_SPENT] == 1 and health.causes[sc.ACCOUNT_DEMOTED] == 1
    assert health.causes[sc.FIRST_TURN] == 1 and health.causes[sc.NO_SESSION] == 1 and health.causes[sc.OTHER] == 0
    assert sum(b.moves for b in health.buckets) == 2 and len(health.buckets) in (24, 25)
    assert health.by_key == [("cpk_cache", 14_000, 9_800)]
    (moved,) = health.sessions
    assert (moved.session, moved.requests, moved.accounts, moved.moves) == ("c" * 12, 3, 2, 2)
    recent = shares[pool]
    assert (recent.recent_input, recent.recent_cached, recent.baseline_input, recent.baseline_cached) == (
        4000,
        800,
        10_000,
        9000,
    )
    assert recent.switches == {sc.ACCOUNT_SPENT: 1, sc.ACCOUNT_DEMOTED: 1}


def test_the_page_is_linked_from_the_pool_and_lists_the_causes(auth: Auth, core_ctx: CoreContext) -> None:
    _, pool, _ = _rows(core_ctx)
    auth.bootstrap()
    auth.login()
    assert f'href="/admin/pools/{pool}/cache"' in auth.client.get(f"/admin/pools/{pool}").get_data(as_text=True)
    html = auth.client.get(f"/admin/pools/{pool}/cache").get_data(as_text=True)
    assert "<b>70.0%</b> of 14.0k input tokens were cached." in html
    assert 'data-cause="account_spent"><td><code>account_spent</code></td><td class="num">1<' in html
    assert 'data-session="cccccccccccc"' in html and "b" * 12 not in html  # the baseline session never moved
    assert 'data-key="cpk_cache"' in html
    assert auth.client.get("/admin/pools/999/cache").status_code == 404
