"""The engine's own rules, shown with small dialogs written for the test."""

from __future__ import annotations

import pytest

from bot.dialog import (
    Context,
    Dialog,
    DialogEngine,
    Registry,
    Step,
    button,
    end,
    go,
    literal_button,
    normalise,
    resolve_choice,
    stay,
    switch,
    yes_no,
)
from bot.events import Inbound, Kind, Media
from bot.turn import ConsentChange, ConsentState, ConversationState, CustomerSnapshot, TurnInput
from dialogs import DIALOGS
from dialogs.signup import SIGNUP


def registry_with(*dialogs: Dialog) -> Registry:
    """The real dialogs, with ``dialogs`` replacing those of the same name or command."""
    replaced = {d.name for d in dialogs} | {c for d in dialogs for c in d.commands}
    kept = [d for d in DIALOGS if d.name not in replaced and not set(d.commands) & replaced]
    return Registry([*kept, *dialogs])


@pytest.mark.parametrize(
    ("typed", "normal"),
    [
        ("  ¡Sí!  ", "si"),
        ("JA", "ja"),
        ("Let's start", "lets start"),
        ("Español", "espanol"),
        ("STOP_PROMOS", "stop promos"),
        ("yes 👍🏽", "yes"),
        ("👍🏽", "👍"),
        ("?", "?"),
        ("Menü", "menu"),
        ("２", "2"),
    ],
)
def test_normalise(typed, normal):
    assert normalise(typed) == normal


OFFERED = [{"id": "yes", "label": "Ja", "means": "yes"}, {"id": "no", "label": "Nein", "means": "no"}]
SYNONYMS = {"yes": frozenset({"ja", "yes", "ok"}), "no": frozenset({"nein", "no"})}


@pytest.mark.parametrize(
    ("kind", "value", "picked"),
    [
        (Kind.BUTTON, "no", "no"),
        (Kind.BUTTON, "#1", "yes"),
        (Kind.BUTTON, "#3", None),
        (Kind.BUTTON, "maybe", None),
        (Kind.TEXT, "nein!", "no"),
        (Kind.TEXT, "OK", "yes"),
        (Kind.TEXT, "2", "no"),
        (Kind.TEXT, "0", None),
        (Kind.TEXT, "yes please", None),
        (Kind.TEXT, "", None),
    ],
)
def test_resolve_choice(kind, value, picked):
    fields = {"payload": value} if kind is Kind.BUTTON else {"text": value}
    event = Inbound(channel="telegram", address="1", event_id="e", kind=kind, **fields)
    assert resolve_choice(event, OFFERED, SYNONYMS) == picked


def test_registry_rejects_duplicates_and_missing_commands():
    with pytest.raises(ValueError, match="duplicate dialog"):
        Registry([*DIALOGS, SIGNUP])
    with pytest.raises(ValueError, match="no dialog handles"):
        Registry([d for d in DIALOGS if "help" not in d.commands])
    with pytest.raises(ValueError, match="bad or duplicate command"):
        Registry([*DIALOGS, Dialog(name="other", begin=lambda ctx: end(), commands=("dance",))])


def turn(kind: Kind, state: ConversationState | None = None, *, is_new: bool = False, consents=(), **fields):
    event = Inbound(channel="viber", address="u1", event_id="e1", kind=kind, language_code="en", **fields)
    customer = CustomerSnapshot(id=1, first_name="Alice", locale="en", channel="viber", consents=consents, is_new=is_new)
    return TurnInput(event=event, state=state or ConversationState(), customer=customer)


async def test_started_always_yields_exactly_one_message(config, i18n):
    def chatty_begin(ctx: Context):
        ctx.say("signup.hello", shop="Shop")
        ctx.say("menu.welcome_back")
        return go("ask")

    chatty = Dialog(
        name="chatty",
        commands=("start",),
        begin=chatty_begin,
        steps={"ask": Step(prompt=lambda ctx: ctx.ask("signup.language_check", yes_no()), on_choice=lambda c, x: end())},
    )
    engine = DialogEngine(config, i18n, registry_with(chatty))
    result = await engine.handle(turn(Kind.STARTED, is_new=True))
    assert len(result.messages) == 1
    message = result.messages[0]
    assert message.text.split("\n\n") == [
        "Hi! 👋 Welcome to Shop.",
        "Welcome back!",
        "I'll write to you in English. Shall we continue?",
    ]
    assert [b.id for b in message.buttons] == ["yes", "no"]


def _stoppable_dialog() -> Dialog:
    """A step offering a button with the id and label "stop" (e.g. "stop the survey")."""
    return Dialog(
        name="survey",
        commands=("start",),
        begin=lambda ctx: go("q"),
        steps={
            "q": Step(
                prompt=lambda ctx: ctx.ask("menu.question", [literal_button("stop", "Stop"), button("go", "signup.start")]),
                on_choice=lambda ctx, choice: end(),
            )
        },
    )


async def test_typed_stop_is_the_command_even_when_a_button_says_stop(config, i18n):
    engine = DialogEngine(config, i18n, registry_with(_stoppable_dialog()))
    state = (await engine.handle(turn(Kind.COMMAND, command="start"))).state
    granted = (ConsentState("marketing", "viber", True, None, "1"),)  # type: ignore[arg-type]
    result = await engine.handle(turn(Kind.TEXT, state, consents=granted, text="Stop"))
    assert result.effects == [ConsentChange("marketing", "viber", False, "stop", "1")]
    assert result.state.dialog is None


async def test_pressing_an_offered_stop_button_goes_to_the_step(config, i18n):
    engine = DialogEngine(config, i18n, registry_with(_stoppable_dialog()))
    state = (await engine.handle(turn(Kind.COMMAND, command="start"))).state
    granted = (ConsentState("marketing", "viber", True, None, "1"),)  # type: ignore[arg-type]
    result = await engine.handle(turn(Kind.BUTTON, state, consents=granted, payload="stop"))
    assert result.effects == [] and result.messages == []
    assert result.state.dialog is None


async def test_free_input_steps_get_text_and_media_but_commands_still_win(config, i18n):
    received: list[tuple[str, str | None]] = []

    def take(ctx: Context):
        received.append((ctx.event.text, ctx.event.media.type if ctx.event.media else None))
        ctx.say("privacy.title")
        return stay()

    notes = Dialog(
        name="notes",
        commands=("start",),
        begin=lambda ctx: go("write"),
        steps={"write": Step(prompt=lambda ctx: ctx.say("menu.question"), on_choice=lambda c, x: end(), on_input=take)},
    )
    engine = DialogEngine(config, i18n, registry_with(notes))
    state = (await engine.handle(turn(Kind.COMMAND, command="start"))).state
    result = await engine.handle(turn(Kind.TEXT, state, text="my parcel is late"))
    result = await engine.handle(turn(Kind.MEDIA, result.state, media=Media("photo", "f1"), text="see"))
    assert received == [("my parcel is late", None), ("see", "photo")]
    assert result.state.step == "write" and result.messages[0].text.startswith("Here's what I may send you")
    result = await engine.handle(turn(Kind.TEXT, result.state, text="help"))
    assert result.messages[0].text.startswith("Here's what I can do:")
    assert received[-1][0] == "see"  # the command never reached the step
    assert result.state.step == "write"  # and the step was resumed


async def test_the_input_state_is_never_mutated(config, i18n):
    engine = DialogEngine(config, i18n)
    state = ConversationState(dialog="signup", step="intro", slots={"signup": {"pending": ["marketing"], "index": 0}},
                              offered=[{"id": "continue", "label": "Continue", "means": "yes"}])  # fmt: skip
    before = repr(state)
    result = await engine.handle(turn(Kind.TEXT, state, text="ok"))
    assert repr(state) == before
    assert result.state.step == "consent"


async def test_transition_loops_are_stopped(config, i18n):
    ping = Dialog(name="ping", commands=("start",), begin=lambda ctx: switch("pong"))
    pong = Dialog(name="pong", begin=lambda ctx: switch("ping"))
    engine = DialogEngine(config, i18n, registry_with(ping, pong))
    with pytest.raises(RuntimeError, match="loop"):
        await engine.handle(turn(Kind.COMMAND, command="start"))


async def test_going_to_an_unknown_step_is_a_programming_error(config, i18n):
    broken = Dialog(name="broken", commands=("start",), begin=lambda ctx: go("nowhere"))
    engine = DialogEngine(config, i18n, registry_with(broken))
    with pytest.raises(KeyError, match="nowhere"):
        await engine.handle(turn(Kind.COMMAND, command="start"))


async def test_a_stored_state_of_a_removed_dialog_falls_back_gracefully(config, i18n):
    engine = DialogEngine(config, i18n)
    state = ConversationState(dialog="retired", step="old", offered=[{"id": "x", "label": "X"}])
    result = await engine.handle(turn(Kind.TEXT, state, text="hello"))
    assert result.messages[0].text == i18n.text("en", "fallback.idle")
    assert result.state.dialog == "menu"
