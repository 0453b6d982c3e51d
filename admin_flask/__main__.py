"""`python -m admin_flask`: the admin under gunicorn on 127.0.0.1:POOLER_ADMIN_PORT.

Prints one fixed line, `admin ready on http://127.0.0.1:<port>/admin`, once the workers can serve, so
supervisors and tests wait for it instead of sleeping.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from pooler.config import Config, load_config
from pooler.errors import ConfigError

READY_LINE = "admin ready on http://{host}:{port}/admin"


class AdminServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from admin_flask import create_app

        return create_app()


CONTROL_SOCKET = "admin-gunicorn.ctl"
"""gunicorn's control socket, in POOLER_DATA_DIR: its default ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl) is
one path per user, so a second stack on the host would delete the first one's socket."""


def gunicorn_options(config: Config, host: str, when_ready: Callable[[Any], None]) -> dict[str, Any]:
    return {
        "bind": f"{host}:{config.admin_port}",
        "workers": int(os.environ.get("POOLER_ADMIN_WORKERS", "2")),
        "threads": 4,
        "worker_class": "gthread",
        "timeout": 30,
        "graceful_timeout": 5,
        # Load the app in the master so a broken config fails once, loudly, before the ready line.
        "preload_app": True,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": config.log_level.lower(),
        "when_ready": when_ready,
        "proc_name": "pooler-admin",
        # Every runtime file of a stack lives under its data dir (a too-long path only costs gunicorn a warning).
        "control_socket": str(config.data_dir.resolve() / CONTROL_SOCKET),
        # X-Forwarded-Proto (request.scheme) is believed from this host only: Envoy, which sets it itself.
        "forwarded_allow_ips": "127.0.0.1,::1",
    }


def main() -> int:
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"admin: configuration error: {exc}", file=sys.stderr)
        return 2
    host = os.environ.get("POOLER_ADMIN_HOST", "127.0.0.1")
    ready = READY_LINE.format(host=host, port=config.admin_port)

    def when_ready(_server: Any) -> None:
        print(ready, flush=True)

    config.data_dir.mkdir(parents=True, exist_ok=True)
    AdminServer(gunicorn_options(config, host, when_ready)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
