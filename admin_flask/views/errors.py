"""Error pages: short, generic, never echoing the request."""

from __future__ import annotations

from typing import Any

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from admin_flask import MAX_UPLOAD_BYTES

MESSAGES = {
    400: "The request was not understood.",
    401: "Sign in first.",
    403: "Your role does not allow this.",
    404: "Not found (or not in your pools).",
    405: "That action is not allowed here.",
    413: f"The upload is too large: auth.json files are limited to {MAX_UPLOAD_BYTES // 1024} KiB.",
    429: "Too many requests.",
}


def _render(status: int, message: str) -> Any:
    return render_template("errors/error.html", status=status, message=message, path=request.path), status


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(_exc: CSRFError) -> Any:
        return _render(400, "The form expired or was not sent from this admin (CSRF check failed). Reload and retry.")

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc: RequestEntityTooLarge) -> Any:
        return _render(413, MESSAGES[413])

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = exc.code or 500
        return _render(code, MESSAGES.get(code, exc.name))
