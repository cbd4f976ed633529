"""Consent and erasure defects found in review, each pinned where it lives.

1. A stop, a platform block or a Rasa "off" during a pause of offers must
   survive the end of the pause (dialogs, store, the app, Rasa).
2. "Delete me" erases the shop side too (locations, carts, interests, pushes,
   links, orders' codes, account links, stored API answers) and the
   addresses of handled inbox rows (SQLite and PostgreSQL).
3. After an erasure, a late press, an edit, a block or a receipt from the
   address creates nobody; a real message starts a fresh sign-up (the app).
4. Rasa ``action_handoff`` with a ticket that is not the customer's leaves a
   ticket waiting and names it (store on both databases, and the app).
5. The Rasa endpoint answers 400, not 500, to JSON nested too deeply and to
   a NUL in the sender id.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from bot import event_store, push_store, shop_store, store
from bot.appkeys import DB
from bot.config import load_config
from bot.db import Database
from bot.dialog import DialogEngine
from bot.events import Inbound, Kind
from bot.i18n import I18n
from bot.pipeline import Pipeline
from bot.shop_store import StoredAnswer
from bot.turn import (
    ConsentChange,
    EraseCustomer,
    Handoff,
    OpenTicket,
    PauseMarketing,
    SetCustomer,
    SetIdentity,
)
from tests.conftest import API_KEY, Touchpoint, fixture_json
from tests.dialogs.conftest import Chat
from tests.test_domain_store import (  # noqa: F401 - fixtures
    CHANNEL,
    NOW,
    PipelineFactory,
    ScriptedEngine,
    apply,
    db,
    db_url,
    load,
    make_pipeline,
    new_customer,
    rows,
)
from tests.web.chat import PLATFORMS, PlatformUser, sign_up_in, without_chat_pacing
from tests.web.test_rasa_actions import action_call, post, run, said, slots_set

I18N = I18n.load()
SHOP_CONFIG = load_config(None)
PURPOSES = [p.id for p in SHOP_CONFIG.consent_purposes]  # all four are marketing purposes
OTHER = "console_b"  # a second channel, as WhatsApp beside Telegram


def t(locale: str, msgid: str, **params: Any) -> str:
    return I18N.text(locale, msgid, **params)


@pytest.fixture
def backend_name() -> str:
    """The app on the in-process backend: nothing here depends on Redis."""
    return "memory"


@pytest.fixture
def tp(touchpoint: Touchpoint) -> Touchpoint:
    return without_chat_pacing(touchpoint)


async def newest_consents(db: Database, customer_id: int) -> dict[tuple[str, str], tuple[bool, str]]:  # noqa: F811
    """(granted, source) of the newest consent row per (purpose, channel)."""
    log = await rows(db, "SELECT purpose, channel, granted, source FROM consent WHERE customer_id = :id ORDER BY id", id=customer_id)
    return {(r.purpose, r.channel): (bool(r.granted), r.source) for r in log}


# =============================================================================== 1. stop, block, "off" during a pause


def paused_chat() -> Chat:
    """A Telegram customer who granted everything, then paused offers (also on WhatsApp)."""
    chat = Chat(DialogEngine(SHOP_CONFIG, I18N))
    chat.turns, chat.locale, chat.first_name = 1, "en", "Alice"
    for channel in ("telegram", "whatsapp"):
        for purpose in PURPOSES:
            chat.consent_log.append(ConsentChange(purpose, channel, True, "signup", "1"))
    return chat


async def pause(chat: Chat) -> None:
    await chat.send("privacy")
    await chat.press("privacy:pause")
    assert chat.paused_until is not None and not any(chat.granted(p) for p in PURPOSES)


async def test_stop_during_a_pause_withdraws_the_paused_purposes_of_this_chat_and_says_so() -> None:
    chat = paused_chat()
    await pause(chat)
    await chat.send("stop")
    assert sorted(chat.consent_changes()) == sorted((p, False, "stop") for p in PURPOSES)
    assert {e.channel for e in chat.effects if isinstance(e, ConsentChange)} == {"telegram"}
    names = [t("en", "list.item", item=t("en", f"consent.{p}.name")) for p in PURPOSES]
    head = I18N.plural("en", "stop.done", "stop.done.plural", 4)
    howto = t("en", "stop.howto", privacy="privacy")
    assert chat.texts == ["\n".join([head, *names, "", howto])]
    assert t("en", "stop.nothing") not in chat.text
    # WhatsApp keeps its pause: stop is about this chat
    assert chat.snapshot().consent("marketing", "whatsapp").granted is False
    assert [c for c in chat.consent_log if c.channel == "whatsapp"][-1].source == "pause"


async def test_stop_after_the_pause_has_ended_says_there_was_nothing_to_stop() -> None:
    chat = paused_chat()
    await pause(chat)
    for purpose in PURPOSES:  # the job ended the pause, then the customer switched everything off
        chat.consent_log.append(ConsentChange(purpose, "telegram", True, "pause_ended", "1"))
        chat.consent_log.append(ConsentChange(purpose, "telegram", False, "privacy", "1"))
    chat.paused_until = None
    await chat.send("stop")
    assert sorted(chat.consent_changes()) == sorted((p, False, "stop") for p in PURPOSES)  # the stop is recorded
    assert chat.texts[0].startswith(t("en", "stop.nothing"))


async def test_a_block_during_a_pause_withdraws_the_paused_purposes_of_this_chat_silently() -> None:
    chat = paused_chat()
    await pause(chat)
    await chat.event(Kind.UNSUBSCRIBED)
    assert chat.messages == []
    assert sorted(chat.consent_changes()) == sorted((p, False, "platform") for p in PURPOSES)
    assert {e.channel for e in chat.effects if isinstance(e, ConsentChange)} == {"telegram"}
    assert SetIdentity(blocked=True) in chat.effects


async def test_a_platform_block_during_a_pause_keeps_that_channel_off_when_the_pause_ends(db: Any) -> None:  # noqa: F811
    loaded = await new_customer(db, "a1")
    until = NOW + timedelta(days=30)
    granted = [ConsentChange(p, c, True, "signup", "1") for c in (CHANNEL, OTHER) for p in ("marketing", "surveys")]
    paused = [ConsentChange(p, c, False, "pause", "1") for c in (CHANNEL, OTHER) for p in ("marketing", "surveys")]
    await apply(db, loaded, *granted, *paused, PauseMarketing(until=until))

    await db.write(lambda conn: store.block_identity(conn, CHANNEL, "a1"))  # a send revealed the block
    assert await db.write(lambda conn: store.resume_marketing(conn, loaded.customer.id, until)) == 2
    assert await newest_consents(db, loaded.customer.id) == {
        ("marketing", CHANNEL): (False, "platform"),
        ("surveys", CHANNEL): (False, "platform"),
        ("marketing", OTHER): (True, "pause_ended"),
        ("surveys", OTHER): (True, "pause_ended"),
    }


async def test_a_block_without_a_pause_withdraws_only_what_was_granted(db: Any) -> None:  # noqa: F811
    loaded = await new_customer(db, "a1")
    await apply(db, loaded, ConsentChange("marketing", CHANNEL, True, "signup", "1"), ConsentChange("surveys", CHANNEL, False, "signup", "1"))
    await db.write(lambda conn: store.block_identity(conn, CHANNEL, "a1"))
    assert await newest_consents(db, loaded.customer.id) == {
        ("marketing", CHANNEL): (False, "platform"),
        ("surveys", CHANNEL): (False, "signup"),
    }


async def end_the_pause(tp: Touchpoint, customer_id: int) -> int:
    """What the sweeper's job does once the pause has passed; returns how many purposes it granted again."""
    later = datetime.now(timezone.utc) + timedelta(days=31)
    return await tp.app[DB].write(lambda conn: store.resume_marketing(conn, customer_id, later))


@pytest.mark.parametrize("how", ["stop", "block"])
async def test_stop_or_block_during_a_pause_through_telegram_is_not_undone_when_it_ends(tp: Touchpoint, how: str) -> None:
    user = PlatformUser(tp, "telegram")
    await sign_up_in(user, "en", {p: True for p in PURPOSES})
    await user.say("privacy")
    await user.press(t("en", "privacy.pause"))
    if how == "stop":
        replies = await user.say("stop")
        assert [r.text for r in replies] == [
            "\n".join(
                [
                    I18N.plural("en", "stop.done", "stop.done.plural", 4),
                    *(t("en", "list.item", item=t("en", f"consent.{p}.name")) for p in PURPOSES),
                    "",
                    t("en", "stop.howto", privacy="privacy"),
                ]
            )
        ]
    else:
        await user.send(user.blocked_body())
    [customer] = await tp.query("SELECT id FROM customer")
    assert await end_the_pause(tp, customer.id) == 0
    assert await newest_consents(tp.app[DB], customer.id) == {(p, "telegram"): (False, how if how == "stop" else "platform") for p in PURPOSES}


async def test_a_rasa_withdrawal_during_a_pause_is_kept_when_the_pause_ends(tp: Touchpoint) -> None:
    for purpose in ("marketing", "surveys"):
        await run(tp, "action_record_consent", {"purpose": purpose, "granted": True})
    [customer] = await tp.query("SELECT id FROM customer")
    until = NOW + timedelta(days=30)
    paused = [ConsentChange(p, "telegram", False, "pause", "1") for p in ("marketing", "surveys")]
    await tp.app[DB].write(
        lambda conn: store.apply_effects(
            conn, customer_id=customer.id, channel="telegram", address="5550100201",
            effects=[*paused, PauseMarketing(until=until)], now=NOW,
        )
    )  # fmt: skip
    body = await run(tp, "action_record_consent", {"purpose": "marketing", "granted": False})
    assert said(body) == t("en", "rasa.consent_off", purpose=t("en", "consent.marketing.name"))
    assert await end_the_pause(tp, customer.id) == 1
    assert await newest_consents(tp.app[DB], customer.id) == {
        ("marketing", "telegram"): (False, "rasa"),
        ("surveys", "telegram"): (True, "pause_ended"),
    }
    # without a pause, the same "no" again records nothing
    count = len(await tp.query("SELECT id FROM consent"))
    await run(tp, "action_record_consent", {"purpose": "marketing", "granted": False})
    assert len(await tp.query("SELECT id FROM consent")) == count


# =============================================================================== 2. erasure of the shop side


def console_event(address: str, text: str, event_id: str | None = None) -> Inbound:
    return Inbound(channel=CHANNEL, address=address, event_id=event_id or uuid.uuid4().hex, kind=Kind.TEXT, text=text, first_name="Ana")


async def deliver(p: Pipeline, *events: Inbound) -> list[int | None]:
    """Store events in the inbox as a webhook would, without handling them."""
    return await p.accept(CHANNEL, [p.adapters[CHANNEL].item(e) for e in events])  # type: ignore[attr-defined]


async def shop_side_of(p: Pipeline, customer_id: int, phone: str, label: str) -> None:
    """Everything the shop side can hold about one customer, written by the real store functions."""

    def unit(conn: Any) -> None:
        event_store.set_location(conn, customer_id, 52.52, 13.40, "chat", NOW)
        event_store.set_cart(conn, customer_id, [{"product_id": f"P-{label}", "quantity": 1}], NOW)
        event_store.add_interest(conn, customer_id, f"P-{label}", "subscribed", NOW)
        [(push_id, _)] = push_store.create_pushes(
            conn,
            [{"customer_id": customer_id, "touchpoint": "back_in_stock", "dedup_key": f"P-{label}",
              "variables": {"name": f"Ana {label}", "code": f"CODE-{label}"}, "priority": 50, "transactional": False}],
            NOW,
        )  # fmt: skip
        push_store.record(conn, push_id, "sent", NOW, channel="sms", detail=f"sent to {phone}", address=phone, sent_at=NOW)
        push_store.add_links(conn, [{"token": f"tok-{label}", "push_id": push_id, "url": f"https://shop.example/p?code=CODE-{label}", "created_at": NOW}])
        event_store.record_order(conn, f"ORDER-{label}", customer_id, f"CODE-{label}", 49.9, NOW)

    await p.db.write(unit)


async def test_delete_me_erases_the_shop_side_and_the_inbox_addresses_and_a_waiting_message_still_counts(
    make_pipeline: PipelineFactory,  # noqa: F811
) -> None:
    engine = ScriptedEngine()
    p = await make_pipeline(engine)
    engine.script["sign up"] = (["Welcome!"], [SetCustomer(first_name="Ana")], {})
    engine.script["delete me"] = (["All deleted."], [EraseCustomer()], {})
    sign_up = console_event("a1", "sign up")
    await deliver(p, sign_up, console_event("b1", "sign up"))
    await p.drain_conversation(CHANNEL, "a1")
    await p.drain_conversation(CHANNEL, "b1")
    ana, bob = (await load(p.db, "a1")).customer.id, (await load(p.db, "b1")).customer.id
    email, phone, external = "zoë.ana@example.com", "+4915550100777", "shop-4711"
    await p.db.write(
        lambda conn: conn.execute(store.customer_t.update().where(store.customer_t.c.id == ana).values(external_id=external, email=email, phone=phone))
    )
    await p.db.write(lambda conn: conn.execute(store.customer_t.update().where(store.customer_t.c.id == bob).values(external_id="shop-99")))
    await shop_side_of(p, ana, phone, "ana")
    await shop_side_of(p, bob, "+4915550100888", "bob")
    await p.db.write(lambda conn: shop_store.create_link_token(conn, external, NOW))
    await p.db.write(lambda conn: shop_store.create_link_token(conn, "shop-99", NOW))
    answers = {
        "profile": json.dumps({"external_id": external, "email": email}).encode(),  # as the API writes it: \u00eb
        "utf8": json.dumps({"email": email}, ensure_ascii=False).encode(),
        "phone": json.dumps({"phone": phone}).encode(),
        "other": json.dumps({"external_id": "shop-99", "created": 1}).encode(),
    }
    for key, body in answers.items():
        await p.db.write(lambda conn, k=key, b=body: shop_store.save_answer(conn, k, StoredAnswer("f", 200, b), NOW))

    # "delete me", and a message that is still waiting in the inbox while it is handled
    delete_me = console_event("a1", "delete me")
    await deliver(p, delete_me, console_event("a1", "hello again"))
    await p.drain_conversation(CHANNEL, "a1")

    for table in ("customer_location", "cart", "product_interest", "account_link"):
        left = await rows(p.db, f"SELECT customer_id FROM {table}")
        assert [r.customer_id for r in left] == [bob], table
    pushes = {r.customer_id: r for r in await rows(p.db, "SELECT * FROM push")}
    variables = pushes[ana].variables  # JSON: text on SQLite
    assert (pushes[ana].address, json.loads(variables) if isinstance(variables, str) else variables) == (None, {})
    assert (pushes[ana].status, pushes[ana].channel, pushes[ana].sent_at is not None) == ("sent", "sms", True)
    assert pushes[bob].address == "+4915550100888"
    history = await rows(p.db, "SELECT push_id, status, detail FROM push_event WHERE push_id = :id ORDER BY id", id=pushes[ana].id)
    assert [(r.status, r.detail) for r in history] == [("queued", None), ("sent", None)]
    assert [r.token for r in await rows(p.db, "SELECT token FROM link")] == ["tok-bob"]
    orders = {r.id: (r.code, r.total, r.customer_id) for r in await rows(p.db, "SELECT * FROM shop_order")}
    assert orders == {"ORDER-ana": (None, 49.9, ana), "ORDER-bob": ("CODE-bob", 49.9, bob)}
    assert [r.key for r in await rows(p.db, "SELECT key FROM idempotent_request")] == ["other"]

    inbox = await rows(p.db, "SELECT event_id, address, body, status FROM inbox ORDER BY id")
    handled = [r for r in inbox if r.address == ""]
    assert {r.event_id for r in handled} == {sign_up.event_id, delete_me.event_id}
    assert all(bytes(r.body) == b"" and r.status == "done" for r in handled)
    assert await deliver(p, sign_up) == [None]  # a redelivered webhook is still recognised
    # the message that waited was handled afterwards, as a newcomer's first message
    assert [r.status for r in inbox if r.address == "a1"] == ["done"]
    newcomer = engine.seen[-1]
    assert (newcomer.event.text, newcomer.customer.is_new) == ("hello again", True)
    assert newcomer.customer.id not in (ana, bob)


async def test_erasure_forgets_only_stored_answers_that_mention_the_customer(db: Any) -> None:  # noqa: F811
    loaded = await new_customer(db, "a1")
    await db.write(lambda conn: conn.execute(store.customer_t.update().values(external_id="7", email=None, phone=None)))
    for key, body in {"mine": b'{"external_id": "7"}', "other": b'{"external_id": "8"}'}.items():
        await db.write(lambda conn, k=key, b=body: shop_store.save_answer(conn, k, StoredAnswer("f", 201, b), NOW))
    await db.write(lambda conn: store.erase_customer(conn, loaded.customer.id, NOW))
    assert [r.key for r in await rows(db, "SELECT key FROM idempotent_request")] == ["other"]


def location_body(user: PlatformUser) -> dict[str, Any]:
    body = copy.deepcopy(fixture_json("telegram", "location.json"))
    body["message"].update(message_id=700_001, date=int(time.time()), **user._telegram_people())
    body["update_id"] = 990_000_001
    return body


async def test_delete_me_through_telegram_removes_the_shared_location_and_the_inbox_addresses(tp: Touchpoint) -> None:
    user = PlatformUser(tp, "telegram")
    await sign_up_in(user, "en", {p: True for p in PURPOSES})
    await user.send(location_body(user))
    for _ in range(100):  # the store check runs beside the turn
        if await tp.query("SELECT customer_id FROM customer_location"):
            break
        await asyncio.sleep(0.01)
    assert len(await tp.query("SELECT customer_id FROM customer_location")) == 1
    await user.say("privacy")
    await user.press(t("en", "privacy.erase"))
    await user.press(t("en", "privacy.erase_yes"))
    assert await tp.query("SELECT customer_id FROM customer_location") == []
    assert await tp.query("SELECT id FROM inbox WHERE address = :a", a=user.address) == []
    assert all(bytes(r.body) == b"" for r in await tp.query("SELECT body FROM inbox"))


# =============================================================================== 3. nobody comes back by a late event


def telegram_edit_body(user: PlatformUser) -> dict[str, Any]:
    body = copy.deepcopy(fixture_json("telegram", "edited_message.json"))
    body["edited_message"].update(date=int(time.time()), edit_date=int(time.time()), **user._telegram_people())
    body["update_id"] = 990_000_101
    return body


def telegram_unblock_body(user: PlatformUser) -> dict[str, Any]:
    body = copy.deepcopy(fixture_json("telegram", "my_chat_member_unblocked.json"))
    people = user._telegram_people()
    body["my_chat_member"].update(chat=people["chat"], date=int(time.time()))
    body["my_chat_member"]["from"] = people["from"]
    body["update_id"] = 990_000_102
    return body


async def erase(user: PlatformUser) -> None:
    await user.say("privacy")
    await user.press(t("en", "privacy.erase"))
    await user.press(t("en", "privacy.erase_yes"))


async def nobody(tp: Touchpoint) -> bool:
    return not await tp.query("SELECT id FROM channel_identity") and not await tp.query("SELECT id FROM conversation")


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_second_tap_on_delete_me_creates_nobody_and_a_real_message_starts_afresh(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform, name="Zelda Quixote")
    await sign_up_in(user, "en", {p: True for p in PURPOSES})
    await user.say("privacy")
    await user.press(t("en", "privacy.erase"))
    first = user.press_body(user.button(t("en", "privacy.erase_yes")))
    second = user.press_body(user.button(t("en", "privacy.erase_yes")))
    await user.post(first)
    await user.settle()
    assert await user.send(second) == []
    assert await nobody(tp)
    [ignored] = await tp.query("SELECT address, body, error FROM inbox WHERE status = 'ignored'")
    assert (ignored.address, bytes(ignored.body), ignored.error) == ("", b"", "no conversation for a button event")
    replies = await user.say("Hello")
    assert replies and not await nobody(tp)
    [customer] = await tp.query("SELECT id FROM customer WHERE erased_at IS NULL")
    assert await tp.query("SELECT id FROM consent WHERE customer_id = :id", id=customer.id) == []


async def test_an_edit_or_a_block_or_an_unblock_after_delete_me_creates_nobody(tp: Touchpoint) -> None:
    user = PlatformUser(tp, "telegram")
    await sign_up_in(user, "en", {p: True for p in PURPOSES})
    await erase(user)
    for body in (telegram_edit_body(user), user.blocked_body(), telegram_unblock_body(user)):
        assert await user.send(body) == []
    assert await nobody(tp)
    errors = [r.error for r in await tp.query("SELECT error FROM inbox WHERE status = 'ignored' ORDER BY id")]
    assert errors == [f"no conversation for a {kind} event" for kind in ("edited", "unsubscribed", "resubscribed")]


async def test_a_viber_unsubscribe_or_a_whatsapp_receipt_after_delete_me_creates_nobody(tp: Touchpoint) -> None:
    viber = PlatformUser(tp, "viber")
    whatsapp = PlatformUser(tp, "whatsapp")
    for user in (viber, whatsapp):
        await sign_up_in(user, "en", {p: True for p in PURPOSES})
        await erase(user)
    await viber.send(viber.blocked_body())
    await whatsapp.send(whatsapp.undeliverable_status_body("wamid.UNKNOWN000000000000000000000000=="))
    assert await nobody(tp)


# =============================================================================== 4. handoff to a ticket that is not the customer's


async def test_hand_off_with_someone_elses_or_an_unknown_ticket_opens_one_that_waits(db: Any) -> None:  # noqa: F811
    ana = await new_customer(db, "a1")
    bob = await new_customer(db, "b1", first_name="Bob")
    await apply(db, ana, OpenTicket("C-ANA001", "delivery", "late"))
    for named in ("C-ANA001", "C-NOPE12"):
        number = await db.write(lambda conn, n=named: store.hand_off(conn, bob.customer.id, CHANNEL, "b1", Handoff(ticket=n), NOW))
        assert number not in ("C-ANA001", "C-NOPE12")
    tickets = await rows(db, "SELECT number, customer_id, kind, status FROM ticket ORDER BY id")
    first = tickets[0]
    assert (first.number, first.customer_id, first.kind, first.status) == ("C-ANA001", ana.customer.id, "delivery", "open")
    assert [(r.customer_id, r.kind, r.status) for r in tickets[1:]] == [(bob.customer.id, "handoff", "waiting_agent")] * 2
    assert (await load(db, "b1")).state.mode == "agent"
    assert (await load(db, "a1")).state.mode == "bot"


async def test_rasa_handoff_with_an_unknown_ticket_leaves_a_ticket_waiting_and_names_it(tp: Touchpoint) -> None:
    body = await run(tp, "action_handoff", {"ticket_number": "C-NOPE12"})
    [ticket] = await tp.query("SELECT number, kind, status, address FROM ticket")
    assert (ticket.kind, ticket.status, ticket.address) == ("handoff", "waiting_agent", "5550100201")
    assert f"A member of our team will take over ticket {ticket.number}. " in said(body)
    assert "C-NOPE12" not in said(body)
    assert [r.mode for r in await tp.query("SELECT mode FROM conversation")] == ["agent"]


async def test_rasa_handoff_never_takes_another_customers_ticket(tp: Touchpoint) -> None:
    body = await run(tp, "action_open_complaint", {"complaint_kind": "quality", "complaint_description": "Broken zip"})
    bobs = slots_set(body)["ticket_number"]
    body = await run(tp, "action_handoff", {"ticket_number": bobs}, sender="whatsapp:+4915550100301")
    assert bobs not in said(body)
    tickets = {r.number: (r.address, r.status) for r in await tp.query("SELECT number, address, status FROM ticket")}
    assert tickets.pop(bobs) == ("5550100201", "open")
    assert list(tickets.values()) == [("4915550100301", "waiting_agent")]


@pytest.mark.parametrize("value", [{"x": 1}, ["C-ABC123"], 12345, True])
async def test_rasa_handoff_with_a_ticket_number_that_is_no_string_is_a_handoff_without_one(tp: Touchpoint, value: Any) -> None:
    body = await run(tp, "action_handoff", {"ticket_number": value})
    assert slots_set(body) == {"handoff": True}
    assert said(body).startswith("A member of our team will take over this conversation. ")
    [ticket] = await tp.query("SELECT kind, status FROM ticket")
    assert (ticket.kind, ticket.status) == ("handoff", "waiting_agent")


# =============================================================================== 5. hostile Rasa bodies


async def test_rasa_json_nested_too_deeply_is_a_400_that_says_so(tp: Touchpoint) -> None:
    status, body = await post(tp, None, raw=b'{"a":' * 5000 + b"1" + b"}" * 5000)
    assert status == 400
    assert body == {"error": "the body's JSON is nested too deeply to be an action call"}


@pytest.mark.parametrize("sender", ["viber:a\u0000b", "telegram:5550100201\u0000", "\u0000"])
async def test_rasa_sender_id_with_a_nul_is_a_400_and_stores_nothing(tp: Touchpoint, sender: str) -> None:
    status, body = await post(tp, action_call("action_record_consent", {"purpose": "marketing", "granted": True}, sender=sender))
    assert status == 400
    assert body == {"error": "field 'tracker.sender_id' must not contain NUL characters"}
    assert await tp.query("SELECT id FROM customer") == []


async def test_rasa_slot_texts_lose_their_nul_characters(tp: Touchpoint) -> None:
    await run(tp, "action_open_complaint", {"complaint_kind": "quality", "complaint_description": "Broken\u0000 zip"})
    assert [r.description for r in await tp.query("SELECT description FROM ticket")] == ["Broken zip"]


# =============================================================================== 1b. the shop's "no" during a pause


async def test_a_shop_api_withdrawal_during_a_pause_is_kept_when_the_pause_ends(tp: Touchpoint) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    grant = {"purpose": "marketing", "channel": "email", "granted": True}
    body = {"external_id": "c-1", "email": "eva@example.com", "consents": [grant, {**grant, "channel": "sms"}], "phone": "+491701234567"}
    async with tp.session.post(f"{tp.url}/api/v1/customers", json=body, headers=headers) as response:
        assert response.status == 201, await response.text()
    [customer] = await tp.query("SELECT id FROM customer")
    until = datetime.now(timezone.utc) + timedelta(days=30)
    paused = [ConsentChange("marketing", channel, False, "pause", "1") for channel in ("email", "sms")]
    await tp.app[DB].write(
        lambda conn: store.apply_effects(
            conn, customer_id=customer.id, channel="email", address="eva@example.com",
            effects=[*paused, PauseMarketing(until=until)], now=NOW,
        )
    )  # fmt: skip
    body["consents"] = [{**grant, "granted": False}]  # the shop says no on e-mail; the pause has it off already
    async with tp.session.post(f"{tp.url}/api/v1/customers", json=body, headers=headers) as response:
        assert response.status == 200, await response.text()
    assert await end_the_pause(tp, customer.id) == 1  # only SMS comes back
    assert await newest_consents(tp.app[DB], customer.id) == {
        ("marketing", "email"): (False, shop_store.CONSENT_SOURCE),
        ("marketing", "sms"): (True, "pause_ended"),
    }
