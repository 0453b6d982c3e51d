"""Import auth.json: success, importer errors shown without echoing contents, 64 KiB limit -> 413."""

from __future__ import annotations

import base64
import io
import json
import time

from flask.testing import FlaskClient

from pooler.context import CoreContext
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth

CANARY = "CANARY-9f3b2e"


def _jwt(claims: dict[str, object]) -> str:
    def seg(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg({'alg': 'none', 'typ': 'JWT'})}.{seg(claims)}.{CANARY}sig"


def auth_json(account_id: str = "acct-123") -> str:
    auth_claim = {"chatgpt_account_id": account_id, "chatgpt_plan_type": "plus", "chatgpt_user_id": "user-1"}
    id_token = _jwt({"email": "zoe@example.test", "https://api.openai.com/auth": auth_claim})
    access = _jwt({"exp": int(time.time()) + 3600, "https://api.openai.com/auth": auth_claim})
    return json.dumps(
        {
            "tokens": {
                "id_token": id_token,
                "access_token": access,
                "refresh_token": f"{CANARY}-refresh",
                "account_id": account_id,
            }
        }
    )


def _pool(auth: Auth) -> int:
    response = auth.post(
        "/admin/pools/new",
        {
            "name": "team-x",
            "label": "Team X",
            "strategy": "least-used",
            "sticky_ttl_seconds": 3600,
            "max_attempts": 3,
            "primary_cap_percent": 100,
            "secondary_cap_percent": 100,
        },
        page="/admin/pools/new",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rstrip("/").split("/")[-1])


def test_import_paste_creates_account(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    auth.bootstrap()
    auth.login()
    pool_id = _pool(auth)
    response = auth.post(
        "/admin/accounts/import", {"pool_id": pool_id, "auth_json": auth_json()}, follow_redirects=True
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Imported zoe" in page
    assert "Routable in team-x" in page
    assert CANARY not in page


def test_import_errors_do_not_echo_contents(auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.login()
    pool_id = _pool(auth)
    bad = json.dumps({"tokens": {"id_token": f"{CANARY}-not-a-jwt"}, "note": CANARY})
    response = auth.post("/admin/accounts/import", {"pool_id": pool_id, "auth_json": bad})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Import refused: auth.json is missing tokens" in page
    assert CANARY not in page
    response = auth.post("/admin/accounts/import", {"pool_id": pool_id, "auth_json": f"{{{CANARY}"})
    assert response.status_code == 400 and "not valid JSON" in response.get_data(as_text=True)
    assert CANARY not in response.get_data(as_text=True)


def test_oversized_upload_is_refused_with_413(auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.login()
    pool_id = _pool(auth)
    big = (CANARY * 7000).encode()[: 64 * 1024 + 10]
    response = auth.post(
        "/admin/accounts/import",
        {"pool_id": pool_id, "upload": (io.BytesIO(big), "auth.json")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    assert "limit is 64 KiB" in response.get_data(as_text=True)
    huge = b"x" * (200 * 1024)
    response = auth.post(
        "/admin/accounts/import",
        {"pool_id": pool_id, "upload": (io.BytesIO(huge), "auth.json")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413 and "64 KiB" in response.get_data(as_text=True)


def test_import_and_link_warn_that_the_gateway_owns_the_refresh_token(auth: Auth, client: FlaskClient) -> None:
    auth.bootstrap()
    auth.login()
    _pool(auth)
    for url in ("/admin/accounts/import", "/admin/accounts/"):
        page = client.get(url).get_data(as_text=True)
        assert "the gateway owns this refresh token" in page and "refresh_token_reused" in page
    link = client.get("/admin/onboarding/link").get_data(as_text=True)
    assert "The gateway will own this sign-in's refresh token" in link
