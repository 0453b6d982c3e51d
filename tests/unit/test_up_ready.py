"""`pooler up`'s ready banner and the admin's gunicorn options (every runtime file under POOLER_DATA_DIR)."""

from __future__ import annotations

import re
from pathlib import Path

from admin_flask.__main__ import CONTROL_SOCKET, gunicorn_options
from pooler.config import load_config
from pooler.up import Urls, ready_lines


def test_ready_line_names_every_base_url(tmp_path: Path) -> None:
    config = load_config({"POOLER_DATA_DIR": str(tmp_path), "POOLER_LISTEN_PORT": "8099"})
    lines = ready_lines(Urls.of(config), first_owner=False)
    assert lines == [
        "pooler ready: client http://127.0.0.1:8099  codex http://127.0.0.1:8099/backend-api/codex  "
        "v1 http://127.0.0.1:8099/v1  admin http://127.0.0.1:8099/admin"
    ]
    # Scripts and tests wait for this shape (tests/support/pooler_up.py).
    assert re.match(r"^pooler ready: client (\S+)", lines[0])


def test_ready_banner_says_the_admin_starts_with_the_first_owner(tmp_path: Path) -> None:
    config = load_config({"POOLER_DATA_DIR": str(tmp_path), "POOLER_LISTEN_PORT": "8099"})
    hint = ready_lines(Urls.of(config), first_owner=True)[1]
    assert "open http://127.0.0.1:8099/admin/ to create the first owner" in hint
    assert "pooler admin create-operator" in hint


def test_gunicorn_runtime_files_live_in_the_data_dir(tmp_path: Path) -> None:
    config = load_config({"POOLER_DATA_DIR": str(tmp_path / "stack-a"), "POOLER_ADMIN_PORT": "8181"})
    options = gunicorn_options(config, "127.0.0.1", lambda _server: None)
    assert options["control_socket"] == str((tmp_path / "stack-a").resolve() / CONTROL_SOCKET)
    assert options["bind"] == "127.0.0.1:8181"
    assert options["forwarded_allow_ips"] == "127.0.0.1,::1"
    other = load_config({"POOLER_DATA_DIR": str(tmp_path / "stack-b")})
    assert gunicorn_options(other, "127.0.0.1", lambda _server: None)["control_socket"] != options["control_socket"]
