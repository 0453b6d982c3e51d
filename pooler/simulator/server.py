"""Running the simulator: bind, print the one ready line, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from aiohttp import web

from pooler.simulator import READY_LINE
from pooler.simulator.app import build_app
from pooler.simulator.state import SimConfig


async def serve(config: SimConfig, host: str, port: int) -> None:
    app = build_app(config)
    # No access log (paths of OAuth redirects carry codes) and no automatic decompression (bodies.py does it,
    # including zstd).
    runner = web.AppRunner(app, access_log=None, auto_decompress=False, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port  # the real port when asked for port 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(READY_LINE.format(url=f"http://{host}:{bound}"), flush=True)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()


def run(config: SimConfig, host: str, port: int) -> int:
    asyncio.run(serve(config, host, port))
    sys.stdout.flush()
    return 0
