"""Rate limits: a burst goes at once, the rest is spaced at the rate, pauses hold everything back.

The limiter only returns waits (callers sleep them), so these tests check the
returned values and never sleep for long.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.state.base import StateBackend


async def test_burst_goes_at_once_then_one_per_interval(backend: StateBackend, peer: StateBackend) -> None:
    waits = [
        await (backend if n % 2 else peer).limiter.acquire("telegram:bot", rate=10, burst=3)
        for n in range(7)
    ]

    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.03)


async def test_buckets_are_independent(backend: StateBackend) -> None:
    assert await backend.limiter.acquire("chat:1", rate=1, burst=1) == 0.0
    assert await backend.limiter.acquire("chat:1", rate=1, burst=1) == pytest.approx(1.0, abs=0.03)
    assert await backend.limiter.acquire("chat:2", rate=1, burst=1) == 0.0


async def test_the_bucket_refills_over_time(backend: StateBackend) -> None:
    assert await backend.limiter.acquire("chat:1", rate=20, burst=1) == 0.0
    assert await backend.limiter.acquire("chat:1", rate=20, burst=1) == pytest.approx(0.05, abs=0.02)
    await asyncio.sleep(0.15)
    assert await backend.limiter.acquire("chat:1", rate=20, burst=1) == 0.0


async def test_pause_delays_the_next_acquire_then_resumes_at_the_rate(
    backend: StateBackend, peer: StateBackend
) -> None:
    await peer.limiter.pause("whatsapp:phone", 0.5)  # e.g. a 429 with retry_after

    waits = [await backend.limiter.acquire("whatsapp:phone", rate=10, burst=5) for _ in range(3)]

    # What queued up during the pause leaves at the steady rate, not in one burst.
    assert waits == pytest.approx([0.5, 0.6, 0.7], abs=0.03)
    assert await backend.limiter.acquire("whatsapp:other", rate=10, burst=5) == 0.0


async def test_a_shorter_pause_does_not_cut_a_longer_one(backend: StateBackend) -> None:
    await backend.limiter.pause("viber:bot", 0.6)
    await backend.limiter.pause("viber:bot", 0.1)

    assert await backend.limiter.acquire("viber:bot", rate=100, burst=10) == pytest.approx(0.6, abs=0.03)


async def test_an_ended_pause_no_longer_delays(backend: StateBackend) -> None:
    await backend.limiter.pause("viber:bot", 0.05)
    await asyncio.sleep(0.1)

    assert await backend.limiter.acquire("viber:bot", rate=100, burst=1) == 0.0


async def test_invalid_rates_are_refused(backend: StateBackend) -> None:
    with pytest.raises(ValueError):
        await backend.limiter.acquire("k", rate=0, burst=1)
    with pytest.raises(ValueError):
        await backend.limiter.acquire("k", rate=1, burst=0.5)
