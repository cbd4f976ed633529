"""The pipeline with real SQLite and real backends: ordering, concurrency, crash recovery, retries."""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import orjson
import pytest
from sqlalchemy import text

from bot.app import migrate
from bot.db import Database
from bot.events import Inbound, Kind
from bot.messages import Outbound, SendResult
from bot.pipeline import Pipeline
from bot.state.factory import create_backend
from bot.turn import TurnInput, TurnResult
from integrations.base import InboxItem
from integrations.console import ConsoleAdapter


class RecordingEngine:
    """Echoes every text and records the order and overlap of turns."""

    def __init__(self, delay: float = 0.0, replies: int = 1) -> None:
        self.replies = replies
        self.seen: dict[str, list[str]] = {}
        self.active = 0
        self.max_active = 0
        self.delay = delay

    async def handle(self, inp: TurnInput) -> TurnResult:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                await asyncio.sleep(random.uniform(0, self.delay))
            self.seen.setdefault(inp.event.address, []).append(inp.event.text)
            return TurnResult(state=inp.state, messages=[Outbound(text=f"echo {inp.event.text}")] * self.replies)
        finally:
            self.active -= 1


class FlakyConsole(ConsoleAdapter):
    """A console that fails the first sends with a platform-style answer."""

    def __init__(self, results: list[SendResult]) -> None:
        super().__init__(write=self.lines_append)
        self.lines: list[str] = []
        self.results = results

    def lines_append(self, line: str) -> None:
        self.lines.append(line)

    async def send(self, address: str, out: Outbound, *, start_part: int = 0) -> SendResult:
        if self.results:
            return self.results.pop(0)
        return await super().send(address, out, start_part=start_part)


async def fresh_postgres_database(server_url: str) -> str:
    """A new, empty database on the session's PostgreSQL server."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(
        user=url.username, database=url.database, host=url.query.get("host") or url.host, port=url.port
    )
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return url.set(database=name).render_as_string(hide_password=False)


def event(address: str, text_: str) -> Inbound:
    return Inbound(channel="console", address=address, event_id=uuid.uuid4().hex, kind=Kind.TEXT, text=text_)


@pytest.fixture(params=["memory", "redis", "postgres+redis"])
async def parts(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    if request.param == "postgres+redis":
        url = await fresh_postgres_database(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}"
    await migrate(url)
    redis_url = request.getfixturevalue("redis_url") if "redis" in request.param else None
    if redis_url:
        import redis.asyncio as aioredis

        client = aioredis.from_url(redis_url)
        await client.flushdb()
        await client.aclose()
    made: list[Any] = []

    async def pipeline(engine: Any, adapter: ConsoleAdapter | None = None, workers: bool = True) -> Pipeline:
        db = Database(url)
        await db.start()
        backend = await create_backend(redis_url)
        p = Pipeline(db=db, backend=backend, adapters={"console": adapter or ConsoleAdapter(write=lambda _l: None)}, engine=engine)
        made.append(p)
        if workers:
            await p.recover()
            p.start_workers()
        return p

    yield {"pipeline": pipeline, "url": url, "backend": "redis" if redis_url else "memory"}
    for p in made:
        await p.stop()
        await p.db.close()
        await p.backend.close()


async def wait_idle(p: Pipeline, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        def count(conn: Any) -> int:
            a = conn.execute(text("SELECT count(*) FROM inbox WHERE status='pending'")).scalar_one()
            b = conn.execute(text("SELECT count(*) FROM outbox WHERE status='pending'")).scalar_one()
            return a + b

        if await p.db.read(count) == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not idle")


async def test_one_conversation_in_order_while_conversations_run_concurrently(parts: dict[str, Any]) -> None:
    engine = RecordingEngine(delay=0.005)
    consumers = [await parts["pipeline"](engine)]
    if parts["backend"] == "redis":
        consumers.append(await parts["pipeline"](engine))  # a second process sharing DB and Redis
    producer = consumers[0]
    conversations = [f"c{i}" for i in range(8)]
    sent: dict[str, list[str]] = {c: [] for c in conversations}

    async def burst(address: str) -> None:
        console = producer.adapters["console"]
        for n in range(25):
            message = f"{address}-{n}"
            sent[address].append(message)
            await producer.accept("console", [console.item(event(address, message))])  # type: ignore[attr-defined]

    await asyncio.gather(*(burst(c) for c in conversations))
    await wait_idle(producer)
    for address in conversations:
        assert engine.seen[address] == sent[address]
    assert engine.max_active > 1  # different conversations overlapped
    replies = await producer.db.read(
        lambda conn: list(conn.execute(text("SELECT address, payload FROM outbox WHERE status='sent' ORDER BY id")))
    )
    assert len(list(replies)) == 8 * 25


async def test_events_stored_before_a_crash_are_processed_once_after_restart(parts: dict[str, Any]) -> None:
    first_engine = RecordingEngine()
    crashed = await parts["pipeline"](first_engine, workers=False)  # acked, never processed
    console = crashed.adapters["console"]
    for n in range(5):
        await crashed.accept("console", [console.item(event("alice", f"m{n}"))])  # type: ignore[attr-defined]
    assert first_engine.seen == {}
    await crashed.stop()

    lines: list[str] = []
    engine = RecordingEngine()
    restarted = await parts["pipeline"](engine, ConsoleAdapter(write=lines.append))
    await wait_idle(restarted)
    assert engine.seen["alice"] == [f"m{n}" for n in range(5)]
    assert lines == [f"echo m{n}" for n in range(5)]
    # a further restart sends nothing again
    again_lines: list[str] = []
    again = await parts["pipeline"](RecordingEngine(), ConsoleAdapter(write=again_lines.append))
    await wait_idle(again)
    await asyncio.sleep(0.1)
    assert again_lines == []


async def test_retry_after_is_honoured_and_order_is_kept(parts: dict[str, Any]) -> None:
    adapter = FlakyConsole([SendResult("retry", retry_after=0.3, error="429"), SendResult("retry", error="502")])
    p = await parts["pipeline"](RecordingEngine(), adapter)
    console = p.adapters["console"]
    started = asyncio.get_running_loop().time()
    for n in range(3):
        await p.accept("console", [console.item(event("bob", f"m{n}"))])  # type: ignore[attr-defined]
    await wait_idle(p)
    assert adapter.lines == ["echo m0", "echo m1", "echo m2"]
    assert asyncio.get_running_loop().time() - started >= 0.3
    rows = list(await p.db.read(lambda conn: list(conn.execute(text("SELECT attempts, status FROM outbox ORDER BY id")))))
    assert [r.status for r in rows] == ["sent", "sent", "sent"]
    assert rows[0].attempts == 3


async def test_blocked_recipient_gets_nothing_more_until_they_write_again(parts: dict[str, Any]) -> None:
    adapter = FlakyConsole([SendResult("blocked", error="Forbidden: bot was blocked by the user")])
    engine = RecordingEngine(replies=3)
    p = await parts["pipeline"](engine, adapter)
    console = p.adapters["console"]
    await p.accept("console", [console.item(event("carol", "one"))])  # type: ignore[attr-defined]
    await wait_idle(p)
    assert adapter.lines == []  # the first reply found the block; the two behind it were not sent
    rows = list(await p.db.read(lambda conn: list(conn.execute(text("SELECT status FROM outbox ORDER BY id")))))
    assert [r.status for r in rows] == ["blocked", "blocked", "blocked"]
    identity = list(await p.db.read(lambda conn: list(conn.execute(text("SELECT blocked_at FROM channel_identity")))))
    assert identity[0].blocked_at is not None
    # writing to the bot again proves the customer can be reached
    await p.accept("console", [console.item(event("carol", "two"))])  # type: ignore[attr-defined]
    await wait_idle(p)
    assert adapter.lines == ["echo two", "echo two", "echo two"]


async def test_permanent_failure_is_not_retried(parts: dict[str, Any]) -> None:
    adapter = FlakyConsole([SendResult("failed", error="400 Bad Request")])
    p = await parts["pipeline"](RecordingEngine(), adapter)
    console = p.adapters["console"]
    await p.accept("console", [console.item(event("dave", "one"))])  # type: ignore[attr-defined]
    await p.accept("console", [console.item(event("dave", "two"))])  # type: ignore[attr-defined]
    await wait_idle(p)
    assert adapter.lines == ["echo two"]
    rows = list(await p.db.read(lambda conn: list(conn.execute(text("SELECT status, last_error FROM outbox ORDER BY id")))))
    assert [r.status for r in rows] == ["failed", "sent"]


class Channel(ConsoleAdapter):
    """A console under another channel name, recording (address, text, time)."""

    def __init__(self, name: str) -> None:
        super().__init__(write=lambda _line: None)
        self.channel = name
        self.sent: list[tuple[str, str, float]] = []

    async def send(self, address: str, out: Outbound, *, start_part: int = 0) -> SendResult:
        self.sent.append((address, out.text, asyncio.get_running_loop().time()))
        return SendResult("sent", platform_message_id=str(len(self.sent)), parts_sent=1)


def channel_event(channel: str, address: str, text_: str) -> Inbound:
    return Inbound(channel=channel, address=address, event_id=uuid.uuid4().hex, kind=Kind.TEXT, text=text_)


async def test_a_rate_limited_channel_does_not_hold_up_the_others(tmp_path: Path) -> None:
    from bot.pipeline import RateLimit
    from bot.state.memory import MemoryBackend

    url = f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}"
    await migrate(url)
    db = Database(url)
    slow, fast = Channel("slow"), Channel("fast")
    p = Pipeline(
        db=db, backend=MemoryBackend(), adapters={"slow": slow, "fast": fast}, engine=RecordingEngine(),
        rate_limits={"slow": RateLimit(per_second=5, burst=1)}, concurrency=4,
    )
    p.start_workers()
    try:
        for n in range(20):  # 20 conversations on a channel that sends 5 per second
            await p.accept("slow", [InboxItem(uuid.uuid4().hex, f"s{n}", orjson.dumps(channel_event("slow", f"s{n}", "hi").to_dict()))])
        await asyncio.sleep(0.3)
        started = asyncio.get_running_loop().time()
        await p.accept("fast", [InboxItem("f1", "f", orjson.dumps(channel_event("fast", "f", "hello").to_dict()))])
        while not fast.sent and asyncio.get_running_loop().time() - started < 3:
            await asyncio.sleep(0.01)
        assert fast.sent and fast.sent[0][2] - started < 0.5  # not behind the slow backlog (about 4 s)
        assert len(slow.sent) < 20
    finally:
        await p.stop()
        await db.close()


async def test_a_block_arriving_between_two_sends_stops_the_second(parts: dict[str, Any]) -> None:
    from bot import store
    from bot.pipeline import RateLimit

    engine = RecordingEngine(replies=3)
    lines: list[str] = []
    p = await parts["pipeline"](engine, ConsoleAdapter(write=lines.append))
    p.rate_limits = {"console": RateLimit(per_chat_per_second=2, chat_burst=1)}
    console = p.adapters["console"]
    await p.accept("console", [console.item(event("erin", "one"))])  # type: ignore[attr-defined]
    while not lines:
        await asyncio.sleep(0.01)
    await p.db.write(lambda conn: store.set_blocked(conn, "console", "erin"))  # e.g. a block event handled meanwhile
    await asyncio.sleep(1.2)
    assert lines == ["echo one"]
    rows = list(await p.db.read(lambda conn: list(conn.execute(text("SELECT status FROM outbox ORDER BY id")))))
    assert [r.status for r in rows] == ["sent", "blocked", "blocked"]


class ExplodingEngine(RecordingEngine):
    async def handle(self, inp: TurnInput) -> TurnResult:
        if inp.event.text == "boom":
            raise TypeError("'int' object has no attribute 'strip'")
        return await super().handle(inp)


async def test_an_event_the_dialogs_cannot_handle_is_set_aside_at_once(parts: dict[str, Any]) -> None:
    lines: list[str] = []
    p = await parts["pipeline"](ExplodingEngine(), ConsoleAdapter(write=lines.append))
    console = p.adapters["console"]
    for message in ("boom", "after"):
        await p.accept("console", [console.item(event("fred", message))])  # type: ignore[attr-defined]
    await wait_idle(p, timeout=3)  # not 5 retries over half a minute
    assert lines == ["echo after"]
    rows = list(await p.db.read(lambda conn: list(conn.execute(text("SELECT status, attempts FROM inbox ORDER BY id")))))
    assert [(r.status, r.attempts) for r in rows] == [("failed", 1), ("done", 1)]


async def test_a_second_process_without_redis_refuses_to_run_workers_on_the_same_database(tmp_path: Path) -> None:
    from bot.app import AlreadyRunning, claim_single_process

    url = f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}"
    first = claim_single_process(url)
    assert first is not None
    # flock is per open file description: a second claim behaves like another process
    with pytest.raises(AlreadyRunning, match="TOUCHPOINT_REDIS_URL"):
        claim_single_process(url)
    first.close()
    again = claim_single_process(url)
    assert again is not None
    again.close()


async def test_loading_a_conversation_gives_the_newest_consent_per_purpose_and_channel(parts: dict[str, Any]) -> None:
    from bot import store
    from bot.turn import ConsentChange

    p = await parts["pipeline"](RecordingEngine(), workers=False)
    loaded = await p.db.write(lambda conn: store.create_identity(conn, "console", "gina", "Gina", "de"))
    changes = [
        ConsentChange("marketing", "console", True, "signup", "1"),
        ConsentChange("surveys", "console", True, "signup", "1"),
        ConsentChange("marketing", "console", False, "stop", "1"),
        ConsentChange("marketing", "telegram", True, "signup", "2"),
    ]
    await p.db.write(
        lambda conn: store.save_turn(
            conn, loaded=loaded, channel="console", address="gina", new_state=loaded.state, effects=changes, inbound_at=None
        )
    )
    again = await p.db.read(lambda conn: store.load_conversation(conn, "console", "gina"))
    assert again is not None and again.customer.first_name == "Gina"
    current = {(c.purpose, c.channel): (c.granted, c.wording_version) for c in again.customer.consents}
    assert current == {
        ("marketing", "console"): (False, "1"),
        ("surveys", "console"): (True, "1"),
        ("marketing", "telegram"): (True, "2"),
    }
    assert again.state.version == 1


async def test_sweepers_of_several_processes_reissue_a_lost_wakeup_once(parts: dict[str, Any]) -> None:
    first = await parts["pipeline"](RecordingEngine(), workers=False)
    second = await parts["pipeline"](RecordingEngine(), workers=False)
    console = first.adapters["console"]
    await first.accept("console", [console.item(event("hana", "lost"))])  # type: ignore[attr-defined]
    # pretend the wake-up was lost long ago
    await first.db.write(lambda conn: conn.execute(text("UPDATE inbox SET received_at = '2000-01-01 00:00:00.000000'")))
    await first.backend.queue.take("inbox", max_items=10, timeout=0.1)  # drop the original wake-up
    issued = [await first.sweep_once(), await second.sweep_once()]
    if parts["backend"] == "redis":  # shared dedup: the second process sees it was just re-issued
        assert sorted(issued) == [0, 1]
    else:  # separate processes without Redis do not exist (see claim_single_process); each sweeps its own
        assert issued == [1, 1]
