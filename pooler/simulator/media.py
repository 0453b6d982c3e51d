"""Files, transcription and images on the simulated backend. Registered by `app.build_app`.

- `POST /backend-api/files` `{"file_name", "file_size", "use_case"}` -> `{"file_id", "upload_url"}`; the file
  belongs to the calling account (as upstream: files are per account).
- `POST /backend-api/files/{id}/uploaded` -> `{"status": "success", "download_url", "file_name"}`; 404
  `file_not_found` from any other account.
- `POST /backend-api/transcribe` (multipart, `file` required) -> `{"text": "..."}`; the journal `note` lists the
  form field names it received.
- `POST /backend-api/images/generations|edits` -> `{"created", "data": [{"b64_json"}]}`.
- Control: `POST /_sim/files/upload_base {"base": "https://..."}` sets the upload URL base (tests of the
  gateway's URL validation point it at a private address).
Journal routes: `files`, `transcribe`, `images`. Nothing about file contents is kept.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from aiohttp import web

from pooler.simulator.accounts import Account
from pooler.simulator.auth import authenticate
from pooler.simulator.bodies import error_body
from pooler.simulator.journal import Entry
from pooler.simulator.state import SimState

STATE_KEY = "state"
FILES_KEY = "sim_files"
UPLOAD_BASE_KEY = "sim_upload_base"
DEFAULT_UPLOAD_BASE = "https://files.oaiusercontent.example/upload"
ONE_PIXEL_PNG = base64.b64encode(bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")).decode()


def _auth(request: web.Request, route: str) -> Account | web.Response:
    state: SimState = request.app[STATE_KEY]
    entry: Entry | None = request.get("sim_entry")
    checked = authenticate(request, state)
    if entry is not None:
        entry.route = route
        claimed = request.headers.get("ChatGPT-Account-Id")
        entry.account = checked.account_id if isinstance(checked, Account) else claimed
        if isinstance(checked, web.Response):
            entry.status = checked.status
    return checked


async def create_file(request: web.Request) -> web.StreamResponse:
    account = _auth(request, "files")
    if isinstance(account, web.Response):
        return account
    try:
        body: Any = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("file_name"), str):
        return web.json_response(error_body("file_name is required.", "invalid_request"), status=400)
    file_id = "file-" + secrets.token_hex(12)
    request.app[FILES_KEY][file_id] = (account.account_id, body["file_name"])
    base = request.app[UPLOAD_BASE_KEY]
    return web.json_response({"file_id": file_id, "upload_url": f"{base}/{file_id}?sig={secrets.token_hex(8)}"})


async def finalize_file(request: web.Request) -> web.StreamResponse:
    account = _auth(request, "files")
    if isinstance(account, web.Response):
        return account
    file_id = request.match_info["file_id"]
    owner = request.app[FILES_KEY].get(file_id)
    if owner is None or owner[0] != account.account_id:
        return web.json_response(error_body("No such file for this account.", "file_not_found"), status=404)
    return web.json_response(
        {"status": "success", "download_url": f"{request.app[UPLOAD_BASE_KEY]}/{file_id}", "file_name": owner[1]}
    )


async def transcribe(request: web.Request) -> web.StreamResponse:
    account = _auth(request, "transcribe")
    if isinstance(account, web.Response):
        return account
    fields: list[str] = []
    size = 0
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        name = getattr(part, "name", None) or "?"
        fields.append(name)
        while chunk := await part.read_chunk():  # type: ignore[union-attr]
            size += len(chunk) if name == "file" else 0
    entry: Entry | None = request.get("sim_entry")
    if entry is not None:
        entry.note = "fields=" + ",".join(fields)
    if "file" not in fields:
        return web.json_response(error_body("file is required.", "invalid_request"), status=400)
    return web.json_response({"text": f"simulated transcription of {size} bytes"})


async def images(request: web.Request) -> web.StreamResponse:
    account = _auth(request, "images")
    if isinstance(account, web.Response):
        return account
    return web.json_response({"created": int(request.app[STATE_KEY].now()), "data": [{"b64_json": ONE_PIXEL_PNG}]})


async def set_upload_base(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    request.app[UPLOAD_BASE_KEY] = str(body.get("base") or DEFAULT_UPLOAD_BASE)
    return web.json_response({"base": request.app[UPLOAD_BASE_KEY]})


def register(app: web.Application) -> None:
    app[FILES_KEY] = {}
    app[UPLOAD_BASE_KEY] = DEFAULT_UPLOAD_BASE
    app.router.add_post("/backend-api/files", create_file)
    app.router.add_post("/backend-api/files/{file_id}/uploaded", finalize_file)
    app.router.add_post("/backend-api/transcribe", transcribe)
    app.router.add_post("/backend-api/images/{kind:generations|edits}", images)
    app.router.add_post("/_sim/files/upload_base", set_upload_base)
