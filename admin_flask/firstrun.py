"""The dashboard's first-run checklist: create a pool, add an account, create a key, send a first request.

Each step is ticked from real data (never from a "dismissed" flag), so the list disappears by itself once the
install is in use and comes back if, say, every key is revoked. `checklist` is pure; `setup_facts` reads the DB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from pooler.models import Pool, PoolAssignment, PoolKey, RequestLog, UpstreamAccount
from pooler.states import AccountState, KeyStatus, PoolStatus


@dataclass(frozen=True)
class SetupFacts:
    has_pool: bool
    has_account: bool
    has_key: bool
    has_traffic: bool


@dataclass(frozen=True)
class Step:
    name: str
    """Stable id (tests, anchors)."""
    title: str
    done: bool
    endpoint: str
    """Where the operator does it (a Flask endpoint without arguments)."""
    hint: str


def checklist(facts: SetupFacts) -> list[Step]:
    """The steps in order; empty once every step is done (the panel is then hidden)."""
    steps = [
        Step("pool", "Create a pool", facts.has_pool, "pools.new", "A pool groups accounts and the keys using them."),
        Step(
            "account",
            "Import or link an account",
            facts.has_account,
            "accounts.index",
            "Import a Codex auth.json or sign in with OpenAI; the account joins a pool.",
        ),
        Step("key", "Create a Pool API key", facts.has_key, "keys.index", "Clients authenticate with a key of a pool."),
        Step(
            "client",
            "Point a client at the gateway",
            facts.has_traffic,
            "logs.index",
            "Codex: base URL http://GATEWAY:10000/backend-api/codex; OpenAI SDKs: http://GATEWAY:10000/v1, "
            "with the key as the API key. Ticked at the first logged request.",
        ),
    ]
    return [] if all(step.done for step in steps) else steps


def setup_facts(session: Session, pool_ids: set[int] | None) -> SetupFacts:
    """What exists, within the operator's pools (`pool_ids` None = every pool)."""

    def scoped(column: InstrumentedAttribute[Any]) -> ColumnElement[bool]:
        return true() if pool_ids is None else column.in_(pool_ids or {-1})

    def any_row(query: Select[Any]) -> bool:
        return bool(session.scalar(select(exists(query))))

    live = UpstreamAccount.state != AccountState.DELETED
    return SetupFacts(
        has_pool=any_row(select(Pool.id).where(Pool.status != PoolStatus.ARCHIVED, scoped(Pool.id))),
        has_account=any_row(
            select(PoolAssignment.id).join(UpstreamAccount).where(live, scoped(PoolAssignment.pool_id))
        ),
        has_key=any_row(select(PoolKey.id).where(PoolKey.status == KeyStatus.ACTIVE, scoped(PoolKey.pool_id))),
        has_traffic=any_row(
            select(RequestLog.id).where(RequestLog.key_prefix.is_not(None), scoped(RequestLog.pool_id))
        ),
    )
