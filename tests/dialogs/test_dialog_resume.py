"""Coming back to a conversation: resume within the time, restart politely after it; triggers.

``config.conversation.resume_minutes`` (a day by default) is how long a flow
waits at a step for the customer. A TRIGGER (the shop or a timer) starts a
dialog here and stacks whatever runs; it is never the customer coming back.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from bot.config import ConversationRules, ShopConfig
from bot.dialog import Context, Dialog, DialogEngine, Step, Transition, end, go, literal_button
from bot.events import Kind, Media
from bot.i18n import I18n
from bot.turn import SurveyAnswer
from tests.dialogs.conftest import Chat, signed_up
from tests.dialogs.test_dialog_intents import QUIET_SIGNUP, in_consent_question, stand_in_registry

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
DAY = timedelta(minutes=24 * 60)


def poll() -> Dialog:
    """A dialog the shop triggers: one question about an order, answered with a button."""

    def begin(ctx: Context) -> Transition:
        ctx.say_text(f"poll {ctx.slots['order']}")
        return go("rate")

    def rated(ctx: Context, choice: str) -> Transition:
        ctx.emit(SurveyAnswer("poll", ctx.slots["order"], "rate", choice))
        return end()

    def prompt(ctx: Context) -> None:
        ctx.ask_text("rate?", [literal_button("good:poll", "Good"), literal_button("bad:poll", "Bad")])

    return Dialog(name="poll", begin=begin, steps={"rate": Step(prompt=prompt, on_choice=rated)})


@pytest.fixture
def chat_at(config: ShopConfig, i18n: I18n):
    """A signed-up customer at T0 (``lang``), talking to an engine with stand-ins and the poll."""

    async def make(lang: str = "en", *, chat_type: str = "private", config_: ShopConfig | None = None) -> Chat:
        engine = DialogEngine(config_ or config, i18n, stand_in_registry(poll()))
        chat = Chat(engine, language_code=lang)
        chat.now = T0
        await signed_up(chat, QUIET_SIGNUP)
        chat.chat_type = chat_type
        return chat

    return make


def question(t, lang: str = "en", purpose: str = "marketing") -> str:
    return t(lang, f"consent.{purpose}.question", shop="Shop")


# ----------------------------------------------------------------------------- resume and expiry


async def test_an_answer_within_the_resume_time_continues_where_it_stopped(chat_at, t):
    chat = await in_consent_question(await chat_at())
    chat.now = T0 + DAY  # exactly the resume time: still waiting
    await chat.answer("yes")
    assert chat.granted("marketing") is True
    assert chat.texts == [question(t, "en", "personalised")]


async def test_a_text_after_the_resume_time_restarts_politely_with_the_menu(chat_at, t, joined):
    chat = await in_consent_question(await chat_at())
    chat.now = T0 + DAY + timedelta(seconds=1)
    await chat.send("yes")
    assert chat.texts == [joined(t("en", "engine.start_over"), t("en", "menu.question"))]
    assert chat.state.dialog == "menu" and "_stack" not in chat.state.slots
    assert chat.granted("marketing") is None and chat.state.misses == 0


async def test_a_command_after_the_resume_time_still_runs_and_nothing_resumes(chat_at, t):
    chat = await in_consent_question(await chat_at("de"))
    chat.now = T0 + 3 * DAY
    await chat.send("hilfe")
    assert chat.texts[0] == t("de", "engine.start_over")
    assert chat.texts[1].startswith(t("de", "help.text").split("\n")[0])
    assert len(chat.texts) == 2 and chat.state.dialog is None


async def test_a_complaint_after_the_resume_time_starts_the_complaint(chat_at, t, joined):
    chat = await in_consent_question(await chat_at("es"))
    chat.now = T0 + 2 * DAY
    await chat.send("el pedido llegó roto")
    assert chat.texts == [joined(t("es", "engine.start_over"), "[complaint]")]
    await chat.press("ok:complaint")
    assert chat.state.dialog is None  # the old sign-up question does not come back


async def test_an_old_button_after_the_resume_time_records_nothing(chat_at, t, joined):
    chat = await in_consent_question(await chat_at())
    chat.now = T0 + 2 * DAY
    await chat.press("yes:marketing")
    assert chat.texts == [joined(t("en", "engine.start_over"), t("en", "menu.question"))]
    assert chat.effects == [] and chat.granted("marketing") is None


async def test_media_after_the_resume_time_gets_the_menu(chat_at, t, joined):
    chat = await in_consent_question(await chat_at())
    chat.now = T0 + 2 * DAY
    await chat.event(Kind.MEDIA, media=Media(type="photo", ref="AgADBAAD"))
    assert chat.texts == [joined(t("en", "engine.start_over"), t("en", "menu.question"))]


async def test_a_location_shared_when_idle_is_thanked_or_explained(make_chat, t):
    with_consent = await signed_up(make_chat(), ("yes", "no", "yes", "no"))  # the third purpose is location
    await with_consent.event(Kind.LOCATION, location=(52.5, 13.4))
    assert with_consent.texts == [t("en", "engine.location_thanks")]
    without = await signed_up(make_chat(address="5550100999"), ("yes", "no", "no", "no"))
    await without.event(Kind.LOCATION, location=(52.5, 13.4))
    assert without.texts == [t("en", "engine.location_no_consent", privacy="privacy")]


async def test_the_resume_time_comes_from_the_config(chat_at, config, t, joined):
    short = config.model_copy(update={"conversation": ConversationRules(resume_minutes=5)})
    chat = await in_consent_question(await chat_at(config_=short))
    chat.now = T0 + timedelta(minutes=4)
    await chat.send("language")  # an interruption is an answer too: the clock restarts
    chat.now = T0 + timedelta(minutes=8)
    await chat.press("de")
    assert chat.texts[-1].endswith(question(t, "de"))
    chat.now = T0 + timedelta(minutes=14)
    await chat.answer("yes")
    assert chat.texts == [joined(t("de", "engine.start_over"), t("de", "menu.question"))]
    assert chat.granted("marketing") is None


async def test_idle_conversations_have_nothing_to_restart(chat_at, t):
    chat = await chat_at()
    chat.now = T0 + 30 * DAY
    await chat.send("help")
    assert chat.texts[0].startswith("Here's what I can do:")


# ----------------------------------------------------------------------------- language at any step


@pytest.mark.parametrize("asked_by", ["language", "can we speak german"])
async def test_a_language_change_asks_the_open_question_again_in_the_new_language(chat_at, t, joined, asked_by):
    chat = await in_consent_question(await chat_at())
    await chat.send(asked_by)
    assert chat.texts == [t("en", "language.question")]
    await chat.press("de")
    assert chat.texts == [joined(t("de", "language.changed"), question(t, "de"))]
    assert chat.labels == ["Ja", "Nein"]
    await chat.send("ja")
    assert chat.granted("marketing") is True


# ----------------------------------------------------------------------------- triggers


async def test_a_trigger_starts_its_dialog_with_the_slots_and_the_interrupted_one_resumes(chat_at, t, joined):
    chat = await in_consent_question(await chat_at())
    await chat.trigger("poll", order="A-1001")
    assert chat.texts == [joined("poll A-1001", "rate?")]
    assert chat.state.slots["_stack"] == [["signup", "consent"]]
    await chat.press("good:poll")
    assert chat.survey_answers == [SurveyAnswer("poll", "A-1001", "rate", "good:poll")]
    assert chat.texts == [question(t)]
    await chat.answer("no")
    assert chat.granted("marketing") is False


async def test_a_trigger_when_idle_ends_idle(chat_at):
    chat = await chat_at()
    await chat.trigger("poll", order="A-7")
    await chat.press("bad:poll")
    assert chat.messages == [] and chat.state.dialog is None and chat.state.slots == {}


async def test_a_triggered_question_waits_longer_than_the_resume_time(chat_at):
    chat = await chat_at()
    await chat.trigger("poll", order="A-1001")
    chat.now = T0 + 3 * DAY  # the dialog that was triggered decides how long it stays open
    await chat.press("good:poll")
    assert chat.survey_answers == [SurveyAnswer("poll", "A-1001", "rate", "good:poll")]


async def test_a_trigger_drops_a_flow_left_too_long_without_a_restart_message(chat_at, joined):
    chat = await in_consent_question(await chat_at())
    chat.now = T0 + 2 * DAY
    await chat.trigger("poll", order="A-1001")
    assert chat.texts == [joined("poll A-1001", "rate?")]  # no "let's start over": nobody came back
    assert "_stack" not in chat.state.slots
    await chat.press("good:poll")
    assert chat.messages == [] and chat.state.dialog is None


async def test_a_trigger_is_silent_while_a_person_has_taken_over(chat_at):
    chat = await chat_at()
    chat.state.mode = "agent"
    await chat.trigger("poll", order="A-1001")
    assert chat.messages == [] and chat.effects == []
    assert chat.state.dialog is None and chat.state.mode == "agent"


async def test_a_trigger_does_nothing_in_a_group(chat_at):
    chat = await chat_at(chat_type="group")
    await chat.trigger("poll", order="A-1001")
    assert chat.messages == [] and chat.state.dialog is None


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        json.dumps(["poll"]),
        json.dumps({"slots": {"order": "A-1"}}),
        json.dumps({"dialog": "poll", "slots": ["A-1"]}),
        json.dumps({"dialog": "_stack"}),
        json.dumps({"dialog": "nonexistent", "slots": {}}),
        None,
    ],
)
async def test_a_bad_trigger_is_logged_and_changes_nothing(chat_at, caplog, t, payload):
    chat = await in_consent_question(await chat_at())
    before = chat.state.slots
    with caplog.at_level(logging.WARNING, logger="bot.dialog"):
        await chat.event(Kind.TRIGGER, payload=payload)
    assert chat.messages == [] and chat.effects == []
    assert (chat.state.dialog, chat.state.step, chat.state.slots) == ("signup", "consent", before)
    assert any(r.message.startswith("trigger.") for r in caplog.records)
    await chat.press("yes:marketing")  # the open question is still open
    assert chat.granted("marketing") is True
