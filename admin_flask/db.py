"""One SQLAlchemy session per request. Views commit explicitly; anything uncommitted is rolled back."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app, flash, g
from sqlalchemy.orm import Session

from pooler.context import CoreContext
from pooler.errors import PoolerError


def core() -> CoreContext:
    ctx: CoreContext = current_app.extensions["pooler"]
    return ctx


def get_db() -> Session:
    if "db" not in g:
        g.db = core().session_factory()
    session: Session = g.db
    return session


def change(call: Callable[[Session], object], done: str) -> bool:
    """Runs one service call in the request's transaction: commit and flash `done`, or roll back and flash the
    service's one-line reason. True when it was committed."""
    db = get_db()
    try:
        call(db)
    except PoolerError as exc:
        db.rollback()
        flash(str(exc), "error")
        return False
    db.commit()
    flash(done, "ok")
    return True


def _close(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db", None)
    if session is not None:
        session.rollback()
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_close)
