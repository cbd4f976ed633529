"""Locks: one holder per key, waiters served in arrival order, nothing left behind."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.state.base import StateBackend
from bot.state.redis import RedisBackend


async def test_concurrent_increments_lose_no_update(backend: StateBackend, peer: StateBackend) -> None:
    counter = 0
    inside = 0
    most_inside = 0

    async def increment(owner: StateBackend) -> None:
        nonlocal counter, inside, most_inside
        async with owner.locks.hold("conv:1"):
            inside += 1
            most_inside = max(most_inside, inside)
            value = counter
            await asyncio.sleep(0.002)  # a read-modify-write with an await in between
            counter = value + 1
            inside -= 1

    async with asyncio.timeout(10):
        await asyncio.gather(*(increment(backend if i % 2 else peer) for i in range(30)))

    assert counter == 30
    assert most_inside == 1


async def test_waiters_enter_in_arrival_order(backend: StateBackend, peer: StateBackend) -> None:
    entered: list[int] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with backend.locks.hold("conv:1"):
            first_in.set()
            await release.wait()

    async def waiter(i: int, owner: StateBackend) -> None:
        async with owner.locks.hold("conv:1"):
            entered.append(i)
            await asyncio.sleep(0.001)

    async with asyncio.timeout(10):
        tasks = [asyncio.create_task(holder())]
        await first_in.wait()
        for i in range(6):
            tasks.append(asyncio.create_task(waiter(i, peer if i % 2 else backend)))
            await asyncio.sleep(0.03)  # let each one take its place in line before the next arrives
        release.set()
        await asyncio.gather(*tasks)

    assert entered == list(range(6))


async def test_released_lock_is_handed_over_in_milliseconds(backend: StateBackend, peer: StateBackend) -> None:
    released_at = 0.0
    in_section = asyncio.Event()

    async def holder() -> None:
        nonlocal released_at
        async with backend.locks.hold("conv:1"):
            in_section.set()
            await asyncio.sleep(0.1)
            released_at = time.monotonic()

    async with asyncio.timeout(5):
        task = asyncio.create_task(holder())
        await in_section.wait()
        async with peer.locks.hold("conv:1"):
            handover = time.monotonic() - released_at
        await task

    # Well under the 0.5 s fallback re-check: the waiter was woken, not polling.
    assert handover < 0.15


async def test_different_keys_do_not_wait_for_each_other(backend: StateBackend) -> None:
    a_in, b_in = asyncio.Event(), asyncio.Event()

    async def hold(key: str, mine: asyncio.Event, other: asyncio.Event) -> None:
        async with backend.locks.hold(key):
            mine.set()
            await other.wait()  # deadlocks unless both sections are open at once

    async with asyncio.timeout(3):
        await asyncio.gather(hold("conv:a", a_in, b_in), hold("conv:b", b_in, a_in))


async def test_lock_is_released_when_the_section_raises(backend: StateBackend, peer: StateBackend) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with backend.locks.hold("conv:1"):
            raise RuntimeError("boom")

    async with asyncio.timeout(0.3):
        async with peer.locks.hold("conv:1"):
            pass


async def test_a_cancelled_waiter_does_not_hold_up_the_line(backend: StateBackend, peer: StateBackend) -> None:
    release = asyncio.Event()
    first_in = asyncio.Event()
    entered: list[str] = []

    async def holder() -> None:
        async with backend.locks.hold("conv:1"):
            first_in.set()
            await release.wait()

    async def waiter(name: str, owner: StateBackend) -> None:
        async with owner.locks.hold("conv:1"):
            entered.append(name)

    async with asyncio.timeout(5):
        holding = asyncio.create_task(holder())
        await first_in.wait()
        quitter = asyncio.create_task(waiter("quitter", peer))
        await asyncio.sleep(0.03)
        patient = asyncio.create_task(waiter("patient", backend))
        await asyncio.sleep(0.03)
        quitter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await quitter
        release.set()
        await holding
        started = time.monotonic()
        await patient

    assert entered == ["patient"]
    assert time.monotonic() - started < 0.15


# --------------------------------------------------------------------------- Redis only: dead processes


async def _server_ms(backend: RedisBackend) -> int:
    seconds, micros = await backend.client.time()
    return seconds * 1000 + micros // 1000


async def test_redis_dead_holder_blocks_only_until_its_lease_ends(redis_backend: RedisBackend) -> None:
    lease, _line, _places = redis_backend.locks.keys_for("conv:1")
    await redis_backend.client.set(lease, "holder-that-died", px=400)  # entered, never released

    started = time.monotonic()
    async with asyncio.timeout(3):
        async with redis_backend.locks.hold("conv:1"):
            waited = time.monotonic() - started

    assert 0.35 <= waited < 0.6


async def test_redis_dead_waiter_is_skipped_once_its_place_expires(redis_backend: RedisBackend) -> None:
    _lease, line, places = redis_backend.locks.keys_for("conv:1")
    # A waiter of a process that died: first in line, place valid for 0.4 s more.
    await redis_backend.client.rpush(line, "waiter-that-died")
    await redis_backend.client.hset(places, "waiter-that-died", await _server_ms(redis_backend) + 400)

    started = time.monotonic()
    async with asyncio.timeout(3):
        async with redis_backend.locks.hold("conv:1"):
            waited = time.monotonic() - started

    # After the place expires, the next re-check (at most every 0.5 s) skips it.
    assert 0.35 <= waited < 1.2


async def test_redis_locks_leave_no_keys_behind(make_redis) -> None:
    a, b = await make_redis(), await make_redis()
    release = asyncio.Event()

    async def holder() -> None:
        async with a.locks.hold("conv:1"):
            await release.wait()

    async def waiter(owner: RedisBackend) -> None:
        async with owner.locks.hold("conv:1"):
            await asyncio.sleep(0.001)

    async with asyncio.timeout(5):
        tasks = [asyncio.create_task(holder())]
        await asyncio.sleep(0.02)
        tasks += [asyncio.create_task(waiter(b if i % 2 else a)) for i in range(4)]
        quitter = asyncio.create_task(waiter(b))
        await asyncio.sleep(0.05)
        quitter.cancel()
        release.set()
        await asyncio.gather(*tasks)
        with pytest.raises(asyncio.CancelledError):
            await quitter

    assert await a.client.keys(a.prefix + "*") == []
