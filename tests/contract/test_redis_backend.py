"""What only the Redis backend promises: URLs, health, redelivery, and tidiness."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import redis.asyncio as aioredis

from bot.state.factory import create_backend
from bot.state.memory import MemoryBackend
from bot.state.redis import RedisBackend
from tests.support.servers import start_redis


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_factory_picks_redis_for_a_url_and_memory_without(redis_url: str) -> None:
    scaled = await create_backend(redis_url)
    embedded = await create_backend("")
    try:
        assert (scaled.name, scaled.multi_process) == ("redis", True)
        assert isinstance(scaled, RedisBackend)
        assert await scaled.ping() is True
        assert (embedded.name, embedded.multi_process) == ("memory", False)
        assert isinstance(embedded, MemoryBackend)
    finally:
        await scaled.close()
        await embedded.close()


async def test_tcp_urls_and_database_numbers_are_honoured(tmp_path: Path) -> None:
    url, stop = start_redis(tmp_path, tcp=True)
    try:
        assert url.startswith("redis://127.0.0.1:")
        base = url.rsplit("/", 1)[0]
        db3 = RedisBackend(f"{base}/3")
        await db3.connect()
        await db3.dedup.first_seen("update:1", ttl=60)
        raw0 = aioredis.Redis.from_url(f"{base}/0")
        raw3 = aioredis.Redis.from_url(f"{base}/3")
        try:
            assert await raw3.exists("tp:seen:update:1") == 1
            assert await raw0.exists("tp:seen:update:1") == 0
        finally:
            await raw0.aclose()
            await raw3.aclose()
            await db3.close()
    finally:
        stop()


async def test_ping_is_false_not_an_error_when_redis_is_unreachable(tmp_path: Path) -> None:
    nobody = RedisBackend(f"redis://127.0.0.1:{_unused_port()}/0")
    started = time.monotonic()
    assert await nobody.ping() is False
    assert time.monotonic() - started < 3
    await nobody.close()

    url, stop = start_redis(tmp_path)
    backend = RedisBackend(url)
    await backend.connect()
    assert await backend.ping() is True
    stop()
    assert await backend.ping() is False
    await backend.close()


async def test_an_unacknowledged_item_is_redelivered_to_another_consumer(make_redis) -> None:
    dies, survives = await make_redis(reclaim_after=0.3), await make_redis(reclaim_after=0.3)
    await dies.queue.put("inbox", "event-1")
    taken = await dies.queue.take("inbox", max_items=10, timeout=1)
    assert [item.data for item in taken] == ["event-1"]
    # `dies` never acknowledges: its process is gone.

    assert await survives.queue.take("inbox", max_items=10, timeout=0.1) == []  # not yet idle long enough
    await asyncio.sleep(0.35)
    redelivered = await survives.queue.take("inbox", max_items=10, timeout=1)
    assert [item.data for item in redelivered] == ["event-1"]
    await survives.queue.ack("inbox", redelivered)

    await asyncio.sleep(0.35)
    assert await survives.queue.take("inbox", max_items=10, timeout=0.1) == []  # acknowledged: gone for good


async def test_acknowledged_items_leave_the_stream_and_closed_consumers_leave_the_group(make_redis) -> None:
    backend = await make_redis()
    for n in range(3):
        await backend.queue.put("outbox", f"message-{n}")
    items = await backend.queue.take("outbox", max_items=10, timeout=1)
    await backend.queue.ack("outbox", items)
    stream = backend.prefix + "queue:outbox"

    assert await backend.client.xlen(stream) == 0
    assert [c["name"] for c in await backend.client.xinfo_consumers(stream, "workers")] == [backend.queue.consumer]

    raw = backend.client
    await backend.queue.retire()
    assert await raw.xinfo_consumers(stream, "workers") == []


async def test_a_consumer_with_pending_items_stays_in_the_group_on_close(make_redis) -> None:
    backend = await make_redis()
    await backend.queue.put("outbox", "message-1")
    await backend.queue.take("outbox", max_items=10, timeout=1)  # taken, never acknowledged
    stream = backend.prefix + "queue:outbox"

    await backend.queue.retire()

    consumers = await backend.client.xinfo_consumers(stream, "workers")
    assert [(c["name"], c["pending"]) for c in consumers] == [(backend.queue.consumer, 1)]


async def test_items_put_before_any_consumer_exists_are_delivered(make_redis) -> None:
    producer = await make_redis()
    await producer.queue.put("push", "job-1")
    consumer = await make_redis()

    items = await consumer.queue.take("push", max_items=10, timeout=1)

    assert [item.data for item in items] == ["job-1"]


async def test_rate_limit_keys_expire_when_idle(make_redis) -> None:
    backend = await make_redis()
    await backend.limiter.acquire("chat:1", rate=10, burst=2)
    ttl_ms = await backend.client.pttl(backend.prefix + "rate:chat:1")

    assert 0 < ttl_ms <= 1200  # full again after 0.1 s, plus a second's margin
