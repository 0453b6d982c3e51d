"""One SQLAlchemy session per request. Views commit explicitly; anything uncommitted is rolled back."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from pooler.context import CoreContext


def core() -> CoreContext:
    ctx: CoreContext = current_app.extensions["pooler"]
    return ctx


def get_db() -> Session:
    if "db" not in g:
        g.db = core().session_factory()
    session: Session = g.db
    return session


def _close(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db", None)
    if session is not None:
        session.rollback()
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_close)
