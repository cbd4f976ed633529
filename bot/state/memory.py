"""In-process implementations of the state contracts (the embedded default).

Valid for exactly one process; ``bot.settings`` refuses a worker-only role
without Redis, since a second process would not share these structures.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, defaultdict, deque
from contextlib import asynccontextmanager
from typing import AsyncIterator

from bot.state.base import QueueItem


class MemoryLocks:
    """One ``asyncio.Lock`` per key (FIFO waiters), removed when nobody holds or waits."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = defaultdict(int)

    @asynccontextmanager
    async def hold(self, key: str, *, ttl: float = 30.0) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if self._users[key] == 0:
                del self._users[key]
                self._locks.pop(key, None)


class MemoryDeduplicator:
    """Keys with expiry in an ordered dict; bounded so it cannot grow forever."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_keys

    async def first_seen(self, key: str, *, ttl: float) -> bool:
        now = time.monotonic()
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        self._seen[key] = now + ttl
        self._seen.move_to_end(key)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return True

    async def forget(self, key: str) -> None:
        self._seen.pop(key, None)


class MemoryQueue:
    """Per-topic FIFO of wake-ups; ``ack`` is a no-op (the database is the truth)."""

    def __init__(self) -> None:
        self._items: dict[str, deque[str]] = defaultdict(deque)
        self._ready: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def put(self, topic: str, data: str) -> None:
        self._items[topic].append(data)
        self._ready[topic].set()

    async def take(self, topic: str, *, max_items: int, timeout: float) -> list[QueueItem]:
        items = self._items[topic]
        deadline = time.monotonic() + timeout
        # Loop: another taker may empty the deque between the wake-up and us.
        while not items:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            event = self._ready[topic]
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                return []
        out: list[QueueItem] = []
        while items and len(out) < max_items:
            out.append(QueueItem(items.popleft(), ""))
        return out

    async def ack(self, topic: str, items: list[QueueItem]) -> None:
        return None


class MemoryRateLimiter:
    """GCRA token buckets in a dict, with pauses for platform retry_after.

    GCRA keeps a bucket as one number, the "theoretical arrival time" (tat)
    of the next request: each request moves it on by 1/rate, and a request may
    go once tat - (burst - 1)/rate is not in the future. It gives the same waits
    as a token bucket whose tokens may go negative. A pause pushes the timeline
    past its end, so what queued up during it leaves at the steady rate, not in
    one burst. ``bot.state.redis`` runs the same algorithm in a Lua script.
    """

    _SWEEP_EVERY = 1024  # acquisitions between drops of idle buckets

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._paused: dict[str, float] = {}
        self._calls = 0

    async def acquire(self, key: str, *, rate: float, burst: float) -> float:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate} burst={burst}")
        now = time.monotonic()
        interval = 1.0 / rate
        tolerance = (burst - 1) * interval
        tat = max(self._tat.get(key, now), now)
        paused = self._paused.get(key)
        if paused is not None:
            tat = max(tat, paused + tolerance)
        self._tat[key] = tat + interval
        self._calls += 1
        if self._calls % self._SWEEP_EVERY == 0:
            self._sweep(now)
        return max(0.0, tat - tolerance - now)

    async def pause(self, key: str, seconds: float) -> None:
        until = time.monotonic() + seconds
        self._paused[key] = max(self._paused.get(key, until), until)

    def _sweep(self, now: float) -> None:
        """Forget buckets that are full again: one per recipient would grow forever."""
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
        for key in [k for k, until in self._paused.items() if until <= now]:
            del self._paused[key]


class MemoryBackend:
    name = "memory"
    multi_process = False

    def __init__(self) -> None:
        self.locks = MemoryLocks()
        self.dedup = MemoryDeduplicator()
        self.queue = MemoryQueue()
        self.limiter = MemoryRateLimiter()

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
