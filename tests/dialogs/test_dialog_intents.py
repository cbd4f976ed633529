"""Free text reaches the right conversation: the engine's intent step, misunderstandings, NLU.

The complaint, handoff and categories flows are replaced here by stand-ins
that record what started them, so these tests pin the engine's routing and
not those flows' texts. One test runs the real complaint dialog to check the
sentence arrives as its draft.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import Intents, ShopConfig
from bot.dialog import Context, Dialog, DialogEngine, Registry, Step, Transition, end, go, literal_button
from bot.events import Kind
from bot.i18n import I18n
from bot.intents import Intent
from dialogs import DIALOGS
from tests.dialogs.conftest import Chat, signed_up

STAND_INS = ("complaint", "handoff", "categories")
COMMAND_OF = {"complaint": "complaint", "handoff": "human", "categories": "categories"}
# Marketing "no": no welcome offer follows the sign-up, so it ends idle.
QUIET_SIGNUP = ("no", "no", "yes", "no")


def stand_in(name: str, command: str | None = None) -> Dialog:
    """A dialog that records the text and intent that started it, then asks one question."""

    def begin(ctx: Context) -> Transition:
        ctx.slots.update(heard=ctx.event.text, intent=ctx.intent.name if ctx.intent else None, **ctx.slots)
        return go("ask")

    def prompt(ctx: Context) -> None:
        ctx.ask_text(f"[{name}]", [literal_button(f"ok:{name}", "OK")])

    return Dialog(
        name=name,
        commands=(command,) if command else (),
        begin=begin,
        steps={"ask": Step(prompt=prompt, on_choice=lambda ctx, choice: end())},
    )


def stand_in_registry(*extra: Dialog, without: tuple[str, ...] = ()) -> Registry:
    """The real dialogs, with stand-ins for the flows other tests cover, minus ``without``."""
    taken = {d.name for d in extra} | {c for d in extra for c in d.commands}
    kept = [d for d in DIALOGS if d.name not in STAND_INS and d.name not in taken and not set(d.commands) & taken]
    stand_ins = [stand_in(n, COMMAND_OF[n]) for n in STAND_INS if n not in taken and COMMAND_OF[n] not in taken]
    return Registry([d for d in [*kept, *stand_ins, *extra] if d.name not in without])


@pytest.fixture
def routed(config: ShopConfig, i18n: I18n):
    """A signed-up customer (in ``lang``) talking to an engine with stand-ins."""

    async def make(lang: str = "en", registry: Registry | None = None, **engine_args: Any) -> Chat:
        engine = DialogEngine(config, i18n, registry or stand_in_registry(), **engine_args)
        return await signed_up(Chat(engine, language_code=lang), QUIET_SIGNUP)

    return make


async def in_consent_question(chat: Chat) -> Chat:
    """Re-open the sign-up at its first consent question (a step without free input)."""
    chat.consent_log.clear()
    await chat.command("start")
    await chat.press("continue")
    assert chat.state.step == "consent"
    return chat


# ----------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("lang", "text", "dialog"),
    [
        ("en", "my coupon didn't work", "complaint"),
        ("en", "I was charged full price", "complaint"),
        ("de", "die Lieferung ist nicht angekommen", "complaint"),
        ("es", "el pedido llegó roto", "complaint"),
        ("en", "talk to a persn", "handoff"),
        ("de", "mit einem mitarbieter sprechen", "handoff"),
        ("es", "hablar con una presona", "handoff"),
        ("en", "my favourite categries", "categories"),
        ("de", "meine kategorien ändern", "categories"),
        ("es", "mis categorías favoritas", "categories"),
        ("en", "privacy setings", "privacy"),
        ("es", "borrar mis datos", "privacy"),
        ("en", "cange language", "language"),
        ("de", "sprache wechlsen", "language"),
        ("en", "show me the manu", "menu"),
    ],
)
async def test_free_text_starts_the_dialog_of_its_intent(routed, lang, text, dialog):
    chat = await routed(lang)
    await chat.send(text)
    assert chat.state.dialog == dialog
    if dialog in STAND_INS:
        assert chat.texts == [f"[{dialog}]"]
        assert chat.state.slots[dialog] == {"heard": text, "intent": COMMAND_OF[dialog]}


async def test_a_complaint_sentence_becomes_the_real_complaint_dialogs_draft(config, i18n):
    chat = await signed_up(Chat(DialogEngine(config, i18n)), QUIET_SIGNUP)
    await chat.send("My coupon didn't work at checkout")
    assert chat.state.dialog == "complaint"
    assert chat.state.slots["complaint"]["description"] == "My coupon didn't work at checkout"


async def test_help_with_a_typo_shows_the_help(routed, t):
    chat = await routed("de")
    await chat.send("hilef")
    assert chat.texts[0].startswith(t("de", "help.text").split("\n")[0])  # "Das kann ich für Sie tun:"
    assert chat.state.dialog is None


async def test_a_stop_sentence_switches_marketing_off(routed):
    chat = await routed("en")
    await chat.send("please stop sending me messages")
    assert sorted(chat.consent_changes()) == [("location", False, "stop"), ("marketing", False, "stop"), ("personalised", False, "stop"), ("surveys", False, "stop")]


async def test_a_negated_stop_switches_nothing_off(routed, t, joined):
    chat = await routed("en")
    await chat.send("please don't stop sending me offers")
    assert chat.consent_changes() == []
    assert chat.texts == [joined(t("en", "fallback.idle"), t("en", "menu.question"))]


async def test_a_greeting_shows_the_menu_with_a_greeting(routed, t, joined):
    chat = await routed("es")
    await chat.send("buenos dias!")
    assert chat.texts == [joined(t("es", "menu.welcome_back_name", name="Alice"), t("es", "menu.question"))]
    assert chat.state.dialog == "menu"


async def test_thanks_when_idle_is_answered_and_nothing_starts(routed, t):
    chat = await routed("de")
    await chat.send("Vielen Dank!")
    assert chat.texts == [t("de", "engine.you_are_welcome")]
    assert chat.state.dialog is None


async def test_thanks_in_the_middle_of_a_question_asks_it_again(routed, t, joined):
    chat = await in_consent_question(await routed("en"))
    await chat.send("thanks a lot")
    assert chat.texts == [joined(t("en", "engine.you_are_welcome"), t("en", "consent.marketing.question", shop="Shop"))]
    assert chat.button_ids == ["yes:marketing", "no:marketing"]
    assert chat.state.misses == 0


async def test_an_intent_in_the_middle_of_a_flow_interrupts_it_and_the_flow_resumes(routed, t):
    chat = await in_consent_question(await routed("en"))
    await chat.send("my coupon didn't work")
    assert chat.state.dialog == "complaint"
    await chat.press("ok:complaint")
    assert chat.texts == [t("en", "consent.marketing.question", shop="Shop")]
    assert chat.state.dialog == "signup"


async def test_an_offered_answer_wins_over_an_intent(routed, t):
    chat = await routed("en")
    await chat.send("language")
    await chat.send("Deutsch")  # a language intent word, but here the label of an offered button
    assert chat.texts == [t("de", "language.changed")]
    chat = await in_consent_question(chat)
    await chat.send("nein")  # a no-word, never an intent
    assert chat.granted("marketing") is False


async def test_a_step_that_asked_for_free_text_gets_the_sentence_as_is(config, i18n):
    heard: list[str] = []

    def typed(ctx: Context) -> Transition:
        heard.append(ctx.event.text)
        return end()

    note = Dialog(
        name="note",
        commands=("categories",),
        begin=lambda ctx: go("write"),
        steps={"write": Step(prompt=lambda ctx: ctx.ask_text("?", []), on_choice=lambda ctx, c: end(), on_input=typed)},
    )
    chat = await signed_up(Chat(DialogEngine(config, i18n, stand_in_registry(note))), QUIET_SIGNUP)
    await chat.send("categories")
    await chat.send("talk to a person, my coupon didn't work")
    assert heard == ["talk to a person, my coupon didn't work"]
    assert chat.state.dialog is None


async def test_an_intent_without_a_registered_dialog_is_not_understood(routed, t, joined):
    chat = await routed("en", stand_in_registry(without=("categories",)))
    await chat.send("my favourite categories")
    assert chat.texts == [joined(t("en", "fallback.idle"), t("en", "menu.question"))]


async def test_the_threshold_decides_what_is_acted_on(routed, config, t, joined):
    strict = config.model_copy(update={"intents": Intents(threshold=0.95)})
    chat = await routed("en")
    chat.engine = DialogEngine(strict, chat.engine.i18n, stand_in_registry())
    await chat.send("hlep")  # a typo: confident, but not 95% sure
    assert chat.texts == [joined(t("en", "fallback.idle"), t("en", "menu.question"))]
    await chat.send("help me")  # an exact phrase is
    assert chat.texts[0].startswith("Here's what I can do:")


# ----------------------------------------------------------------------------- misunderstandings


async def test_two_misunderstandings_in_a_row_offer_a_person(routed, t, joined):
    chat = await in_consent_question(await routed("en"))
    question = t("en", "consent.marketing.question", shop="Shop")
    await chat.send("purple")
    assert chat.texts == [joined(t("en", "fallback.retry"), question)]
    await chat.send("banana")
    assert chat.texts == [t("en", "engine.offer_person")]
    assert chat.buttons == [("handoff", "Talk to a person"), ("menu", "Menu")]
    assert chat.state.dialog == "signup"  # the question stays open underneath

    await chat.press("handoff")
    assert chat.state.dialog == "handoff" and chat.texts == ["[handoff]"]
    assert chat.state.slots["handoff"] == {"heard": "", "intent": None}
    await chat.press("ok:handoff")
    assert chat.texts == [question]  # the interrupted sign-up resumes


async def test_the_offer_can_be_answered_by_number_or_lead_to_the_menu(routed, t):
    chat = await in_consent_question(await routed("de"))
    await chat.send("lila")
    await chat.send("banane")
    assert chat.labels == ["Unser Team fragen", "Menü"]
    await chat.send("2")
    assert chat.state.dialog == "menu"
    assert chat.texts[-1].endswith(t("de", "menu.question"))


async def test_after_the_offer_a_further_miss_gives_the_hint_and_the_question(routed, t, joined):
    chat = await in_consent_question(await routed("en"))
    for text in ("purple", "banana", "kiwi"):
        await chat.send(text)
    hint = t("en", "fallback.help_hint", help="help", menu="menu")
    assert chat.texts == [joined(hint, t("en", "consent.marketing.question", shop="Shop"))]
    await chat.answer("yes")
    assert chat.granted("marketing") is True and chat.state.misses == 0


async def test_without_a_handoff_dialog_the_second_miss_gives_the_hint(routed, t, joined):
    chat = await in_consent_question(await routed("en", stand_in_registry(without=("handoff",))))
    await chat.send("purple")
    await chat.send("banana")
    hint = t("en", "fallback.help_hint", help="help", menu="menu")
    assert chat.texts == [joined(hint, t("en", "consent.marketing.question", shop="Shop"))]
    assert chat.button_ids == ["yes:marketing", "no:marketing"]


async def test_an_idle_misunderstanding_counts_towards_the_offer(routed, t, joined):
    chat = await routed("en")
    await chat.send("purple")
    assert chat.texts == [joined(t("en", "fallback.idle"), t("en", "menu.question"))]
    await chat.send("banana")
    assert chat.button_ids == ["handoff", "menu"]


async def test_a_steps_own_handoff_button_goes_to_the_step(config, i18n):
    chosen: list[str] = []

    def pick(ctx: Context, choice: str) -> Transition:
        chosen.append(choice)
        return end()

    def prompt(ctx: Context) -> None:
        ctx.ask_text("?", [literal_button("handoff", "Person")])

    ticket = Dialog(
        name="ticket", commands=("complaint",), begin=lambda ctx: go("next"), steps={"next": Step(prompt, pick)}
    )
    chat = await signed_up(Chat(DialogEngine(config, i18n, stand_in_registry(ticket))), QUIET_SIGNUP)
    await chat.send("complaint")
    await chat.press("handoff")
    assert chosen == ["handoff"] and chat.state.dialog is None


async def test_a_stale_press_of_the_offer_shows_the_question_again(routed, t):
    chat = await in_consent_question(await routed("en"))
    await chat.send("purple")
    await chat.send("banana")
    await chat.press("yes:marketing")  # the question's older button: the offer replaced it
    assert chat.texts == [t("en", "consent.marketing.question", shop="Shop")]
    assert chat.granted("marketing") is None
    await chat.press("handoff")  # the offer is no longer open either
    assert chat.state.dialog == "signup" and chat.texts == [t("en", "consent.marketing.question", shop="Shop")]


# ----------------------------------------------------------------------------- an NLU backend


class ScriptedNlu:
    """An in-memory ``NluBackend``: answers from a script and records what it was asked."""

    def __init__(self, answers: dict[str, Intent | None]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str | None]] = []

    async def parse(self, text: str, *, message_id: str | None = None) -> Intent | None:
        self.asked.append((text, message_id))
        return self.answers.get(text)


async def test_the_nlu_intent_is_used_above_the_threshold(routed):
    nlu = ScriptedNlu({"the shoes hurt": Intent("complaint", 0.91)})
    chat = await routed("en", nlu=nlu)
    await chat.send("the shoes hurt")
    assert chat.state.dialog == "complaint"
    assert chat.state.slots["complaint"] == {"heard": "the shoes hurt", "intent": "complaint"}
    assert [text for text, _ in nlu.asked] == ["the shoes hurt"]
    assert nlu.asked[0][1]  # the event id travels as Rasa's message_id


async def test_an_unsure_or_unknown_nlu_intent_is_not_acted_on(routed, t, joined):
    nlu = ScriptedNlu({"hlep": Intent("help", 0.42), "hi": Intent("nlu_fallback", 0.99)})
    chat = await routed("en", nlu=nlu)
    await chat.send("hlep")  # the phrase matcher would say help; the backend's answer stands
    assert chat.texts == [joined(t("en", "fallback.idle"), t("en", "menu.question"))]
    await chat.send("hi")
    assert chat.state.misses == 2 and chat.button_ids == ["handoff", "menu"]


async def test_without_an_nlu_answer_the_phrase_matcher_decides(routed):
    nlu = ScriptedNlu({})  # None for everything: the backend is down
    chat = await routed("es", nlu=nlu)
    await chat.send("mi cupon no funciona")
    assert chat.state.dialog == "complaint"
    assert nlu.asked and nlu.asked[-1][0] == "mi cupon no funciona"


async def test_the_nlu_is_asked_only_for_text_that_needs_an_intent(routed):
    nlu = ScriptedNlu({})
    chat = await routed("en", nlu=nlu)
    nlu.asked.clear()
    await chat.send("menu")  # a command word
    await chat.press("language")  # a button
    await chat.send("Deutsch")  # an offered answer
    await chat.command("help")
    await chat.send("42")  # no letters
    await chat.event(Kind.MEDIA, text="")
    chat.state.mode = "agent"
    await chat.send("my coupon didn't work")  # a person has taken over
    assert nlu.asked == []
    chat.state.mode = "bot"
    await chat.send("my coupon didn't work")
    assert [text for text, _ in nlu.asked] == ["my coupon didn't work"]


class BrokenNlu:
    """A backend with a bug: it raises instead of returning None."""

    async def parse(self, text: str, *, message_id: str | None = None) -> Intent | None:
        raise RuntimeError("model file missing")


async def test_a_broken_nlu_backend_never_costs_the_customer_an_answer(routed, caplog):
    chat = await routed("en", nlu=BrokenNlu())
    await chat.send("my coupon didn't work")
    assert chat.state.dialog == "complaint"
    assert any(r.message.startswith("nlu.failed") for r in caplog.records)
