"""Maps settings to a state backend: memory by default, Redis when a URL is set."""

from __future__ import annotations

from bot.state.base import StateBackend


async def create_backend(redis_url: str | None) -> StateBackend:
    if not redis_url:
        from bot.state.memory import MemoryBackend

        return MemoryBackend()
    from bot.state.redis import RedisBackend

    backend = RedisBackend(redis_url)
    await backend.connect()
    return backend
