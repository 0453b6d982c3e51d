"""One vocabulary: the admin's readiness code for (pool, account) equals the gateway snapshot's verdict, except
that the account's own cause is named before a paused pool or assignment (the gateway checks the pool first)."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from admin_flask import queries
from pooler.context import CoreContext
from pooler.gateway.snapshot import load_snapshot
from pooler.models import Pool, UpstreamAccount, utcnow
from pooler.selection import SelectionRequest, ineligibility
from pooler.selection import reasons as rc
from pooler.services.seed import seed
from tests.support.admin import *  # noqa: F403


def test_readiness_agrees_with_the_snapshot(core_ctx: CoreContext) -> None:
    with core_ctx.session_factory.begin() as session:
        seed(session, core_ctx.box, core_ctx.hasher, requests=10)
        # Flag one account for refresh so that reason is covered too.
        first = session.scalars(select(UpstreamAccount).order_by(UpstreamAccount.id)).first()
        assert first is not None
        first.refresh_requested_at = utcnow()
    now = utcnow()
    with core_ctx.session_factory() as session:
        snapshot = load_snapshot(session, core_ctx.box, now)
        pools = {p.id: p for p in session.scalars(select(Pool))}
        stale = queries.stale_after(session)
        seen = set()
        for entry in snapshot.pools.values():
            for candidate in entry.base_candidates:
                request = SelectionRequest(now=now.timestamp())
                gateway = ineligibility(candidate, entry.policy, request)
                if gateway in (rc.POOL_PAUSED, rc.ASSIGNMENT_PAUSED):
                    own = ineligibility(
                        dataclasses.replace(candidate, assignment_status="active"),
                        dataclasses.replace(entry.policy, pool_status="active"),
                        request,
                    )
                    gateway = own or gateway
                account = session.get(UpstreamAccount, candidate.account_id)
                assert account is not None
                admin = queries.readiness_of(account, {entry.pool_id: pools[entry.pool_id]}, now, stale)
                assert admin.code == gateway, (entry.name, account.label)
                seen.add(gateway)
    assert len(seen) >= 4, seen  # the seed covers routable and several blocking reasons
