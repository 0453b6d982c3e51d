"""Bearer checks for the backend routes, like the real service: an access token this simulator signed, not
expired (by the simulated clock), for an account that is not revoked, matching `ChatGPT-Account-Id` if sent."""

from __future__ import annotations

from aiohttp import web

from pooler.simulator.accounts import Account
from pooler.simulator.bodies import error_body
from pooler.simulator.state import SimState
from pooler.simulator.tokens import KIND_CLAIM, TokenError, decode_jwt, identity_from_access_claims


def unauthorized(message: str, code: str) -> web.Response:
    return web.json_response(error_body(message, code), status=401)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(request: web.Request, state: SimState) -> Account | web.Response:
    token = bearer(request)
    if token is None:
        return unauthorized("Missing bearer authentication in header", "missing_authorization")
    try:
        claims = decode_jwt(token, state.config.secret)
        if claims.get(KIND_CLAIM) != "access":
            raise TokenError("not an access token")
        ident = identity_from_access_claims(claims)
    except TokenError:
        return unauthorized("Could not validate your token. Please try signing in again.", "invalid_token")
    if float(claims.get("exp", 0)) <= state.now():
        return unauthorized("Provided authentication token is expired. Please try signing in again.", "token_expired")
    claimed = request.headers.get("ChatGPT-Account-Id")
    if claimed is not None and claimed != ident.account_id:
        return unauthorized("The account id does not match the token.", "account_mismatch")
    account = state.account(ident)
    if account.revoked:
        return unauthorized("Your authentication token has been invalidated.", "token_invalidated")
    if account.deactivated:
        return web.json_response(error_body("This account has been deactivated.", "account_deactivated"), status=403)
    return account
