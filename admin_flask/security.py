"""Who is asking: the logged-in operator, their role and pool scope, and the guards every view uses.

Scope is enforced on every object lookup (`pool_or_404`, `account_or_404`, `key_or_404` in scope.py), not by
hiding links: an `admin` asking for another pool's object gets 404, a `viewer` asking to change anything 403.

Signing in opens a server-side session (pooler.services.admin_sessions): the cookie carries only its random
opaque token (plus Flask-WTF's CSRF token and one-shot flash messages), and every request looks the token up, so
a revoked or expired session ends at once everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, abort, g, has_request_context, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from admin_flask import throttle
from admin_flask.db import core, get_db
from pooler.models import AdminSession, Operator
from pooler.services import admin_sessions
from pooler.services import operators as ops

F = TypeVar("F", bound=Callable[..., Any])
SESSION_KEY = "sid"
"""The cookie's only sign-in state: the opaque session token."""


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


def log_in(operator: Operator) -> AdminSession:
    """Opens a session for this browser (the caller commits). Whatever the cookie held before is dropped, so a
    pre-login cookie can never be promoted into a signed-in one."""
    opened = admin_sessions.open_session(
        get_db(), core().hasher, operator_id=operator.id, user_agent=request.headers.get("User-Agent")
    )
    session.clear()
    # Not `permanent`: a browser-session cookie; the server decides how long a session lasts (idle and absolute
    # limits), whatever the cookie's lifetime.
    session[SESSION_KEY] = opened.token
    g.admin_session = opened.row
    return opened.row


def log_out() -> int:
    """Signs the operator out everywhere: every session of theirs is revoked, not just this browser's, so a copy
    of any of their cookies stops working too. Empties the cookie; returns how many sessions ended (the caller
    commits)."""
    row = current_session()
    session.clear()
    if row is None:
        return 0
    return admin_sessions.revoke_operator(get_db(), row.operator_id)


def current_session() -> AdminSession | None:
    """The live session row of this request, if signed in."""
    row: AdminSession | None = g.get("admin_session")
    return row


def _load_principal() -> None:
    g.principal = None
    g.admin_session = None
    token = session.get(SESSION_KEY)
    if not isinstance(token, str):
        return
    db = get_db()
    row = admin_sessions.resolve(db, core().hasher, token)
    if row is not None and row in db.dirty:
        # last_seen_at moved: its own short transaction, before the view runs, so a view that fails or only
        # reads still counts as activity.
        db.commit()
    operator = db.get(Operator, row.operator_id) if row is not None else None
    if row is None or operator is None or operator.disabled:
        session.clear()
        return
    g.admin_session = row
    pool_ids = ops.assigned_pool_ids(db, operator.id)
    g.principal = Principal(operator.id, operator.username, operator.role, pool_ids, ops.has_totp(operator))


PUBLIC_ENDPOINTS = frozenset({"static", "auth.login", "auth.bootstrap", "auth.logout"})
"""Endpoints anyone may reach. Everything else needs a signed-in operator: a new view is private by default."""
PUBLIC_BLUEPRINTS = frozenset({"invite_public"})
"""Blueprints whose every view is public (an invite link is opened by someone who has no operator account)."""
SELF_SERVICE_BLUEPRINTS = frozenset({"auth"})
"""Where a read-only viewer may still write: their own profile (password, TOTP, their sessions)."""


def require_login() -> Any:
    """The app-wide `before_request` (after the principal is loaded): anonymous visitors go to the login page,
    except on the public endpoints above; viewers are read-only outside their own profile."""
    if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS or request.blueprint in PUBLIC_BLUEPRINTS:
        return None  # no endpoint: Flask answers 404 itself
    if g.get("principal") is None:
        return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
    writing = request.method not in ("GET", "HEAD", "OPTIONS")
    if writing and not current().can_write and request.blueprint not in SELF_SERVICE_BLUEPRINTS:
        abort(403)
    return None


def owner_required(view: F) -> F:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current().is_owner:
            abort(403)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def served_over_tls() -> bool:
    """True when the browser reached the admin over TLS: the request itself is https, or a proxy on this host
    (Envoy, which overwrites a client's copy of the header) says so in X-Forwarded-Proto. The header is believed
    only from a loopback peer, the same trust rule as the client address of the login throttle."""
    if request.scheme == "https":
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return forwarded == "https" and throttle.peer_is_loopback()


class AdminSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie with `Secure` decided per request: always with POOLER_ADMIN_SECURE_COOKIES=1,
    otherwise whenever this request came over TLS (a cookie set over plain http must not be marked Secure, or
    local development could never sign in)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or (has_request_context() and served_over_tls())


def init_app(app: Flask) -> None:
    app.session_interface = AdminSessionInterface()
    app.before_request(_load_principal)
    app.before_request(require_login)

    @app.context_processor
    def inject() -> dict[str, Any]:
        return {"me": g.get("principal")}
