"""Fixtures for the admin tests: a private migrated database per backend, the app, a client and an `auth` helper.

The admin tests empty every table between tests (bootstrap needs a database without operators), so they use
their own databases, never the session-wide ones other tests share.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete

from pooler.config import load_config
from pooler.context import CoreContext, open_context
from pooler.migrate import upgrade
from pooler.models import Base
from tests.support.databases import throwaway_postgres_database

TEST_KEYS = "t1:" + base64.b64encode(b"k" * 32).decode()
TEST_PEPPER = base64.b64encode(b"p" * 32).decode()
PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def make_context(url: str, tmp: Path) -> CoreContext:
    config = load_config(
        {
            "DATABASE_URL": url,
            "POOLER_SECRET_KEYS": TEST_KEYS,
            "POOLER_KEY_PEPPER": TEST_PEPPER,
            "POOLER_DATA_DIR": str(tmp),
        }
    )
    return open_context(config)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def admin_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('admin') / 'admin.db'}"
        upgrade(url)
        yield url
        return
    with throwaway_postgres_database("pooler_admin") as url:
        upgrade(url)
        yield url


def wipe(ctx: CoreContext) -> None:
    with ctx.session_factory.begin() as session:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "data_versions":
                session.execute(delete(table))


@pytest.fixture
def core_ctx(admin_db_url: str, tmp_path: Path) -> Iterator[CoreContext]:
    ctx = make_context(admin_db_url, tmp_path)
    wipe(ctx)
    yield ctx
    ctx.dispose()


@pytest.fixture
def app(core_ctx: CoreContext) -> Flask:
    from admin_flask import create_app

    return create_app({"POOLER_CONTEXT": core_ctx, "TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


@dataclass
class Auth:
    client: FlaskClient
    ctx: CoreContext

    def token(self, page: str = "/admin/login") -> str:
        return csrf_from(self.client.get(page).get_data(as_text=True))

    def post(self, url: str, data: dict[str, Any] | None = None, page: str = "/admin/", **kw: Any) -> Any:
        payload = {"csrf_token": self.token(page), **(data or {})}
        return self.client.post(url, data=payload, **kw)

    def bootstrap(self, username: str = "owner", password: str = PASSWORD) -> Any:
        token = self.token("/admin/bootstrap")
        return self.client.post(
            "/admin/bootstrap",
            data={"csrf_token": token, "username": username, "password": password, "confirm": password},
        )

    def login(self, username: str = "owner", password: str = PASSWORD, code: str = "") -> Any:
        token = self.token("/admin/login")
        return self.client.post(
            "/admin/login", data={"csrf_token": token, "username": username, "password": password, "code": code}
        )

    def logout(self) -> None:
        self.post("/admin/logout")

    def create_operator(self, username: str, role: str, pool_ids: list[int] | None = None) -> None:
        from pooler.services import operators as ops

        with self.ctx.session_factory.begin() as session:
            ops.create_operator(session, username=username, password=PASSWORD, role=role, pool_ids=pool_ids)

    def enable_totp(self, username: str) -> str:
        from sqlalchemy import select

        from pooler.models import Operator
        from pooler.services import operators as ops

        seed = pyotp.random_base32()
        with self.ctx.session_factory.begin() as session:
            operator = session.scalar(select(Operator).where(Operator.username == username))
            assert operator is not None
            ops.set_totp_seed(self.ctx.box, operator, seed)
        return seed


@pytest.fixture
def auth(client: FlaskClient, core_ctx: CoreContext) -> Auth:
    return Auth(client, core_ctx)


# Test modules star-import this module to get the fixtures (pytest registers fixtures by module attribute).
__all__ = ["admin_db_url", "app", "auth", "client", "core_ctx"]
