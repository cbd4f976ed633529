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
    choice_id,
    end,
    go,
    literal_button,
    normalise,
    resolve_choice,
    split_choice_id,
    stay,
    switch,
    yes_no,
)
from bot.events import Inbound, Kind, Media
from bot.messages import Button, Outbound
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


OFFERED = [{"id": "yes:q2", "label": "Ja", "means": "yes"}, {"id": "no:q2", "label": "Nein", "means": "no"}]
SYNONYMS = {"yes": frozenset({"ja", "yes", "ok"}), "no": frozenset({"nein", "no"})}
LONG_ID = "product:" + "x" * 60  # 68 bytes: an adapter sends it as "#n"
LONG_OFFERED = [{"id": "done", "label": "Done"}, {"id": LONG_ID, "label": "Buy"}]


@pytest.mark.parametrize(
    ("kind", "value", "picked"),
    [
        (Kind.BUTTON, "no:q2", "no:q2"),
        # a press answers only the question its id names: never by meaning, label or position
        (Kind.BUTTON, "yes:q1", None),
        (Kind.BUTTON, "yes", None),
        (Kind.BUTTON, "Ja", None),
        (Kind.BUTTON, "1", None),
        (Kind.BUTTON, "#1", None),  # short ids travel as themselves: this "#1" is another message's
        (Kind.BUTTON, "#3", None),
        (Kind.BUTTON, "maybe", None),
        (Kind.TEXT, "nein!", "no:q2"),
        (Kind.TEXT, "OK", "yes:q2"),
        (Kind.TEXT, "2", "no:q2"),
        (Kind.TEXT, "#2", "no:q2"),  # typed: the number 2
        (Kind.TEXT, "no:q2", "no:q2"),  # a reply button echoed as text (Viber without prefix)
        (Kind.TEXT, "no:q1", None),
        (Kind.TEXT, "0", None),
        (Kind.TEXT, "yes please", None),
        (Kind.TEXT, "", None),
    ],
)
def test_resolve_choice(kind, value, picked):
    fields = {"payload": value} if kind is Kind.BUTTON else {"text": value}
    event = Inbound(channel="telegram", address="1", event_id="e", kind=kind, **fields)
    assert resolve_choice(event, OFFERED, SYNONYMS) == picked


@pytest.mark.parametrize(("token", "picked"), [("#2", LONG_ID), ("#1", None), ("#3", None), (LONG_ID, LONG_ID)])
def test_hash_token_picks_only_an_id_that_had_to_travel_as_a_token(token, picked):
    event = Inbound(channel="telegram", address="1", event_id="e", kind=Kind.BUTTON, payload=token)
    assert resolve_choice(event, LONG_OFFERED, SYNONYMS) == picked


def test_yes_no_ids_name_their_subject_and_stay_short():
    choices = yes_no("marketing")
    assert [(c.id, c.msgid, c.means) for c in choices] == [
        ("yes:marketing", "buttons.yes", "yes"),
        ("no:marketing", "buttons.no", "no"),
    ]
    assert split_choice_id("no:marketing") == ("no", "marketing")
    assert split_choice_id("done") == ("done", "")
    assert choice_id("off", "p" * 32) == "off:" + "p" * 32  # purpose ids are at most 32 characters
    with pytest.raises(ValueError, match="64 bytes"):
        yes_no("x" * 61)  # would travel as a positional "#n" on Telegram and Viber


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
        steps={
            "ask": Step(prompt=lambda ctx: ctx.ask("signup.language_check", yes_no("go")), on_choice=lambda c, x: end())
        },
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
    assert [b.id for b in message.buttons] == ["yes:go", "no:go"]


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
    assert ConsentChange("marketing", "viber", False, "stop", "1") in result.effects
    assert {e.purpose for e in result.effects} == {p.id for p in config.consent_purposes if p.marketing}
    assert result.state.dialog is None


async def test_pressing_an_offered_stop_button_goes_to_the_step(config, i18n):
    engine = DialogEngine(config, i18n, registry_with(_stoppable_dialog()))
    state = (await engine.handle(turn(Kind.COMMAND, command="start"))).state
    granted = (ConsentState("marketing", "viber", True, None, "1"),)  # type: ignore[arg-type]
    result = await engine.handle(turn(Kind.BUTTON, state, consents=granted, payload="stop"))
    assert result.effects == [] and result.messages == []
    assert result.state.dialog is None


def _two_questions(answers: list[str]) -> Dialog:
    """Two Yes/No questions in a row, each with ids naming it; records what each step received."""

    def answered(next_step: str | None):
        def on_choice(ctx: Context, choice: str):
            answers.append(choice)
            return go(next_step) if next_step else end()

        return on_choice

    return Dialog(
        name="quiz",
        commands=("start",),
        begin=lambda ctx: go("q1"),
        steps={
            "q1": Step(prompt=lambda ctx: ctx.ask("signup.language_check", yes_no("q1")), on_choice=answered("q2")),
            "q2": Step(prompt=lambda ctx: ctx.ask("language.question", yes_no("q2")), on_choice=answered(None)),
        },
    )


@pytest.mark.parametrize("stale", ["no:q1", "yes:q1", "yes", "#1", "#2", "continue"])
async def test_a_stale_press_reasks_the_open_question_and_reaches_no_step(config, i18n, stale):
    answers: list[str] = []
    engine = DialogEngine(config, i18n, registry_with(_two_questions(answers)))
    state = (await engine.handle(turn(Kind.COMMAND, command="start"))).state
    state = (await engine.handle(turn(Kind.BUTTON, state, payload="no:q1"))).state
    assert answers == ["no:q1"] and state.step == "q2"

    result = await engine.handle(turn(Kind.BUTTON, state, payload=stale))  # a double tap or an old button
    assert answers == ["no:q1"]  # q2 was not answered
    assert [m.text for m in result.messages] == [i18n.text("en", "language.question")]  # no "didn't get that"
    assert [b.id for b in result.messages[0].buttons] == ["yes:q2", "no:q2"]
    assert (result.state.step, result.state.misses, result.effects) == ("q2", 0, [])

    result = await engine.handle(turn(Kind.TEXT, result.state, text="yes"))  # typed: the open question
    assert answers == ["no:q1", "yes:q2"]


async def test_free_input_steps_get_text_and_media_but_commands_still_win(config, i18n, help_text):
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
    assert result.state.step == "write"
    assert [m.text for m in result.messages] == [i18n.text("en", "privacy.title")]
    result = await engine.handle(turn(Kind.TEXT, result.state, text="help"))
    # the resumed step only says its prompt (no question), so nothing is merged
    assert [m.text for m in result.messages] == [help_text("en"), i18n.text("en", "menu.question")]
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
    result = await engine.handle(turn(Kind.TEXT, state, text="purple"))  # means nothing: no command, no intent
    merged = i18n.text("en", "fallback.idle") + "\n\n" + i18n.text("en", "menu.question")
    assert [m.text for m in result.messages] == [merged]
    assert [b.id for b in result.messages[0].buttons] == ["categories", "complaint", "privacy", "handoff", "language", "help"]
    assert result.state.dialog == "menu"


# --------------------------------------------------------------------------- merging text into a question

# What a test dialog does in one turn, by name: plain texts, questions (with the
# buttons the customer should see), and a location request.
SAID = {"say": "fallback.retry", "say2": "privacy.title"}
ASKED = {
    "ask": ("signup.language_check", yes_no("ask"), (Button("yes:ask", "Yes"), Button("no:ask", "No"))),
    "ask2": (
        "language.question",
        [literal_button("de", "Deutsch"), literal_button("es", "Español")],
        (Button("de", "Deutsch"), Button("es", "Español")),
    ),
}


def _location_request(t) -> Outbound:
    """No buttons, yet no plain text either; no Context helper builds one yet, so the test appends it."""
    return Outbound(text=t("consent.location.name"), request_location=True, location_label=t("buttons.done"))


class Expected:
    """The messages the engine should build for the actions above, from the English catalog."""

    def __init__(self, i18n) -> None:
        self.t = lambda msgid: i18n.text("en", msgid)

    def plain(self, said: str) -> Outbound:
        return Outbound(text=self.t(SAID[said]), transactional=True)

    def question(self, asked: str, *, after: str | None = None) -> Outbound:
        msgid, _, buttons = ASKED[asked]
        text = self.t(msgid) if after is None else f"{self.t(SAID[after])}\n\n{self.t(msgid)}"
        return Outbound(text=text, buttons=buttons, list_label=self.t("buttons.choose"), transactional=True)

    def location_request(self) -> Outbound:
        return _location_request(self.t)


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        pytest.param(["say", "ask"], lambda e: [e.question("ask", after="say")], id="say+ask=one"),
        pytest.param(["ask", "ask2"], lambda e: [e.question("ask"), e.question("ask2")], id="ask+ask=two"),
        pytest.param(["say", "say2"], lambda e: [e.plain("say"), e.plain("say2")], id="say+say=two"),
        pytest.param(["ask", "say"], lambda e: [e.question("ask"), e.plain("say")], id="ask+say=two"),
        pytest.param(
            ["say2", "say", "ask"],
            lambda e: [e.plain("say2"), e.question("ask", after="say")],
            id="only-the-last-say-joins",
        ),
        pytest.param(
            ["locate", "ask"], lambda e: [e.location_request(), e.question("ask")], id="location-request+ask=two"
        ),
        pytest.param(
            ["locate", "say", "ask"],
            lambda e: [e.location_request(), e.question("ask", after="say")],
            id="location-request+say+ask=two",
        ),
    ],
)
async def test_plain_text_joins_the_question_asked_right_after_it(config, i18n, actions, expected):
    def begin(ctx: Context):
        for action in actions:
            if action in SAID:
                ctx.say(SAID[action])
            elif action in ASKED:
                msgid, choices, _ = ASKED[action]
                ctx.ask(msgid, choices)
            else:
                ctx.messages.append(_location_request(ctx.t))
        return end()

    engine = DialogEngine(config, i18n, registry_with(Dialog(name="script", commands=("start",), begin=begin)))
    result = await engine.handle(turn(Kind.COMMAND, command="start"))
    assert result.messages == expected(Expected(i18n))
