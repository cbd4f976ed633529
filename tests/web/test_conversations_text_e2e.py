"""Free text, Rasa NLU, resume and expiry, and privacy in the chat, through the real webhooks.

Customers type sentences (with typos, in three languages) that the intent
step routes to the right dialog; with ``RASA_URL`` set the app asks a local
fake of Rasa's parse endpoint first and falls back to the phrase matcher when
Rasa is down. A flow left in the middle resumes within the configured time
and restarts after it (the conversation's last message is aged in the
database). "My data", "delete me" and "pause offers" are checked in the
database as well as on the wire.
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import update

from bot import store
from bot.appkeys import DB
from bot.complaints import KINDS
from integrations.fakes import FakePlatforms
from tests.conftest import Touchpoint, make_settings, start_touchpoint, stop_touchpoint
from tests.web.chat import PLATFORMS, PlatformUser, Reply, sign_up_in, without_chat_pacing
from tests.web.test_conversations_e2e import (
    codes,
    complaint_opening,
    conversation,
    customer_id,
    everything,
    full_label,
    joined,
)
from tests.web.test_signup_e2e import I18N, command_word, config, help_text, intro, t, texts

@pytest.fixture
def tp(touchpoint: Touchpoint) -> Touchpoint:
    return without_chat_pacing(touchpoint)


def menu_labels(locale: str) -> list[str]:
    items = ("categories", "complaint", "privacy", "handoff", "language", "help")
    return [t(locale, f"menu.{item}") for item in items]


def person_passed(locale: str) -> Callable[[Reply], bool]:
    """The handoff without a ticket of the customer's own: passed on, when to expect an answer, quiet."""

    def check(reply: Reply) -> bool:
        return reply.text.startswith(t(locale, "handoff.passed")) and reply.text.endswith(
            t(locale, "handoff.quiet", stop=command_word(locale, "stop"))
        )

    return check


async def handoff_ticket(tp: Touchpoint, user: PlatformUser) -> Any:
    [ticket] = await tp.query(
        "SELECT kind, status FROM ticket WHERE customer_id = :c", c=await customer_id(tp, user)
    )
    return ticket


# ----------------------------------------------------------------------------- 1. intents

INTENTS = [
    # (platform, locale, customer, typed text, what it should start)
    ("telegram", "en", "Alice Novak", "hlep", "help"),
    ("viber", "en", "Alice Novak", "mnu", "menu"),
    ("telegram", "de", "Jonas Weber", "hlfe", "help"),
    ("whatsapp", "de", "Jonas Weber", "beschwerde", "complaint"),
    ("viber", "es", "Lucía Gómez", "quiero hablar con una persona", "human"),
    ("whatsapp", "en", "Alice Novak", "i want to talk to a human", "human"),
]


@pytest.mark.parametrize("platform,locale,name,typed,intent", INTENTS)
async def test_free_text_reaches_the_right_flow(
    tp: Touchpoint, platform: str, locale: str, name: str, typed: str, intent: str
) -> None:
    user = PlatformUser(tp, platform, name=name, language_code=locale)
    await sign_up_in(user, locale, everything(tp))

    (reply,) = await user.say(typed)
    state = await conversation(tp, user)
    if intent == "help":
        assert reply.text == help_text(locale)
    elif intent == "menu":
        assert reply.text == t(locale, "menu.question")
        assert [full_label(b) for b in reply.buttons] == menu_labels(locale)
    elif intent == "complaint":
        assert reply.text == complaint_opening(locale)
        assert [full_label(b) for b in reply.buttons] == [t(locale, f"complaint.kind.{k}") for k in KINDS]
        assert (state.dialog, state.step) == ("complaint", "kind")
    else:
        assert person_passed(locale)(reply), reply.text
        assert state.mode == "agent"
        ticket = await handoff_ticket(tp, user)
        assert (ticket.kind, ticket.status) == ("handoff", "waiting_agent")
        assert await user.say(typed) == []  # the bot keeps quiet now


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_two_misunderstandings_in_a_row_offer_a_person(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    await sign_up_in(user, "en", everything(tp))

    (first,) = await user.say("blorp fnord")
    assert first.text == joined(t("en", "fallback.idle"), t("en", "menu.question"))
    assert [full_label(b) for b in first.buttons] == menu_labels("en")
    (second,) = await user.say("zzkq wibble")
    assert second.text == t("en", "engine.offer_person")
    assert second.labels == [t("en", "engine.person"), t("en", "engine.menu")]

    (handoff,) = await user.press(t("en", "engine.person"))
    assert person_passed("en")(handoff), handoff.text
    assert (await conversation(tp, user)).mode == "agent"
    assert (await handoff_ticket(tp, user)).status == "waiting_agent"


# ----------------------------------------------------------------------------- 2. Rasa NLU


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def app_with_rasa(
    tmp_path: Path, fake_platforms: FakePlatforms
) -> AsyncIterator[Callable[[str], Awaitable[Touchpoint]]]:
    """Starts the app with ``RASA_URL`` set (in-process state backend)."""
    started: list[Touchpoint] = []

    async def start(rasa_url: str) -> Touchpoint:
        database = f"sqlite+aiosqlite:///{tmp_path / 'rasa.db'}"
        settings = make_settings(fake_platforms.base_url, database, rasa_url=rasa_url)
        app = await start_touchpoint(settings, fake_platforms)
        started.append(app)
        return without_chat_pacing(app)

    yield start
    for app in started:
        await stop_touchpoint(app)


@pytest.fixture
async def fake_rasa() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """Rasa's ``POST /model/parse``, answering "complaint" at 0.95 to anything; (its URL, the bodies it got)."""
    received: list[dict[str, Any]] = []

    async def parse(request: web.Request) -> web.Response:
        body = await request.json()
        received.append(body)
        intent = {"name": "complaint", "confidence": 0.95}
        return web.json_response({"text": body.get("text"), "intent": intent, "entities": [], "intent_ranking": [intent]})

    app = web.Application()
    app.router.add_post("/model/parse", parse)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), received
    await server.close()


async def test_rasa_down_the_phrase_matcher_answers_and_the_log_says_so(
    app_with_rasa: Callable[[str], Awaitable[Touchpoint]], caplog: pytest.LogCaptureFixture
) -> None:
    tp = await app_with_rasa(f"http://127.0.0.1:{closed_port()}")
    user = PlatformUser(tp, "whatsapp")
    await sign_up_in(user, "en", everything(tp))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        (reply,) = await user.say("i want to talk to a human")
    assert person_passed("en")(reply), reply.text
    assert (await conversation(tp, user)).mode == "agent"
    assert any("rasa.unavailable" in record.getMessage() for record in caplog.records)


async def test_rasa_intent_starts_the_complaint(
    app_with_rasa: Callable[[str], Awaitable[Touchpoint]], fake_rasa: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = fake_rasa
    tp = await app_with_rasa(url)
    user = PlatformUser(tp, "telegram")
    await sign_up_in(user, "en", everything(tp))
    assert received == []  # button presses and the sign-up never ask Rasa

    sentence = "blorp fnord quux"  # nothing the phrase lists know: only Rasa can read it as a complaint
    (reply,) = await user.say(sentence)
    assert reply.text == complaint_opening("en")
    assert [body["text"] for body in received] == [sentence]
    state = await conversation(tp, user)
    assert (state.dialog, state.step) == ("complaint", "kind")
    # the answers to the complaint's own questions are not sent to Rasa
    await user.press(t("en", "complaint.kind.other"))
    await user.say("A-10023")
    assert len(received) == 1


# ----------------------------------------------------------------------------- 3. resume and expiry


async def age_conversation(tp: Touchpoint, user: PlatformUser, minutes: int) -> None:
    """Pretend the customer's last message came ``minutes`` ago."""
    at = datetime.now(timezone.utc) - timedelta(minutes=minutes)
    table = store.conversation_t
    statement = (
        update(table)
        .where(table.c.channel == user.platform, table.c.address == user.address)
        .values(last_inbound_at=at)
    )
    await tp.app[DB].write(lambda conn: conn.execute(statement))


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_flow_left_in_the_middle_resumes_in_time_and_restarts_after(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    await sign_up_in(user, "en", everything(tp))
    resume = config(tp).conversation.resume_minutes
    await user.say(command_word("en", "complaint"))
    await user.press(t("en", "complaint.kind.delivery"))

    await age_conversation(tp, user, resume - 10)  # back just in time: the answer continues the flow
    assert texts(await user.say("A-10023")) == [t("en", "complaint.description_question")]

    await age_conversation(tp, user, resume + 10)  # too late: a polite fresh start
    (restart,) = await user.say("The parcel never came.")
    assert restart.text == joined(t("en", "engine.start_over"), t("en", "menu.question"))
    assert [full_label(b) for b in restart.buttons] == menu_labels("en")
    state = await conversation(tp, user)
    assert (state.dialog, state.step) == ("menu", "choose")
    assert await tp.query("SELECT id FROM ticket") == []


# ----------------------------------------------------------------------------- 4. privacy


@pytest.mark.parametrize("platform", ["telegram", "whatsapp"])
async def test_my_data_arrives_after_the_confirmation(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    offer = await sign_up_in(user, "en", everything(tp), keep_offer=True)
    assert offer.buttons
    await user.press("Shoes")
    await user.press(t("en", "buttons.done"))
    [code] = await codes(tp, user)

    (screen,) = await user.say("show me my data")  # free text: the privacy intent opens the screen
    assert screen.text.startswith(t("en", "privacy.title"))
    assert t("en", "privacy.my_data") in [full_label(b) for b in screen.buttons]
    if platform == "telegram":
        replies = await user.press(t("en", "privacy.my_data"))
    else:
        replies = await user.say("my data")  # typed on the open screen, as the button says
    confirmation, report = replies
    assert confirmation.text == t("en", "privacy.my_data_sent")
    assert report.text.startswith(t("en", "mydata.title", shop=config(tp).shop_name))
    for heading in ("profile", "consents", "categories", "tickets", "surveys"):
        assert t("en", f"mydata.section.{heading}") in report.text
    assert t("en", "mydata.name", name="Alice") in report.text
    assert code.code in report.text and "Shoes" in report.text


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_delete_me_erases_the_customer_and_a_new_message_starts_afresh(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    answers = everything(tp, personalised=False)
    await sign_up_in(user, "en", answers)
    erased_id = await customer_id(tp, user)

    await user.say(command_word("en", "privacy"))
    (question,) = await user.press(t("en", "privacy.erase"))
    assert question.text == t("en", "privacy.erase_question")
    assert question.labels == [t("en", "privacy.erase_yes"), t("en", "privacy.erase_no")]
    assert texts(await user.press(t("en", "privacy.erase_yes"))) == [t("en", "privacy.erased")]

    [customer] = await tp.query("SELECT first_name, locale, erased_at FROM customer WHERE id = :c", c=erased_id)
    assert customer.erased_at is not None and customer.first_name is None and customer.locale is None
    assert await tp.query("SELECT id FROM channel_identity WHERE customer_id = :c", c=erased_id) == []
    assert await tp.query("SELECT id FROM conversation WHERE customer_id = :c", c=erased_id) == []
    log = await tp.query("SELECT purpose, granted, source FROM consent WHERE customer_id = :c ORDER BY id", c=erased_id)
    withdrawn = [(r.purpose, bool(r.granted)) for r in log if r.source == "erasure"]
    assert withdrawn == [(p, False) for p, granted in answers.items() if granted]  # the anonymised record stays

    # the same address writes again: a new customer, a new sign-up
    (hello,) = await user.say("Hi")
    assert hello.text == intro(tp, "en", "Alice")
    assert await customer_id(tp, user) != erased_id


async def test_pause_offers_withdraws_every_marketing_consent_for_thirty_days(tp: Touchpoint) -> None:
    user = PlatformUser(tp, "viber")
    await sign_up_in(user, "en", everything(tp))
    cid = await customer_id(tp, user)

    await user.say(command_word("en", "privacy"))
    (paused,) = await user.press(t("en", "privacy.pause"))
    [customer] = await tp.query("SELECT marketing_paused_until FROM customer WHERE id = :c", c=cid)
    until = datetime.fromisoformat(str(customer.marketing_paused_until)).replace(tzinfo=timezone.utc)
    assert timedelta(days=30) - timedelta(minutes=5) < until - datetime.now(timezone.utc) <= timedelta(days=30)
    assert paused.text.startswith(t("en", "privacy.paused", date=I18N.format_date("en", until)))
    marketing = [p.id for p in config(tp).consent_purposes if p.marketing]
    for purpose in marketing:
        assert t("en", "list.item", item=t("en", f"consent.{purpose}.name")) in paused.text

    log = await tp.query("SELECT purpose, granted, source FROM consent WHERE customer_id = :c ORDER BY id", c=cid)
    assert [(r.purpose, bool(r.granted)) for r in log if r.source == "pause"] == [(p, False) for p in marketing]
