"""``touchpoint worker``: the queue consumers without the HTTP server (scaled mode)."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from bot.app import create_app
from bot.appkeys import PIPELINE
from bot.settings import Settings

log = logging.getLogger("touchpoint.worker")


async def run_worker(settings: Settings) -> None:
    # The same composition root as `serve`, without binding a port.
    app = create_app(settings, run_workers=True)
    runner = web.AppRunner(app)
    await runner.setup()
    log.info("worker.started")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        assert app[PIPELINE] is not None
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("worker.stopped")
