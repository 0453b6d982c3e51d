"""The ext_proc's in-flight report (the admin's display of the concurrency cap): each replica's report replaces
its own rows, deleted accounts never fail the batch, long-silent replicas are forgotten."""

from __future__ import annotations

from sqlalchemy import select

from pooler.context import CoreContext
from pooler.gateway.writes import INFLIGHT_FORGET_SECONDS, Batch, InflightReport, write_batch
from pooler.models import InflightStreams, utcnow
from pooler.services.seed import seed
from tests.support.admin import *  # noqa: F403


def _rows(ctx: CoreContext) -> dict[tuple[str, int], int]:
    with ctx.session_factory() as session:
        return {(r.replica, r.account_id): r.streams for r in session.scalars(select(InflightStreams))}


def _write(ctx: CoreContext, report: InflightReport) -> None:
    with ctx.session_factory.begin() as session:
        write_batch(session, Batch(inflight=report))


def test_a_report_replaces_the_replicas_rows(core_ctx: CoreContext) -> None:
    with core_ctx.session_factory.begin() as session:
        accounts = sorted(seed(session, core_ctx.box, core_ctx.hasher, requests=0).accounts.values())
    a, b = accounts[0], accounts[1]
    now = utcnow().timestamp()
    _write(core_ctx, InflightReport("h:1", {a: 3, b: 1}, now))
    _write(core_ctx, InflightReport("h:2", {a: 2}, now))
    assert _rows(core_ctx) == {("h:1", a): 3, ("h:1", b): 1, ("h:2", a): 2}
    # Streams ended: an account back at 0 has no row; an unknown (deleted) account is skipped, not an error.
    _write(core_ctx, InflightReport("h:1", {a: 0, b: 2, 999_999: 1}, now + 5))
    assert _rows(core_ctx) == {("h:1", b): 2, ("h:2", a): 2}
    # h:2 stopped reporting long ago: the next report of anyone forgets it.
    _write(core_ctx, InflightReport("h:1", {b: 1}, now + INFLIGHT_FORGET_SECONDS + 10))
    assert _rows(core_ctx) == {("h:1", b): 1}
    # A stopping replica's final report is empty.
    _write(core_ctx, InflightReport("h:1", {}, now + INFLIGHT_FORGET_SECONDS + 11))
    assert _rows(core_ctx) == {}


def test_a_requeued_batch_keeps_the_newer_report() -> None:
    older, newer = Batch(inflight=InflightReport("h", {1: 1}, 10.0)), Batch(inflight=InflightReport("h", {1: 2}, 20.0))
    older.merge(newer)
    assert older.inflight is not None and older.inflight.streams == {1: 2}
    assert len(Batch()) == 0 and len(newer) == 1


def test_a_limit_reached_bumps_the_routing_version_plain_observations_do_not(core_ctx: CoreContext) -> None:
    from pooler.gateway.evidence import AccountEffect
    from pooler.versions import routing_version

    with core_ctx.session_factory.begin() as session:
        account = sorted(seed(session, core_ctx.box, core_ctx.hasher, requests=0).accounts.values())[0]
    now = utcnow().timestamp()

    def version_after(effect: AccountEffect) -> int:
        with core_ctx.session_factory.begin() as session:
            write_batch(session, Batch(effects=[(effect, now)]))
        with core_ctx.session_factory() as session:
            return routing_version(session)

    with core_ctx.session_factory() as session:
        start = routing_version(session)
    # Every process that did not see the 429 itself (decision workers, other replicas) must reload at once.
    assert version_after(AccountEffect(account, limited_until=now + 60)) == start + 1
    assert version_after(AccountEffect(account)) == start + 1
