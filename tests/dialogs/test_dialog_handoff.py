"""Talk to a person: agent mode, the bot falls silent, and the customer learns when to expect an answer."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bot.config import Support
from bot.dialog import DialogEngine
from bot.turn import ConsentChange, Handoff
from tests.dialogs.conftest import Chat
from tests.dialogs.test_dialog_complaint import returning

WEDNESDAY_10 = datetime(2026, 11, 18, 10, 0, tzinfo=timezone.utc)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def handed_over(i18n, lang: str, when: str) -> str:
    """The one message of a handover: a person takes over, when they answer, the bot is quiet."""
    stop = i18n.words(lang, "commands.stop")[0]
    return "\n\n".join([i18n.text(lang, "handoff.passed"), when, i18n.text(lang, "handoff.quiet", stop=stop)])


@pytest.fixture
def chat(make_chat):
    return returning(make_chat())


def within(i18n, lang: str, minutes: int) -> str:
    return i18n.plural(lang, "handoff.reply_within", "handoff.reply_within.plural", minutes)


# ----------------------------------------------------------------------------- asked for explicitly


async def test_the_human_command_hands_over_at_once_and_the_bot_falls_silent(chat, t, i18n):
    await chat.command("human")
    assert chat.state.mode == "agent"
    assert chat.handoffs == [Handoff(ticket=None, reason="customer_request")]
    assert chat.texts == [handed_over(i18n, "en", within(i18n, "en", 60))]
    assert chat.state.dialog is None

    assert await chat.send("Hello, is anybody there?") == []
    assert await chat.command("menu") == []
    assert await chat.press("complaint") == []
    assert chat.state.mode == "agent" and len(chat.handoffs) == 1


async def test_stop_still_works_while_a_person_has_taken_over(chat):
    await chat.command("human")
    await chat.send("stop")
    assert all(not change.granted for change in chat.effects if isinstance(change, ConsentChange))
    assert chat.granted("marketing") is False
    assert chat.messages == [] and chat.state.mode == "agent"


@pytest.mark.parametrize("lang", ["en", "de", "es"])
async def test_a_typed_request_for_a_person_in_each_language(make_chat, t, i18n, lang):
    chat = returning(make_chat(language_code=lang), lang)
    await chat.send(i18n.words(lang, "commands.human")[1])  # "agent", "mensch", "agente"
    assert chat.state.mode == "agent"
    assert chat.texts == [handed_over(i18n, lang, within(i18n, lang, 60))]


async def test_the_menu_offers_a_person(chat):
    await chat.command("menu")
    assert "handoff" in chat.button_ids
    await chat.press("handoff")
    assert chat.state.mode == "agent"
    assert chat.handoffs == [Handoff(ticket=None, reason="customer_request")]


async def test_asking_for_a_person_in_the_middle_of_a_flow_drops_it(chat, t, i18n):
    await chat.command("complaint")
    await chat.press("kind:delivery")
    await chat.command("human")
    # the interrupted question is not asked again: the bot promised to stay quiet
    assert chat.texts == [handed_over(i18n, "en", within(i18n, "en", 60))]
    assert chat.state.dialog is None and chat.state.slots == {}
    assert chat.tickets == []


# ----------------------------------------------------------------------------- when a person answers


async def test_shortly_before_closing_the_promise_is_closing_time(chat, t, i18n):
    chat.now = utc(2026, 11, 18, 17, 35)
    await chat.command("human")
    assert chat.texts == [handed_over(i18n, "en", within(i18n, "en", 25))]


@pytest.mark.parametrize(
    ("now", "msgid", "day"),
    [
        (utc(2026, 11, 18, 7, 0), "handoff.reply_today", None),  # Wednesday before opening
        (utc(2026, 11, 18, 19, 0), "handoff.reply_tomorrow", None),  # Wednesday evening
        (utc(2026, 11, 20, 19, 0), "handoff.reply_on_day", "Monday"),  # Friday evening
        (utc(2026, 11, 22, 12, 0), "handoff.reply_tomorrow", None),  # Sunday
    ],
)
async def test_outside_opening_hours_the_customer_learns_the_day_and_hour(chat, t, i18n, now, msgid, day):
    chat.now = now
    await chat.command("human")
    params = {"time": "9:00\u202fAM", **({"day": day} if day else {})}
    assert chat.texts == [handed_over(i18n, "en", t("en", msgid, **params))]
    assert chat.state.mode == "agent"


@pytest.mark.parametrize(("lang", "day", "time"), [("de", "Montag", "09:00"), ("es", "lunes", "9:00")])
async def test_the_day_and_hour_in_german_and_spanish(make_chat, t, i18n, lang, day, time):
    chat = returning(make_chat(language_code=lang), lang)
    chat.now = utc(2026, 11, 21, 10, 0)  # Saturday
    await chat.command("human")
    assert chat.texts == [handed_over(i18n, lang, t(lang, "handoff.reply_on_day", day=day, time=time))]


async def test_hours_are_shown_on_the_support_teams_clock(config, i18n, t):
    berlin = config.model_copy(update={"support": Support(timezone="Europe/Berlin", opens="08:30")})
    chat = returning(Chat(DialogEngine(berlin, i18n)), "de")
    chat.now = utc(2026, 11, 18, 6, 0)  # 07:00 in Berlin
    await chat.command("human")
    assert chat.texts == [handed_over(i18n, "de", t("de", "handoff.reply_today", time="08:30"))]
    chat.state.mode = "bot"  # a person handed back
    chat.now = utc(2026, 11, 18, 7, 45)  # 08:45 in Berlin: open
    await chat.command("human")
    assert chat.texts == [handed_over(i18n, "de", within(i18n, "de", 60))]


# ----------------------------------------------------------------------------- offered by the bot


async def test_taking_the_engines_offer_of_a_person_hands_over_without_asking_again(chat, i18n):
    await chat.command("complaint")
    await chat.press("kind:delivery")
    await chat.press("skip:order")
    await chat.send("It never came.")
    await chat.send("what do you mean")  # the attachment question wants a file or a button
    await chat.send("??? I don't understand")
    assert "handoff" in chat.button_ids  # the engine's own offer after two misunderstandings
    await chat.press("handoff")
    assert chat.state.mode == "agent" and chat.state.dialog is None
    assert chat.handoffs == [Handoff(ticket=None, reason="customer_request")]
    assert chat.texts == [handed_over(i18n, "en", within(i18n, "en", 60))]
