"""``touchpoint set-webhooks``: register our routes with every configured platform."""

from __future__ import annotations

import sys

import aiohttp

from bot.app import build_adapters
from bot.settings import Settings


async def register_all(settings: Settings, base_url: str) -> int:
    base = base_url.rstrip("/")
    if not base.startswith("https://"):
        print("warning: the platforms only call HTTPS URLs; use the public https:// address of this server",
              file=sys.stderr)
    adapters = build_adapters(settings)
    if not adapters:
        print("no channel is configured: set TELEGRAM_BOT_TOKEN, VIBER_AUTH_TOKEN or WHATSAPP_ACCESS_TOKEN first",
              file=sys.stderr)
        return 2
    failed = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for channel, adapter in adapters.items():
            await adapter.start(session)
            try:
                print(await adapter.register_webhook(f"{base}/webhooks/{channel}"))
            except Exception as exc:  # noqa: BLE001 - report every platform, then fail
                failed += 1
                print(f"{channel}: registration failed: {exc}", file=sys.stderr)
            finally:
                await adapter.close()
    return 1 if failed else 0
