"""Fixtures for the adapter tests: the fake platforms on 127.0.0.1 and started adapters."""

from __future__ import annotations

import aiohttp
import pytest
from adapter_support import TG_SECRET, TG_TOKEN, viber_adapter, whatsapp_adapter

from integrations.fakes import FakePlatforms
from integrations.telegram import TelegramAdapter


@pytest.fixture
async def fake():
    platforms = FakePlatforms()
    platforms.timeout_delay = 5.0  # the adapters under test use a 0.5 s timeout
    await platforms.start(port=0)
    yield platforms
    await platforms.stop()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def live(fake, session):
    """The three adapters, started against the fake platforms with a short timeout."""
    env = fake.env()
    adapters = {
        "telegram": TelegramAdapter(TG_TOKEN, TG_SECRET, env["TELEGRAM_API_URL"]),
        "viber": viber_adapter(env["VIBER_API_URL"]),
        "whatsapp": whatsapp_adapter(env["WHATSAPP_API_URL"]),
    }
    for adapter in adapters.values():
        adapter.timeout = 0.5
        await adapter.start(session)
    yield adapters
    for adapter in adapters.values():
        await adapter.close()
