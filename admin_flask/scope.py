"""Object lookups that enforce the operator's pool scope (404 for anything out of scope)."""

from __future__ import annotations

from flask import abort
from sqlalchemy import Select, select

from admin_flask.db import get_db
from admin_flask.security import current
from pooler.models import Pool, PoolAssignment, PoolKey, UpstreamAccount


def visible_pools(include_archived: bool = True) -> list[Pool]:
    query = select(Pool).order_by(Pool.name)
    if not include_archived:
        query = query.where(Pool.status != "archived")
    me = current()
    if not me.all_pools:
        query = query.where(Pool.id.in_(me.pool_ids or {-1}))
    return list(get_db().scalars(query))


def visible_pool_ids() -> set[int] | None:
    """None means every pool (owner, viewer)."""
    me = current()
    return None if me.all_pools else set(me.pool_ids)


def pool_or_404(pool_id: int) -> Pool:
    pool = get_db().get(Pool, pool_id)
    if pool is None or not current().sees_pool(pool.id):
        abort(404)
    return pool


def account_ids_in_scope() -> Select[int] | None:
    """A subquery of account ids an admin may see; None when every account is visible."""
    ids = visible_pool_ids()
    if ids is None:
        return None
    return select(PoolAssignment.account_id).where(PoolAssignment.pool_id.in_(ids or {-1}))


def account_or_404(account_id: int) -> UpstreamAccount:
    account = get_db().get(UpstreamAccount, account_id)
    if account is None:
        abort(404)
    ids = visible_pool_ids()
    if ids is not None and not any(a.pool_id in ids for a in account.assignments):
        abort(404)
    return account


def key_or_404(key_id: int) -> PoolKey:
    key = get_db().get(PoolKey, key_id)
    if key is None or not current().sees_pool(key.pool_id):
        abort(404)
    return key
