"""The read layer (pooler.services.views) the admin, the MCP tools and the CLI share: filters, rows and counts."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pooler.audit import Actor
from pooler.crypto.hashing import KeyedHasher
from pooler.crypto.keyring import new_key_material, parse_keyring
from pooler.crypto.secretbox import SecretBox
from pooler.models import PoolAssignment, QuotaWindow, UpstreamAccount
from pooler.services import accounts, keys, pools, views
from pooler.states import AccountState, ActorType, AssignmentStatus, KeyStatus
from tests.support import jwt

ACTOR = Actor(ActorType.CLI, "tester")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> tuple[str, int, dict[str, int]]:
    """A pool with four accounts (ready, paused assignment, reauth-required, deleted) and three keys (two active,
    one revoked); returns (pool name, pool id, account id by role)."""
    box = SecretBox(parse_keyring(f"k1:{new_key_material()}"))
    hasher = KeyedHasher(secrets.token_bytes(32))
    name = f"views-{secrets.token_hex(4)}"
    ids: dict[str, int] = {}
    with session_factory.begin() as s:
        pool = pools.create_pool(s, name=name, actor=ACTOR)
        for role in ("ready", "paused", "reauth", "deleted"):
            data = jwt.auth_json(account_id=f"acct-{secrets.token_hex(6)}", email=f"{role}-{name}@example.com")
            ids[role] = accounts.import_auth_json(s, box, pool=name, data=data, actor=ACTOR).account_id
        s.flush()
        for role, priority in (("ready", 20), ("paused", 10), ("reauth", 20), ("deleted", 5)):
            assignment = s.query(PoolAssignment).filter_by(pool_id=pool.id, account_id=ids[role]).one()
            assignment.priority = priority
            if role == "paused":
                assignment.status = AssignmentStatus.PAUSED
        reauth = s.get(UpstreamAccount, ids["reauth"])
        deleted = s.get(UpstreamAccount, ids["deleted"])
        assert reauth is not None and deleted is not None
        reauth.state = AccountState.REAUTH_REQUIRED
        deleted.state, deleted.deleted_at = AccountState.DELETED, NOW
        ready = s.get(UpstreamAccount, ids["ready"])
        assert ready is not None
        for family, minutes in (("codex", 10080), ("codex", 300), ("codex_other", 300)):
            s.add(
                QuotaWindow(
                    account_id=ready.id,
                    limit_family=family,
                    window_minutes=minutes,
                    used_percent=12.0,
                    resets_at=NOW,
                    observed_at=NOW,
                    source="headers",
                )
            )
        prefixes = [keys.create_key(s, hasher, pool=name, label=f"k{i}", actor=ACTOR).key.prefix for i in range(3)]
        keys.revoke_key(s, prefixes[2], actor=ACTOR)
        return name, pool.id, ids


def test_pool_row_counts_accounts_ready_ones_and_keys(
    session_factory: sessionmaker[Session], seeded: tuple[str, int, dict[str, int]]
) -> None:
    name, pool_id, _ = seeded
    with session_factory() as s:
        row = next(r for r in views.pool_rows(s) if r.name == name)
        assert (row.id, row.strategy, row.accounts, row.ready_accounts) == (pool_id, "least-used", 3, 1)
        assert (row.active_keys, row.keys) == (2, 3)
        assert views.key_status_counts(s, pool_id) == {KeyStatus.ACTIVE: 2, KeyStatus.REVOKED: 1}
        assert views.key_counts(s, KeyStatus.ACTIVE)[pool_id] == 2
        assert views.pool_names(s)[pool_id] == name


def test_assignment_rows_follow_priority_then_label_and_hide_deleted_accounts(
    session_factory: sessionmaker[Session], seeded: tuple[str, int, dict[str, int]]
) -> None:
    _, pool_id, ids = seeded
    with session_factory() as s:
        shown = views.assignment_rows(s, pool_id)
        assert [a.account_id for a in shown] == [ids["paused"], ids["ready"], ids["reauth"]]  # ready < reauth by label
        assert [a.ready for a in shown] == [False, True, False]
        every = views.assignment_rows(s, pool_id, include_deleted=True)
        assert [(a.account_id, a.deleted) for a in every] == [
            (ids["deleted"], True),  # priority 5: first
            *((a.account_id, False) for a in shown),
        ]


def test_account_filters(session_factory: sessionmaker[Session], seeded: tuple[str, int, dict[str, int]]) -> None:
    name, pool_id, ids = seeded
    with session_factory() as s:
        in_pool = [r.id for r in views.account_rows(s, pool_id=pool_id)]
        assert in_pool == [ids["paused"], ids["ready"], ids["reauth"]]  # by label; the deleted one left out
        with_deleted = views.account_rows(s, pool_id=pool_id, include_deleted=True)
        assert ids["deleted"] in [r.id for r in with_deleted]
        reauth = views.account_rows(s, pool_id=pool_id, state=AccountState.REAUTH_REQUIRED)
        assert [r.id for r in reauth] == [ids["reauth"]]
        found = s.scalars(views.account_query(search=f"READY-{name}", within={ids["ready"], ids["paused"]})).all()
        assert [a.id for a in found] == [ids["ready"]]
        assert s.scalars(views.account_query(search="ready", within=[ids["paused"]])).all() == []
        assert views.find_account_row(s, ids["deleted"]) is None
        assert views.account_labels(s)[ids["deleted"]] == f"deleted-{name}"  # old log rows still name it


def test_account_row_carries_pools_and_windows_in_order(
    session_factory: sessionmaker[Session], seeded: tuple[str, int, dict[str, int]]
) -> None:
    name, _, ids = seeded
    with session_factory() as s:
        row = views.find_account_row(s, ids["ready"])
        assert row is not None
        assert (row.label, row.pools, row.credential_epoch) == (f"ready-{name}", (name,), 1)
        assert [(w.limit_family, w.window_minutes) for w in row.windows] == [
            ("codex", 300),
            ("codex", 10080),
            ("codex_other", 300),
        ]
        counts = views.account_state_counts(s, within=list(ids.values()))
        assert counts == {AccountState.ACTIVE: 2, AccountState.REAUTH_REQUIRED: 1}
        assert views.account_state_counts(s, include_deleted=True, within=list(ids.values()))[AccountState.DELETED] == 1
