"""`/v1` path classification and the `/v1/models` listings.

The model list is the pool's allow-list (narrowed by the key's, when it has one); a pool that allows every
model lists `DEFAULT_MODELS`, the Codex models a subscription account can use.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from pooler.v1.errors import model_not_found

DEFAULT_MODELS = (
    "gpt-5.1-codex",
    "gpt-5.1-codex-max",
    "gpt-5.1-codex-mini",
    "gpt-5.1",
    "gpt-5.2",
    "gpt-5.2-codex",
    "gpt-5-codex",
    "gpt-5",
)
MODEL_CREATED = 1_735_689_600  # a fixed date (2025-01-01): the listing is deterministic
OWNER = "openai"


class V1Route(StrEnum):
    MODELS = "models"
    MODEL = "model"
    RESPONSES = "responses"
    CHAT = "chat_completions"
    UNSUPPORTED = "unsupported"


def classify(method: str, path: str) -> tuple[V1Route, str]:
    """(route, model id for MODEL else ""); anything not built yet is UNSUPPORTED."""
    path = path.split("?", 1)[0].rstrip("/")
    method = method.upper()
    if method == "POST" and path == "/v1/responses":
        return V1Route.RESPONSES, ""
    if method == "POST" and path == "/v1/chat/completions":
        return V1Route.CHAT, ""
    if method == "GET" and path == "/v1/models":
        return V1Route.MODELS, ""
    if method == "GET" and path.startswith("/v1/models/") and len(path) > len("/v1/models/"):
        return V1Route.MODEL, path[len("/v1/models/") :]
    return V1Route.UNSUPPORTED, ""


def available_models(pool_allowed: Sequence[str] | None, key_allowed: Sequence[str] | None = None) -> list[str]:
    models = list(pool_allowed) if pool_allowed else list(DEFAULT_MODELS)
    if key_allowed:
        allowed = set(key_allowed)
        models = [m for m in models if m in allowed] if pool_allowed else list(key_allowed)
    return list(dict.fromkeys(models))


def model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": OWNER}


def list_models(pool_allowed: Sequence[str] | None, key_allowed: Sequence[str] | None = None) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in available_models(pool_allowed, key_allowed)]}


def get_model(
    model: str, pool_allowed: Sequence[str] | None, key_allowed: Sequence[str] | None = None
) -> dict[str, Any]:
    if model not in available_models(pool_allowed, key_allowed):
        raise model_not_found(model)
    return model_object(model)
