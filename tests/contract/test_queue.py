"""Work queues: FIFO wake-ups, bounded waits, one taker per item, redelivery if unacknowledged."""

from __future__ import annotations

import asyncio
import time

from bot.state.base import StateBackend


async def test_items_come_out_in_order_and_respect_max_items(backend: StateBackend) -> None:
    for n in range(5):
        await backend.queue.put("inbox", f"event-{n}")

    first = await backend.queue.take("inbox", max_items=3, timeout=1)
    second = await backend.queue.take("inbox", max_items=10, timeout=1)
    await backend.queue.ack("inbox", first + second)

    assert [item.data for item in first] == ["event-0", "event-1", "event-2"]
    assert [item.data for item in second] == ["event-3", "event-4"]


async def test_take_on_an_empty_topic_returns_nothing_after_the_timeout(backend: StateBackend) -> None:
    started = time.monotonic()
    items = await backend.queue.take("inbox", max_items=5, timeout=0.3)
    waited = time.monotonic() - started

    assert items == []
    assert 0.25 <= waited < 0.8


async def test_a_waiting_take_wakes_as_soon_as_an_item_arrives(backend: StateBackend, peer: StateBackend) -> None:
    taking = asyncio.create_task(backend.queue.take("outbox", max_items=5, timeout=5))
    await asyncio.sleep(0.05)
    put_at = time.monotonic()
    await peer.queue.put("outbox", "message-1")
    items = await asyncio.wait_for(taking, 2)

    assert [item.data for item in items] == ["message-1"]
    assert time.monotonic() - put_at < 0.2
    await backend.queue.ack("outbox", items)


async def test_topics_are_independent(backend: StateBackend) -> None:
    await backend.queue.put("inbox", "in-1")
    await backend.queue.put("outbox", "out-1")

    outbox = await backend.queue.take("outbox", max_items=10, timeout=1)
    inbox = await backend.queue.take("inbox", max_items=10, timeout=1)

    assert [item.data for item in outbox] == ["out-1"]
    assert [item.data for item in inbox] == ["in-1"]


async def test_two_consumers_never_both_receive_an_item(backend: StateBackend, peer: StateBackend) -> None:
    expected = {f"event-{n}" for n in range(60)}
    received: dict[str, list[str]] = {"a": [], "b": []}

    async def consume(name: str, owner: StateBackend) -> None:
        while len(received["a"]) + len(received["b"]) < len(expected):
            items = await owner.queue.take("inbox", max_items=4, timeout=0.2)
            received[name] += [item.data for item in items]
            await owner.queue.ack("inbox", items)
            await asyncio.sleep(0)  # give the other consumer a turn

    async def produce() -> None:
        for n in range(60):
            await peer.queue.put("inbox", f"event-{n}")
            if n % 10 == 0:
                await asyncio.sleep(0.01)

    async with asyncio.timeout(10):
        await asyncio.gather(produce(), consume("a", backend), consume("b", peer))

    both = received["a"] + received["b"]
    assert len(both) == len(set(both)) == len(expected)
    assert set(both) == expected
    # Each consumer saw its share in production order.
    for name in ("a", "b"):
        assert received[name] == sorted(received[name], key=lambda d: int(d.split("-")[1]))
