"""De-duplication: a key is new once per ttl, and can be forgotten."""

from __future__ import annotations

import asyncio

from bot.state.base import StateBackend


async def test_first_time_only(backend: StateBackend, peer: StateBackend) -> None:
    assert await backend.dedup.first_seen("telegram:update:1", ttl=60) is True
    assert await peer.dedup.first_seen("telegram:update:1", ttl=60) is False
    assert await backend.dedup.first_seen("telegram:update:1", ttl=60) is False
    assert await backend.dedup.first_seen("telegram:update:2", ttl=60) is True


async def test_forget_makes_a_key_new_again(backend: StateBackend) -> None:
    assert await backend.dedup.first_seen("viber:msg:7", ttl=60) is True
    await backend.dedup.forget("viber:msg:7")
    assert await backend.dedup.first_seen("viber:msg:7", ttl=60) is True
    assert await backend.dedup.first_seen("viber:msg:7", ttl=60) is False
    await backend.dedup.forget("never-seen")  # harmless


async def test_a_key_is_new_again_after_its_ttl(backend: StateBackend) -> None:
    assert await backend.dedup.first_seen("wa:wamid.1", ttl=0.2) is True
    assert await backend.dedup.first_seen("wa:wamid.1", ttl=0.2) is False
    await asyncio.sleep(0.3)
    assert await backend.dedup.first_seen("wa:wamid.1", ttl=0.2) is True
