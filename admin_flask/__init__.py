"""Operator admin: a Flask app factory with one blueprint per area, mounted under /admin.

`create_app(config)` takes Flask config overrides; tests pass `POOLER_CONTEXT` (a ready CoreContext), the
process entry point (`python -m admin_flask`) lets it open one from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from admin_flask import db, filters, live, security
from admin_flask.extensions import csrf
from pooler.context import CoreContext, open_context

URL_PREFIX = "/admin"
# Its own purpose string: the Flask secret never equals any other keyed hash of the pepper.
SECRET_KEY_PURPOSE = "admin-flask-secret-key"
MAX_UPLOAD_BYTES = 64 * 1024


def _env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return default if raw is None else raw.strip().lower() in {"1", "true", "yes", "on"}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, static_url_path=f"{URL_PREFIX}/static")
    overrides = dict(config or {})
    ctx: CoreContext = overrides.pop("POOLER_CONTEXT", None) or open_context()
    app.config.update(
        SECRET_KEY=ctx.hasher.hexdigest(SECRET_KEY_PURPOSE, "v1"),
        SESSION_COOKIE_NAME="pooler_admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Forces Secure on every cookie (behind a TLS proxy in front of Envoy); without it a cookie is still
        # Secure whenever the request came over TLS (security.AdminSessionInterface). How long a sign-in lasts
        # is the admin_sessions row's business (DB settings), not the cookie's: it is a browser-session cookie.
        SESSION_COOKIE_SECURE=_env_flag("POOLER_ADMIN_SECURE_COOKIES", False),
        SESSION_COOKIE_PATH=URL_PREFIX,
        # Slightly above 64 KiB so the multipart envelope around a 64 KiB file still fits; the file itself is
        # checked against MAX_UPLOAD_BYTES in the view.
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES + 16 * 1024,
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=False,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.config.update(overrides)
    app.extensions["pooler"] = ctx

    csrf.init_app(app)
    db.init_app(app)
    security.init_app(app)
    filters.init_app(app)
    live.init_app(app)
    _register_blueprints(app)
    return app


def _register_blueprints(app: Flask) -> None:
    from admin_flask.views import (
        accounts,
        activity,
        alerts,
        audit,
        auth,
        dashboard,
        errors,
        jobs,
        keys,
        logs,
        operators,
        pools,
        settings,
    )

    for module in (auth, dashboard, alerts, pools, activity, accounts, keys, logs, audit, jobs, settings, operators):
        app.register_blueprint(module.bp, url_prefix=URL_PREFIX + module.PREFIX)
    from admin_flask.views import invites, onboarding  # OAuth link/relink and invites (own registration)

    for extra in (onboarding, invites):
        extra.register(app, URL_PREFIX)
    errors.init_app(app)
