"""Realistic fake data for development and tests: pools, accounts in every state, keys, quota windows, request
logs with failovers, and audit events. Every page of the admin has something to show without real accounts.

The fake tokens and raw keys are returned (never printed by the CLI beyond counts) so tests can scan rendered
pages for them as canaries.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from pooler import audit
from pooler.audit import Actor
from pooler.crypto.hashing import KeyedHasher
from pooler.crypto.secretbox import SecretBox
from pooler.models import PoolAssignment, QuotaWindow, RequestAttempt, RequestLog, UpstreamAccount, utcnow
from pooler.services.credentials import store_token
from pooler.services.keys import create_key
from pooler.services.pools import create_pool, pause_pool
from pooler.states import AccountState, ActorType, AssignmentStatus, QuotaSource, SecretKind, Strategy

SEED_ACTOR = Actor(ActorType.SYSTEM, "dev-seed")
MODELS = ("gpt-5-codex", "gpt-5.1-codex", "gpt-5.1-codex-mini", "gpt-5")
ROUTES = (("responses", "POST"), ("responses", "POST"), ("responses_ws", "GET"), ("compact", "POST"), ("models", "GET"))

# (label, state, plan, workspace, pools, 5h used %, weekly used %)
ACCOUNTS: tuple[tuple[str, AccountState, str, str | None, tuple[str, ...], float, float], ...] = (
    ("alice", AccountState.ACTIVE, "pro", "Acme Eng", ("team-a",), 34.0, 21.0),
    ("bob", AccountState.ACTIVE, "plus", None, ("team-a", "team-b"), 71.0, 48.0),
    ("carol", AccountState.ACTIVE, "team", "Acme Research", ("research",), 12.0, 63.0),
    ("dave", AccountState.PAUSED, "plus", None, ("team-a",), 5.0, 10.0),
    ("erin", AccountState.REFRESH_DUE, "pro", "Acme Eng", ("team-b",), 40.0, 30.0),
    ("frank", AccountState.REFRESHING, "plus", None, ("team-b",), 22.0, 15.0),
    ("grace", AccountState.REFRESH_FAILED, "plus", None, ("team-a",), 55.0, 44.0),
    ("heidi", AccountState.REAUTH_REQUIRED, "team", "Acme Research", ("research",), 0.0, 0.0),
    ("ivan", AccountState.QUOTA_EXHAUSTED, "plus", None, ("team-a", "team-b"), 100.0, 81.0),
    ("judy", AccountState.DELETED, "free", None, (), 0.0, 0.0),
)


@dataclass
class SeedResult:
    pools: dict[str, int] = field(default_factory=dict)
    accounts: dict[str, int] = field(default_factory=dict)
    raw_keys: list[str] = field(default_factory=list, repr=False)
    tokens: list[str] = field(default_factory=list, repr=False)
    requests: int = 0


def _fake_token(kind: str) -> str:
    # Looks like nothing real; unique so a test can search for it verbatim.
    return f"seed-{kind}-{secrets.token_urlsafe(24)}"


def seed(
    session: Session,
    box: SecretBox,
    hasher: KeyedHasher,
    *,
    now: dt.datetime | None = None,
    requests: int = 600,
    rng_seed: int = 7,
) -> SeedResult:
    """Adds the demo data set inside the caller's transaction (names are fixed: run it on an empty database)."""
    now = now or utcnow()
    rng = random.Random(rng_seed)
    result = SeedResult()
    pools = {}
    for name, label, strategy in (
        ("team-a", "Team A", Strategy.LEAST_USED),
        ("team-b", "Team B", "round-robin"),
        ("research", "Research", "primary-first"),
    ):
        pool = create_pool(
            session, name=name, label=label, strategy=strategy, sticky_ttl_seconds=3600, actor=SEED_ACTOR
        )
        pools[name] = pool
        result.pools[name] = pool.id
    pools["research"].settings.primary_cap_percent = 90.0

    for index, (label, state, plan, workspace, pool_names, five_h, weekly) in enumerate(ACCOUNTS):
        account = UpstreamAccount(
            label=label,
            chatgpt_account_id=f"seed-{label}-{index:04d}-{rng.randrange(16**8):08x}",
            email=f"{label}@example.test",
            plan_type=plan,
            workspace_name=workspace,
            state=str(state),
            state_reason={AccountState.PAUSED: "operator", AccountState.REFRESH_FAILED: "upstream_5xx"}.get(state),
            state_changed_at=now - dt.timedelta(minutes=rng.randint(5, 600)),
            access_token_expires_at=now + dt.timedelta(days=rng.randint(1, 9)),
            last_refresh_at=now - dt.timedelta(hours=rng.randint(1, 90)),
            created_at=now - dt.timedelta(days=rng.randint(3, 40)),
            updated_at=now,
        )
        if state == AccountState.REFRESH_DUE:
            account.access_token_expires_at = now + dt.timedelta(hours=2)
        if state == AccountState.DELETED:
            account.deleted_at = now - dt.timedelta(days=1)
        session.add(account)
        session.flush()
        result.accounts[label] = account.id
        for kind in (SecretKind.ACCESS_TOKEN, SecretKind.REFRESH_TOKEN, SecretKind.ID_TOKEN):
            token = _fake_token(kind.value)
            result.tokens.append(token)
            store_token(session, box, account, kind, token)
        for priority, pool_name in enumerate(pool_names):
            session.add(
                PoolAssignment(
                    pool_id=pools[pool_name].id,
                    account_id=account.id,
                    priority=100 + 10 * priority + index,
                    status=AssignmentStatus.ACTIVE,
                    created_at=account.created_at,
                )
            )
        if state not in (AccountState.DELETED, AccountState.REAUTH_REQUIRED):
            for minutes, used, reset_in in (
                (300, five_h, rng.randint(20, 290)),
                (10080, weekly, rng.randint(600, 9000)),
            ):
                session.add(
                    QuotaWindow(
                        account_id=account.id,
                        limit_family="codex",
                        window_minutes=minutes,
                        used_percent=used,
                        resets_at=now + dt.timedelta(minutes=reset_in),
                        source=str(QuotaSource.HEADERS if index % 2 else QuotaSource.USAGE_API),
                        observed_at=now - dt.timedelta(minutes=rng.randint(1, 40)),
                    )
                )
        audit.record(
            session,
            Actor(ActorType.CLI, "dev-seed"),
            action="account.import",
            target_type="account",
            target_id=account.id,
            target_label=label,
            details={"pool": pool_names[0] if pool_names else None, "plan_type": plan},
        )
        if state != AccountState.ACTIVE:
            audit.record(
                session,
                Actor(
                    ActorType.OPERATOR if state in (AccountState.PAUSED, AccountState.DELETED) else ActorType.SCHEDULER,
                    "owner" if state in (AccountState.PAUSED, AccountState.DELETED) else "scheduler",
                ),
                action="account.state_change",
                target_type="account",
                target_id=account.id,
                target_label=label,
                details={"from": "active", "to": str(state), "reason": account.state_reason},
            )

    keys_by_pool: dict[int, list[str]] = {}
    for pool_name, labels in (("team-a", ("ci", "laptops")), ("team-b", ("agents",)), ("research", ("notebooks",))):
        for key_label in labels:
            created = create_key(session, hasher, pool=pools[pool_name], label=key_label, actor=SEED_ACTOR)
            result.raw_keys.append(created.raw)
            keys_by_pool.setdefault(pools[pool_name].id, []).append(created.key.prefix)

    members: dict[int, list[int]] = {}
    for label, state, _plan, _ws, pool_names, _a, _b in ACCOUNTS:
        if state in (
            AccountState.ACTIVE,
            AccountState.REFRESH_DUE,
            AccountState.REFRESHING,
            AccountState.REFRESH_FAILED,
        ):
            for pool_name in pool_names:
                members.setdefault(pools[pool_name].id, []).append(result.accounts[label])
    pool_ids = sorted(members)
    for i in range(requests):
        pool_id = rng.choice(pool_ids)
        accounts = members[pool_id]
        created_at = now - dt.timedelta(seconds=rng.uniform(0, 24 * 3600))
        route, method = rng.choice(ROUTES)
        model = rng.choice(MODELS) if route != "models" else None
        roll = rng.random()
        status = 200 if roll < 0.9 else (429 if roll < 0.95 else rng.choice((401, 502, 503)))
        failover = status == 200 and len(accounts) > 1 and rng.random() < 0.08
        final = rng.choice(accounts)
        first = rng.choice([a for a in accounts if a != final]) if failover else final
        input_tokens = rng.randint(2_000, 60_000) if model and status == 200 else 0
        cached = int(input_tokens * rng.uniform(0.2, 0.8))
        output = rng.randint(100, 4_000) if input_tokens else 0
        log = RequestLog(
            created_at=created_at,
            request_id=f"seed-{i:06d}-{rng.randrange(16**6):06x}",
            pool_id=pool_id,
            key_prefix=rng.choice(keys_by_pool[pool_id]),
            account_id=final,
            route_family=route,
            method=method,
            model=model,
            status_code=status,
            attempt_count=2 if failover else 1,
            error_code={429: "usage_limit_reached", 401: "upstream_unauthorized"}.get(status),
            ttfb_ms=rng.uniform(250, 2500),
            duration_ms=rng.uniform(800, 40_000),
            input_tokens=input_tokens or None,
            cached_tokens=cached or None,
            output_tokens=output or None,
            reasoning_tokens=int(output * 0.3) or None,
            total_tokens=(input_tokens + output) or None,
        )
        if failover:
            log.attempts.append(
                RequestAttempt(attempt_number=1, account_id=first, status_code=429, outcome="failed_over")
            )
            log.attempts.append(
                RequestAttempt(attempt_number=2, account_id=final, status_code=status, outcome="served")
            )
        else:
            log.attempts.append(
                RequestAttempt(attempt_number=1, account_id=final, status_code=status, outcome="served")
            )
        session.add(log)
    result.requests = requests
    pause_pool(session, "research", actor=Actor(ActorType.OPERATOR, "owner"))
    session.flush()
    return result
