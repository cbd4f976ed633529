"""Helpers for the adapter tests: the webhook fixture corpus and adapters with test credentials.

A plain module (not conftest) so test files can import it by a unique name.
"""

from __future__ import annotations

import functools
from pathlib import Path

import orjson

from integrations.telegram import TelegramAdapter
from integrations.viber import ViberAdapter
from integrations.whatsapp import WhatsAppAdapter

# shared/ sits beside the repository, here and in CI.
FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"

TG_TOKEN = "7000000001:TEST-token"
TG_SECRET = "test-secret_0123456789abcdefABCDEF"
VIBER_TOKEN = "4fdbb3a7e5e1b6a2-test-viber-token"
WA_TOKEN = "EAAtest-access-token"
WA_PHONE_ID = "106540000000101"
WA_APP_SECRET = "test-app-secret"
WA_VERIFY = "test-verify-token"


def fixture_bytes(platform: str, name: str) -> bytes:
    return (FIXTURES / platform / name).read_bytes()


def fixture_json(platform: str, name: str) -> dict:
    return orjson.loads(fixture_bytes(platform, name))


def fixture_names(platform: str) -> list[str]:
    return sorted(p.name for p in (FIXTURES / platform).glob("*.json"))


@functools.cache  # parsing and rendering are stateless; building a Bot costs an SSL context
def telegram_adapter(api_url: str = "https://api.telegram.org", secret: str = TG_SECRET) -> TelegramAdapter:
    return TelegramAdapter(TG_TOKEN, secret, api_url)


def viber_adapter(api_url: str = "https://chatapi.viber.com/pa", bot_name: str = "Example Shop") -> ViberAdapter:
    return ViberAdapter(VIBER_TOKEN, bot_name, api_url)


def whatsapp_adapter(api_url: str = "https://graph.facebook.com/v21.0") -> WhatsAppAdapter:
    return WhatsAppAdapter(WA_TOKEN, WA_PHONE_ID, WA_APP_SECRET, WA_VERIFY, api_url)


