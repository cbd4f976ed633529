"""Triggers (the shop starting a dialog in a conversation) and ``start_survey``, on SQLite and PostgreSQL.

The engine here is a small stand-in that answers TRIGGER events, so these
tests cover the pipeline side: the trigger goes through the inbox like a
webhook (stored, deduplicated, woken, ordered), is no customer message
(``last_inbound_at`` untouched, a block stays) and ``start_survey`` decides
whether and where a survey may start.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

from bot import store
from bot.dialog import Context, Dialog, DialogEngine, Registry, Transition, end
from bot.events import Inbound, Kind
from bot.i18n import I18n
from bot.messages import Outbound
from bot.pipeline import Pipeline, UnknownAddress
from bot.surveys import StartResult, start_survey
from bot.turn import ConsentChange, SurveyAnswer, TurnInput, TurnResult
from integrations.console import ConsoleAdapter
from tests.test_domain_store import (  # noqa: F401 - fixtures
    CHANNEL,
    NOW,
    PipelineFactory,
    db_url,
    make_pipeline,
    rows,
    say,
    shop_config,
)
from tests.test_pipeline import wait_idle

OTHER = "console_b"  # a second channel, as WhatsApp beside Telegram


class TriggerEngine:
    """Replies to a customer's text with "echo ..." and to a trigger with the dialog and slots it names."""

    def __init__(self) -> None:
        self.seen: list[TurnInput] = []

    async def handle(self, inp: TurnInput) -> TurnResult:
        self.seen.append(inp)
        if inp.event.kind is Kind.TRIGGER:
            payload = json.loads(inp.event.payload or "{}")
            reply = f"start {payload['dialog']} {json.dumps(payload['slots'], sort_keys=True)}"
        else:
            reply = f"echo {inp.event.text}"
        return TurnResult(state=inp.state, messages=[Outbound(text=reply)])


async def two_channel_pipeline(make_pipeline: PipelineFactory, lines: list[str]) -> Pipeline:  # noqa: F811
    p = await make_pipeline(TriggerEngine(), lines)
    p.adapters = {**p.adapters, OTHER: ConsoleAdapter(write=lambda line: lines.append(f"{OTHER}: {line}"))}
    return p


async def link(p: Pipeline, customer_id: int, channel: str, address: str) -> None:
    """A second identity of the same customer (the shop API links them later)."""

    def unit(conn: Any) -> None:
        other = store.create_identity(conn, channel, address, None, None)
        for table in (store.identity_t, store.conversation_t):
            conn.execute(table.update().where(table.c.customer_id == other.customer.id).values(customer_id=customer_id))

    await p.db.write(unit)


async def customer_id_of(p: Pipeline, channel: str, address: str) -> int:
    loaded = await p.db.read(lambda conn: store.load_conversation(conn, channel, address))
    assert loaded is not None
    return loaded.customer.id


async def consent(p: Pipeline, customer_id: int, channel: str, granted: bool, purpose: str = "surveys") -> None:
    await p.db.write(
        lambda conn: store.apply_effects(
            conn, customer_id=customer_id, channel=channel, address="-", now=NOW,
            effects=[ConsentChange(purpose, channel, granted, "signup", "1")],
        )
    )


# --------------------------------------------------------------------------- triggers


async def test_a_trigger_goes_through_the_inbox_once_and_is_not_a_customer_message(
    make_pipeline: PipelineFactory,  # noqa: F811
) -> None:
    lines: list[str] = []
    engine = TriggerEngine()
    p = await make_pipeline(engine, lines)
    await p.recover()
    p.start_workers()
    hello = Inbound(channel=CHANNEL, address="a1", event_id="m1", kind=Kind.TEXT, text="hi", received_at=NOW - timedelta(hours=2))
    await p.accept(CHANNEL, [p.adapters[CHANNEL].item(hello)])  # type: ignore[attr-defined]
    await wait_idle(p)

    assert await p.trigger(CHANNEL, "a1", "survey", {"survey": "order", "order": "A-1"}, event_id="survey:order:A-1") is True
    assert await p.trigger(CHANNEL, "a1", "survey", {"survey": "order", "order": "A-1"}, event_id="survey:order:A-1") is False
    await wait_idle(p, timeout=3.0)  # woken by the trigger itself: nobody drained by hand, no sweeper pass

    assert lines == ["echo hi", 'start survey {"order": "A-1", "survey": "order"}']
    trigger_turn = engine.seen[-1]
    assert trigger_turn.event.kind is Kind.TRIGGER and len(engine.seen) == 2
    assert trigger_turn.state.last_inbound_at == hello.received_at
    loaded = await p.db.read(lambda conn: store.load_conversation(conn, CHANNEL, "a1"))
    assert loaded is not None and loaded.state.last_inbound_at == hello.received_at  # still the customer's message
    logged = await rows(p.db, "SELECT direction, kind FROM message_log WHERE direction = 'in' ORDER BY id")
    assert [r.kind for r in logged] == ["text", "trigger"]


async def test_a_trigger_needs_a_known_conversation(make_pipeline: PipelineFactory) -> None:  # noqa: F811
    p = await make_pipeline(TriggerEngine())
    with pytest.raises(UnknownAddress, match="console:nobody"):
        await p.trigger(CHANNEL, "nobody", "survey", {}, event_id="e1")
    assert await rows(p.db, "SELECT id FROM inbox") == []


async def test_a_trigger_does_not_unblock_a_customer_who_blocked_us(make_pipeline: PipelineFactory) -> None:  # noqa: F811
    lines: list[str] = []
    p = await make_pipeline(TriggerEngine(), lines)
    await say(p, "a1", "hi")
    await p.db.write(lambda conn: store.set_blocked(conn, CHANNEL, "a1"))
    assert await p.trigger(CHANNEL, "a1", "survey", {"order": "A-1"}, event_id="t1")
    await p.drain_conversation(CHANNEL, "a1")
    await p.send_conversation(CHANNEL, "a1")
    assert lines == ["echo hi"]
    assert await p.db.read(lambda conn: store.is_blocked(conn, CHANNEL, "a1"))


def probe_begin(ctx: Context) -> Transition:
    """A test dialog started only by triggers: it says what it got and records it."""
    ctx.say_text(f"probe {ctx.slots['order']}")
    ctx.emit(SurveyAnswer("order", ctx.slots["order"], "probe", "seen"))
    return end()


PROBE = Dialog(name="probe", begin=probe_begin)


async def test_the_real_engine_starts_a_triggered_dialog_whose_effects_are_persisted(
    make_pipeline: PipelineFactory,  # noqa: F811
) -> None:
    from dialogs import DIALOGS

    config = shop_config()
    engine = DialogEngine(config, I18n.load(), registry=Registry([*DIALOGS, PROBE]))
    lines: list[str] = []
    p = await make_pipeline(engine, lines, config)
    await say(p, "a1", "hi", first_name="Ana")
    greeted = len(lines)
    before = await p.db.read(lambda conn: store.load_conversation(conn, CHANNEL, "a1"))
    assert greeted >= 1 and before is not None

    assert await p.trigger(CHANNEL, "a1", "probe", {"order": "A-9"}, event_id="probe:A-9")
    await p.drain_conversation(CHANNEL, "a1")
    await p.send_conversation(CHANNEL, "a1")

    assert lines[greeted].startswith("probe A-9")  # then the interrupted sign-up question again
    [row] = await rows(p.db, "SELECT order_ref, answers, status FROM survey_response")
    assert row.order_ref == "A-9" and "seen" in str(row.answers) and row.status == "started"
    after = await p.db.read(lambda conn: store.load_conversation(conn, CHANNEL, "a1"))
    assert after is not None and after.state.last_inbound_at == before.state.last_inbound_at


# --------------------------------------------------------------------------- start_survey


async def test_a_survey_needs_a_known_survey_and_survey_consent(make_pipeline: PipelineFactory) -> None:  # noqa: F811
    lines: list[str] = []
    p = await make_pipeline(TriggerEngine(), lines)
    config = shop_config()
    await say(p, "a1", "hi")
    customer_id = await customer_id_of(p, CHANNEL, "a1")

    assert await start_survey(p, config, customer_id, "nope", "A-1") == StartResult(False, "unknown_survey")
    assert await start_survey(p, config, customer_id, "order", "A-1") == StartResult(False, "no_consent")
    await consent(p, customer_id, CHANNEL, True, purpose="marketing")  # another purpose is not enough
    await consent(p, customer_id, CHANNEL, False)
    assert (await start_survey(p, config, customer_id, "order", "A-1")).reason == "no_consent"
    assert await rows(p.db, "SELECT id FROM survey_response") == []

    await consent(p, customer_id, CHANNEL, True)
    assert await start_survey(p, config, customer_id, "order", "A-1") == StartResult(True, "started", CHANNEL, "a1")
    await p.drain_conversation(CHANNEL, "a1")
    await p.send_conversation(CHANNEL, "a1")
    assert lines[-1] == 'start survey {"order": "A-1", "survey": "order"}'
    [row] = await rows(p.db, "SELECT survey, order_ref, status, channel, address FROM survey_response")
    assert tuple(row) == ("order", "A-1", "started", CHANNEL, "a1")

    await p.db.write(lambda conn: store.set_blocked(conn, CHANNEL, "a1"))
    assert (await start_survey(p, config, customer_id, "order", "A-2")).reason == "blocked"
    assert await start_survey(p, config, 999_999, "order", "A-3") == StartResult(False, "unknown_customer")


async def test_a_survey_starts_once_per_order_even_when_asked_twice_at_once(make_pipeline: PipelineFactory) -> None:  # noqa: F811
    p = await make_pipeline(TriggerEngine())
    other_process = await make_pipeline(TriggerEngine())  # its own database connections
    config = shop_config()
    await say(p, "a1", "hi")
    customer_id = await customer_id_of(p, CHANNEL, "a1")
    await consent(p, customer_id, CHANNEL, True)

    results = await asyncio.gather(
        *(start_survey(pipeline, config, customer_id, "order", "A-1") for pipeline in (p, other_process, p, other_process))
    )
    assert sorted(r.reason for r in results) == ["already_started"] * 3 + ["started"]
    assert (await start_survey(p, config, customer_id, "order", "A-1")).reason == "already_started"
    assert len(await rows(p.db, "SELECT id FROM inbox WHERE event_id LIKE 'survey:%'")) == 1
    assert (await start_survey(p, config, customer_id, "order", "A-2")).started  # another order: another survey
    assert len(await rows(p.db, "SELECT id FROM survey_response")) == 2


async def test_a_survey_goes_to_the_preferred_channel_else_where_the_customer_wrote_last(
    make_pipeline: PipelineFactory,  # noqa: F811
) -> None:
    lines: list[str] = []
    p = await two_channel_pipeline(make_pipeline, lines)
    config = shop_config()
    await say(p, "a1", "hi")
    customer_id = await customer_id_of(p, CHANNEL, "a1")
    await link(p, customer_id, OTHER, "b1")
    later = Inbound(channel=OTHER, address="b1", event_id=uuid.uuid4().hex, kind=Kind.TEXT, text="hello from b")
    await p.accept(OTHER, [p.adapters[OTHER].item(later)])  # type: ignore[attr-defined]
    await p.drain_conversation(OTHER, "b1")
    await consent(p, customer_id, CHANNEL, True)
    await consent(p, customer_id, OTHER, True)

    # no preference: the channel the customer wrote on last
    assert await start_survey(p, config, customer_id, "order", "A-1") == StartResult(True, "started", OTHER, "b1")
    # preferred channel with consent wins
    await p.db.write(lambda conn: conn.execute(store.customer_t.update().values(preferred_channel=CHANNEL)))
    assert await start_survey(p, config, customer_id, "order", "A-2") == StartResult(True, "started", CHANNEL, "a1")
    # ... but not without consent there
    await consent(p, customer_id, CHANNEL, False)
    assert await start_survey(p, config, customer_id, "order", "A-3") == StartResult(True, "started", OTHER, "b1")


async def test_an_erased_customer_gets_no_survey(make_pipeline: PipelineFactory) -> None:  # noqa: F811
    p = await make_pipeline(TriggerEngine())
    await say(p, "a1", "hi")
    customer_id = await customer_id_of(p, CHANNEL, "a1")
    await consent(p, customer_id, CHANNEL, True)
    await p.db.write(lambda conn: store.erase_customer(conn, customer_id, NOW))
    assert await start_survey(p, shop_config(), customer_id, "order", "A-1") == StartResult(False, "erased")


async def test_a_push_starts_a_survey_inside_its_own_transaction_and_wakes_the_conversation_after(
    make_pipeline: PipelineFactory,  # noqa: F811
) -> None:
    lines: list[str] = []
    p = await make_pipeline(TriggerEngine(), lines)
    await p.recover()
    p.start_workers()
    hello = Inbound(channel=CHANNEL, address="a1", event_id="m1", kind=Kind.TEXT, text="hi")
    await p.accept(CHANNEL, [p.adapters[CHANNEL].item(hello)])  # type: ignore[attr-defined]
    await wait_idle(p)
    customer_id = await customer_id_of(p, CHANNEL, "a1")
    start = p.survey_starter(shop_config())

    def push_unit(conn: Any) -> list[bool]:
        return [
            start(conn, customer_id, "order", "A-5", CHANNEL, "a1", NOW),
            start(conn, customer_id, "order", "A-5", CHANNEL, "a1", NOW),  # once per order
            start(conn, customer_id, "unknown", "A-6", CHANNEL, "a1", NOW),
        ]

    assert await p.db.write(push_unit) == [True, False, False]
    await p.wake_sender(CHANNEL, "a1", False)
    await wait_idle(p, timeout=3.0)  # woken now, not by the sweeper's stale-row pass seconds later
    assert lines == ["echo hi", 'start survey {"order": "A-5", "survey": "order"}']
    [row] = await rows(p.db, "SELECT order_ref, status FROM survey_response")
    assert tuple(row) == ("A-5", "started")
