"""Who is asking: the logged-in operator, their role and pool scope, and the guards every view uses.

Scope is enforced on every object lookup (`pool_or_404`, `account_or_404`, `key_or_404` in scope.py), not by
hiding links: an `admin` asking for another pool's object gets 404, a `viewer` asking to change anything 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, abort, g, redirect, request, session, url_for

from admin_flask.db import get_db
from pooler.models import Operator
from pooler.services import operators as ops

F = TypeVar("F", bound=Callable[..., Any])
SESSION_KEY = "op"


@dataclass(frozen=True)
class Principal:
    id: int
    username: str
    role: str
    pool_ids: frozenset[int]
    has_totp: bool

    @property
    def can_write(self) -> bool:
        return ops.can_write(self.role)

    @property
    def is_owner(self) -> bool:
        return ops.is_owner(self.role)

    @property
    def all_pools(self) -> bool:
        """Owners and viewers see every pool; admins only theirs."""
        return self.role != "admin"

    def sees_pool(self, pool_id: int | None) -> bool:
        return ops.pool_visible(self.role, self.pool_ids, pool_id)


def current() -> Principal:
    principal: Principal | None = g.get("principal")
    if principal is None:
        abort(401)
    return principal


def log_in(operator: Operator) -> None:
    session.clear()
    session[SESSION_KEY] = operator.id
    session.permanent = True


def log_out() -> None:
    session.clear()


def _load_principal() -> None:
    g.principal = None
    op_id = session.get(SESSION_KEY)
    if op_id is None:
        return
    operator = get_db().get(Operator, op_id)
    if operator is None or operator.disabled:
        session.clear()
        return
    pool_ids = ops.assigned_pool_ids(get_db(), operator.id)
    g.principal = Principal(operator.id, operator.username, operator.role, pool_ids, ops.has_totp(operator))


def require_login() -> Any:
    """A blueprint `before_request`: anonymous visitors go to the login page."""
    if g.get("principal") is None:
        return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
    if request.method not in ("GET", "HEAD", "OPTIONS") and not current().can_write:
        # Viewers are read-only everywhere except their own profile (password, TOTP), which skips this hook.
        abort(403)
    return None


def owner_required(view: F) -> F:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current().is_owner:
            abort(403)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def init_app(app: Flask) -> None:
    app.before_request(_load_principal)

    @app.context_processor
    def inject() -> dict[str, Any]:
        return {"me": g.get("principal")}
