"""Contracts for shared state: locks, de-duplication, work queues, rate limits.

Two implementations fulfil them, ``memory`` (one process) and ``redis`` (any
number of processes); ``tests/contract`` runs the same tests against both.
The database is the truth for inbox and outbox rows: queues only carry
wake-ups (at least once), so a lost or repeated wake-up is harmless.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One wake-up taken from a queue; ``ack`` it once the work is durable."""

    data: str
    receipt: str  # implementation-specific handle for ack


class Locks(Protocol):
    def hold(self, key: str, *, ttl: float = 30.0) -> AbstractAsyncContextManager[None]:
        """Exclusive section for ``key``; waiters enter one at a time.

        ``ttl`` bounds how long a crashed holder can block others (Redis).
        """


class Deduplicator(Protocol):
    async def first_seen(self, key: str, *, ttl: float) -> bool:
        """True the first time ``key`` is seen within ``ttl`` seconds."""

    async def forget(self, key: str) -> None:
        """Make ``key`` unseen again (the durable write that followed failed)."""


class WorkQueue(Protocol):
    async def put(self, topic: str, data: str) -> None:
        """Append a wake-up to ``topic``."""

    async def take(self, topic: str, *, max_items: int, timeout: float) -> list[QueueItem]:
        """Up to ``max_items`` wake-ups, waiting at most ``timeout`` seconds for the first."""

    async def ack(self, topic: str, items: list[QueueItem]) -> None:
        """Mark wake-ups handled; unacknowledged ones are redelivered eventually."""


class RateLimiter(Protocol):
    async def acquire(self, key: str, *, rate: float, burst: float) -> float:
        """Take one token from bucket ``key``; returns seconds to wait first (0 if none).

        The caller sleeps the returned time; the token is already reserved.
        """

    async def pause(self, key: str, seconds: float) -> None:
        """Nothing may be taken from ``key`` for ``seconds`` (a platform's retry_after)."""


class StateBackend(Protocol):
    locks: Locks
    dedup: Deduplicator
    queue: WorkQueue
    limiter: RateLimiter
    name: str
    multi_process: bool

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
