"""Account-bound state: what the real backend accepts only on the account that produced it.

- Response ids: `previous_response_id` names a response of the same account; elsewhere (or unknown) the backend
  answers 400 `previous_response_not_found`.
- Encrypted items: `encrypted_content` of `reasoning` and `compaction` input items is sealed to the account that
  produced it (here an HMAC over the account id and a nonce, under the simulator's secret); replayed to another
  account it is 400 `invalid_encrypted_content`.
- Turn state: `x-codex-turn-state` is a routing token the backend issues per account; the client echoes it on the
  later requests of its turn. The simulator knows which account issued each token, so its journal can show an
  echo that reached another account.

Pure functions over plain data; the registries live in `SimState`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SEALED_PREFIX = "gAAAAB"
"""Real encrypted content is a Fernet token (it starts with gAAAA); the sealed form keeps that look."""
NONCE_HEX = 24
MAC_HEX = 32
BOUND_ITEM_TYPES = frozenset(("reasoning", "compaction"))
TURN_STATE_PREFIX = "ts_"


@dataclass(frozen=True, slots=True)
class BoundStateError:
    """The backend's 400 for state that belongs to another account (or to no account)."""

    code: str
    message: str
    param: str | None

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": "invalid_request_error", "param": self.param, "code": self.code}
        return {"error": error}


def _mac(secret: str, account_id: str, nonce: str) -> str:
    digest = hmac.new(secret.encode(), f"sealed\x00{account_id}\x00{nonce}".encode(), hashlib.sha256)
    return digest.hexdigest()[:MAC_HEX]


def seal(secret: str, account_id: str) -> str:
    """Opaque `encrypted_content` that only `account_id` accepts back."""
    nonce = secrets.token_hex(NONCE_HEX // 2)
    return f"{SEALED_PREFIX}{nonce}{_mac(secret, account_id, nonce)}"


def unseals(secret: str, account_id: str, content: object) -> bool:
    if not isinstance(content, str) or not content.startswith(SEALED_PREFIX):
        return False
    rest = content[len(SEALED_PREFIX) :]
    if len(rest) != NONCE_HEX + MAC_HEX:
        return False
    nonce, mac = rest[:NONCE_HEX], rest[NONCE_HEX:]
    return hmac.compare_digest(mac, _mac(secret, account_id, nonce))


def previous_response_error(response_id: str) -> BoundStateError:
    message = f"Previous response with id '{response_id}' not found."
    return BoundStateError("previous_response_not_found", message, "previous_response_id")


def encrypted_content_error(index: int) -> BoundStateError:
    message = "The encrypted content could not be verified. Reason: Encrypted content could not be decrypted or parsed."
    return BoundStateError("invalid_encrypted_content", message, f"input[{index}].encrypted_content")


def check_request(
    body: Mapping[str, Any], account_id: str, response_accounts: Mapping[str, str], secret: str
) -> BoundStateError | None:
    """The first piece of account-bound state in a request body that `account_id` does not own, else None:
    `previous_response_id` (a response of this account), then every reasoning/compaction input item's
    `encrypted_content` (sealed to this account)."""
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or response_accounts.get(previous) != account_id):
        return previous_response_error(str(previous))
    items = body.get("input")
    if not isinstance(items, list):
        return None
    for index, item in enumerate(items):
        if not isinstance(item, dict) or item.get("type") not in BOUND_ITEM_TYPES:
            continue
        content = item.get("encrypted_content")
        if content is not None and not unseals(secret, account_id, content):
            return encrypted_content_error(index)
    return None


def wants_encrypted_reasoning(body: Mapping[str, Any]) -> bool:
    """Codex asks for `include: ["reasoning.encrypted_content"]` (with `store: false` reasoning travels only so)."""
    include = body.get("include")
    return isinstance(include, list) and "reasoning.encrypted_content" in include


def answer_turn_state(echoed: str | None, account_id: str, issuers: dict[str, str]) -> str:
    """The `x-codex-turn-state` this account answers with. An echo of its own token is kept (the turn stays
    routed as it was); no echo, another account's token or an unknown one gets a fresh token of this account,
    recorded in `issuers` (token -> account)."""
    if echoed and issuers.get(echoed) == account_id:
        return echoed
    token = TURN_STATE_PREFIX + secrets.token_urlsafe(18)
    issuers[token] = account_id
    return token
