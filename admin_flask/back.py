"""Actions act in place: a form posted from a card names the page (and the card's anchor) to return to.

Only a path of this admin is accepted, so a crafted `back` can never send the operator to another site.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import redirect, request

FIELD = "back"


def safe_target(value: str | None, prefix: str) -> str | None:
    """`value` when it is a path under `prefix` on this host (query and anchor allowed), else None."""
    if not value or len(value) > 2000 or "\\" in value or any(ord(c) < 32 for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith(prefix + "/") or value.startswith("//"):
        return None
    return value


def redirect_back(default: str) -> Any:
    """Back to the posted page and anchor when it is one of ours, else to `default`."""
    from admin_flask import URL_PREFIX

    return redirect(safe_target(request.form.get(FIELD), URL_PREFIX) or default)
