"""Redis implementations of the state contracts (any number of processes).

Everything lives under one key prefix (``tp:`` by default); no code path
scans key patterns, and every key either expires or is deleted when done.

- Locks: a lease (``SET NX PX``) plus a FIFO line of waiters, both kept by
  Lua scripts. The releaser wakes the next waiter by pushing to that waiter's
  own list, on which it sits in ``BLPOP``: hand-over takes milliseconds, with
  no polling loop and no barging. A dead holder blocks others until its lease
  runs out, a dead waiter until its place in line expires.
- De-duplication: ``SET NX PX``.
- Work queues: one stream per topic with one consumer group; wake-ups that a
  dead process took but never acknowledged are reclaimed (``XAUTOCLAIM``).
- Rate limits: a GCRA token bucket in one script, timed by the Redis server's
  clock so that every process agrees.

Blocking commands (``BLPOP``, ``XREADGROUP BLOCK``) use their own bounded
pool, so waiters can never take every connection from the commands that
would release them; every blocking call has a timeout, so the pool drains.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from bot.state.base import QueueItem

log = logging.getLogger(__name__)

PING_TIMEOUT = 2.0
_CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "protocol": 2,  # one reply shape across redis-py versions; a URL may still override it
    "socket_connect_timeout": 5.0,
}


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


# --------------------------------------------------------------------------- locks

# Shared by both lock scripts: drop waiters whose place in line has expired
# from the head of the line, and return the first live one (or nil).
_LIVE_HEAD = """
local function live_head(now)
  while true do
    local head = redis.call('LINDEX', KEYS[2], 0)
    if not head then return nil end
    local deadline = tonumber(redis.call('HGET', KEYS[3], head))
    if deadline and deadline > now then return head end
    redis.call('LPOP', KEYS[2])
    redis.call('HDEL', KEYS[3], head)
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: lease, line (tokens in arrival order), places (token -> ms deadline).
# ARGV: token, lease ms, place ms.
# Returns -1 once the caller holds the lease, else the lease's remaining ms
# (0 when it is free but another waiter is first in line).
_ACQUIRE = _LIVE_HEAD + """
local token = ARGV[1]
if redis.call('GET', KEYS[1]) == token then return -1 end  -- a retried call that already won
if redis.call('HSET', KEYS[3], token, now + tonumber(ARGV[3])) == 1 then
  redis.call('RPUSH', KEYS[2], token)  -- new here (or dropped as dead): join the end of the line
end
if live_head(now) == token and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('LPOP', KEYS[2])
  redis.call('HDEL', KEYS[3], token)
  redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
  return -1
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
local remaining = redis.call('PTTL', KEYS[1])
if remaining < 0 then return 0 end
return remaining
"""

# KEYS: lease, line, places. ARGV: token, wake-key prefix, place ms.
# Releases the lease if the caller still holds it and leaves the line; then
# wakes whoever is now first. Returns 1 if the caller's lease was released.
_LEAVE = _LIVE_HEAD + """
local token = ARGV[1]
local released = 0
if redis.call('GET', KEYS[1]) == token then
  redis.call('DEL', KEYS[1])
  released = 1
end
redis.call('LREM', KEYS[2], 1, token)
redis.call('HDEL', KEYS[3], token)
redis.call('DEL', ARGV[2] .. token)
if redis.call('EXISTS', KEYS[1]) == 0 then
  local head = live_head(now)
  if head then
    local wake = ARGV[2] .. head
    redis.call('LPUSH', wake, '1')
    redis.call('LTRIM', wake, 0, 0)
    redis.call('PEXPIRE', wake, ARGV[3])
  end
end
return released
"""


class RedisLocks:
    """FIFO lease locks; see the module docstring for the design.

    Args:
        poll: longest single wait; a waiter re-checks at least this often.
        place_ttl: how long a waiter keeps its place in line without
            re-checking; a waiting process that died blocks the line this long.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        blocking: aioredis.Redis,
        prefix: str,
        *,
        poll: float = 0.5,
        place_ttl: float = 5.0,
    ) -> None:
        self._blocking = blocking
        self._prefix = prefix
        self._poll = poll
        self._place_ms = _ms(place_ttl)
        self._acquire = client.register_script(_ACQUIRE)
        self._leave = client.register_script(_LEAVE)

    def keys_for(self, key: str) -> list[str]:
        """The lease, line and places keys of lock ``key`` (tests fake dead processes with them)."""
        return [f"{self._prefix}lease:{key}", f"{self._prefix}line:{key}", f"{self._prefix}places:{key}"]

    @asynccontextmanager
    async def hold(self, key: str, *, ttl: float = 30.0) -> AsyncIterator[None]:
        keys = self.keys_for(key)
        token = uuid.uuid4().hex
        await self._enter(keys, token, ttl)
        try:
            yield
        finally:
            try:
                released = await self._leave(keys=keys, args=[token, self._wake_prefix, self._place_ms])
            except (RedisError, OSError):
                # Do not hide the section's own outcome; the lease ends on its own.
                log.warning("state.lock.release_failed key=%s ttl=%s", key, ttl, exc_info=True)
            else:
                if not released:
                    # The lease ran out mid-section and someone else may have entered;
                    # the conversation's version check is the fence against that.
                    log.warning("state.lock.lease_expired key=%s ttl=%s", key, ttl)

    @property
    def _wake_prefix(self) -> str:
        return f"{self._prefix}wake:"

    async def _enter(self, keys: list[str], token: str, ttl: float) -> None:
        wake_key = self._wake_prefix + token
        try:
            while True:
                remaining_ms = await self._acquire(keys=keys, args=[token, _ms(ttl), self._place_ms])
                if remaining_ms < 0:
                    return
                # Sleep until the releaser pushes our wake-up; also wake when the
                # current lease runs out (its holder may be dead), and at least
                # every `poll` to keep our place in line.
                timeout = self._poll
                if remaining_ms > 0:
                    timeout = min(timeout, remaining_ms / 1000 + 0.002)
                await self._blocking.blpop([wake_key], timeout=max(timeout, 0.01))
        except BaseException:
            # Cancelled or failed while waiting: give up our place (and a lease
            # the last call may have won) so the line does not stall on us.
            try:
                await self._leave(keys=keys, args=[token, self._wake_prefix, self._place_ms])
            except (RedisError, OSError):
                pass  # our place expires on its own after place_ttl
            raise


# --------------------------------------------------------------------------- de-duplication


class RedisDeduplicator:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def first_seen(self, key: str, *, ttl: float) -> bool:
        return bool(await self._client.set(self._prefix + key, "1", nx=True, px=_ms(ttl)))

    async def forget(self, key: str) -> None:
        await self._client.delete(self._prefix + key)


# --------------------------------------------------------------------------- work queues


class RedisQueue:
    """One stream per topic, read through one consumer group by every process.

    Each process is its own consumer (host-pid-random). An entry stays pending
    until acknowledged; one left pending longer than ``reclaim_after`` seconds
    (its taker died, or is very slow) is handed to the next ``take`` anywhere,
    so a wake-up may arrive twice but is never lost.
    """

    GROUP = "workers"

    def __init__(
        self,
        client: aioredis.Redis,
        blocking: aioredis.Redis,
        prefix: str,
        *,
        reclaim_after: float = 30.0,
        max_len: int = 100_000,
    ) -> None:
        self._client = client
        self._blocking = blocking
        self._prefix = prefix
        self._reclaim_ms = _ms(reclaim_after)
        self._max_len = max_len
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._ready: set[str] = set()  # streams whose group we created or found
        self._claim_from: dict[str, str] = {}  # XAUTOCLAIM cursor per stream

    def _stream(self, topic: str) -> str:
        return self._prefix + topic

    async def put(self, topic: str, data: str) -> None:
        await self._client.xadd(self._stream(topic), {"d": data}, maxlen=self._max_len, approximate=True)

    async def take(self, topic: str, *, max_items: int, timeout: float) -> list[QueueItem]:
        stream = self._stream(topic)
        await self._ensure_group(stream)
        try:
            items = await self._reclaim(stream, max_items)
            if not items:
                items = await self._read_new(stream, max_items, timeout)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ready.discard(stream)  # the stream was deleted under us; recreate next time
            return []
        return items

    async def ack(self, topic: str, items: list[QueueItem]) -> None:
        if not items:
            return
        stream = self._stream(topic)
        ids = [item.receipt for item in items]
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.xack(stream, self.GROUP, *ids)
            pipe.xdel(stream, *ids)  # handled wake-ups need not stay in the stream
            await pipe.execute()

    async def retire(self) -> None:
        """Remove this process's consumer from groups where it holds nothing pending."""
        for stream in list(self._ready):
            try:
                pending = await self._client.xpending_range(
                    stream, self.GROUP, min="-", max="+", count=1, consumername=self.consumer
                )
                if not pending:
                    await self._client.xgroup_delconsumer(stream, self.GROUP, self.consumer)
            except ResponseError:
                pass  # the stream or group is gone: nothing of ours left in it

    async def _ensure_group(self, stream: str) -> None:
        if stream in self._ready:
            return
        try:
            # From id 0: wake-ups put before any consumer existed are delivered too.
            await self._client.xgroup_create(stream, self.GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._ready.add(stream)

    async def _reclaim(self, stream: str, max_items: int) -> list[QueueItem]:
        reply = await self._client.xautoclaim(
            stream,
            self.GROUP,
            self.consumer,
            min_idle_time=self._reclaim_ms,
            start_id=self._claim_from.get(stream, "0-0"),
            count=max_items,
        )
        self._claim_from[stream] = reply[0]  # "0-0" once the scan wrapped around
        # An entry trimmed away while pending comes back as (None, None) on
        # Redis 6.2 (7.0+ drops it from the group itself): nothing to deliver.
        return [QueueItem(fields["d"], entry_id) for entry_id, fields in reply[1] if fields]

    async def _read_new(self, stream: str, max_items: int, timeout: float) -> list[QueueItem]:
        if timeout > 0:
            reply = await self._blocking.xreadgroup(
                self.GROUP, self.consumer, {stream: ">"}, count=max_items, block=_ms(timeout)
            )
        else:
            reply = await self._client.xreadgroup(self.GROUP, self.consumer, {stream: ">"}, count=max_items)
        return [QueueItem(fields["d"], entry_id) for entry_id, fields in _entries_of_one_stream(reply)]


def _entries_of_one_stream(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """XREADGROUP's entries: RESP2 ``[[stream, entries]]``, RESP3 ``{stream: [entries]}``."""
    if not reply:
        return []
    if isinstance(reply, dict):
        (batches,) = reply.values()
        return batches[0] if batches else []
    return reply[0][1]


# --------------------------------------------------------------------------- rate limits

# GCRA, the token bucket kept as one number: the "theoretical arrival time"
# (tat) of the next request. Each request moves it on by 1/rate; a request
# may go as soon as tat - (burst - 1)/rate is not in the future. The same
# waits as a bucket whose tokens may go negative, without a refill step.
# A pause pushes the timeline past its end, so what queued up during it
# leaves at the steady rate afterwards rather than in one burst.
# KEYS: bucket hash. ARGV: rate, burst. Returns the wait in seconds (a string).
_TAKE_TOKEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = 1 / tonumber(ARGV[1])
local tolerance = (tonumber(ARGV[2]) - 1) * interval
local state = redis.call('HMGET', KEYS[1], 'tat', 'paused')
local tat = math.max(tonumber(state[1]) or now, now)
local paused = tonumber(state[2])
if paused then tat = math.max(tat, paused + tolerance) end
local wait = math.max(0, tat - tolerance - now)
tat = tat + interval
redis.call('HSET', KEYS[1], 'tat', string.format('%.6f', tat))
-- Once tat has passed, the bucket is full again: the same as no key at all.
local keep = math.ceil((math.max(tat, paused or 0) - now) * 1000) + 1000
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
return string.format('%.6f', wait)
"""

# KEYS: bucket hash. ARGV: seconds. Keeps the later of the old and new pause ends.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = math.max(tonumber(redis.call('HGET', KEYS[1], 'paused')) or 0, now + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'paused', string.format('%.6f', until_))
local keep = math.ceil((until_ - now) * 1000) + 60000
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
return 1
"""


class RedisRateLimiter:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._prefix = prefix
        self._take = client.register_script(_TAKE_TOKEN)
        self._pause = client.register_script(_PAUSE)

    async def acquire(self, key: str, *, rate: float, burst: float) -> float:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate} burst={burst}")
        return float(await self._take(keys=[self._prefix + key], args=[repr(float(rate)), repr(float(burst))]))

    async def pause(self, key: str, seconds: float) -> None:
        if seconds > 0:
            await self._pause(keys=[self._prefix + key], args=[repr(float(seconds))])


# --------------------------------------------------------------------------- backend


class RedisBackend:
    """All shared state in one Redis, so any number of processes cooperate.

    Accepts ``redis://host:port/db``, ``rediss://…`` and ``unix:///path?db=N``.
    Call ``connect()`` once before use; it fails fast on a wrong URL.

    Args:
        prefix: namespace of every key, so several deployments (or tests) can share a server.
        reclaim_after: seconds before a wake-up taken but not acknowledged is
            handed to another consumer; longer than any normal handling.
        max_blocking: connections for blocking calls (lock waiters, queue reads).
    """

    name = "redis"
    multi_process = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tp:",
        reclaim_after: float = 30.0,
        max_blocking: int = 64,
    ) -> None:
        self.prefix = prefix
        self.client = aioredis.Redis.from_url(url, **_CLIENT_OPTIONS)
        # Waiters park here; `timeout=None` queues them for a free connection
        # instead of failing; every blocking call has a timeout, so one frees up.
        self._blocking_pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_blocking, timeout=None, **_CLIENT_OPTIONS
        )
        blocking = aioredis.Redis(connection_pool=self._blocking_pool)
        self._blocking = blocking
        self.locks = RedisLocks(self.client, blocking, prefix + "lock:")
        self.dedup = RedisDeduplicator(self.client, prefix + "seen:")
        self.queue = RedisQueue(self.client, blocking, prefix + "queue:", reclaim_after=reclaim_after)
        self.limiter = RedisRateLimiter(self.client, prefix + "rate:")

    async def connect(self) -> None:
        await self.client.ping()

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.client.ping(), PING_TIMEOUT))
        except (RedisError, OSError, asyncio.TimeoutError):
            return False

    async def close(self) -> None:
        try:
            await self.queue.retire()
        except (RedisError, OSError):
            pass  # Redis gone: nothing to tidy
        await self._blocking.aclose()
        await self._blocking_pool.disconnect()
        await self.client.aclose()
