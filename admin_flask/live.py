"""Pages that show live state refresh themselves: base.html marks their content region with the interval (the
`admin_live_refresh_seconds` setting) and static/admin.js re-fetches the page and swaps that region in place,
paused while the operator edits a form."""

from __future__ import annotations

from flask import Flask, request

from admin_flask.db import get_db
from pooler.settings import get_number

LIVE_PAGES = frozenset({"dashboard.index", "pools.show", "accounts.index", "alerts.index", "jobs.index"})


def init_app(app: Flask) -> None:
    @app.context_processor
    def live_refresh() -> dict[str, int]:
        if request.endpoint not in LIVE_PAGES:
            return {}
        return {"live_refresh": int(get_number(get_db(), "admin_live_refresh_seconds"))}
