"""The dialog engine: one turn in, messages, a new state and effects out.

A dialog is a ``begin`` function plus named steps. ``begin`` runs when the
dialog starts (by a command, a trigger or another dialog) and returns its
first transition. A step *prompts* (says things, asks a question with
buttons) and *handles* the answer: ``on_choice`` gets the id of the offered
button the customer picked, ``on_input`` (optional) anything else. Handlers
return a transition instead of mutating the conversation, as in
python-telegram-bot: ``stay()``, ``go(step)``, ``end()``, ``switch(dialog)``.

Why the engine, not the steps, resolves answers: the buttons of the last
question are stored in ``state.offered``, so a press, a ``#n`` token (an
adapter's stand-in for a too-long id), a typed label in the customer's
language, a yes/no synonym or a typed number all resolve to the same id on
every platform.

Why a pressed button resolves only against the ids offered *now*: platforms
keep the buttons of older messages pressable (Telegram inline keyboards,
WhatsApp reply buttons), and a double tap delivers a press after the question
has moved on. So a button id must say what it answers (``yes:marketing``,
``off:surveys``, never a bare ``yes`` or "toggle"), and a press whose id is
not offered now is a stale press: nothing is recorded, the current question
is shown again. Typed answers ("ja", "2") do resolve against the current
question: the customer typed them after reading it.

Global commands (start, menu, help, stop, privacy, language, and categories,
complaint, human once a dialog registers them) work at every step; the ones
that interrupt keep the interrupted dialog on a small stack in
``state.slots`` and resume it (re-asking its question) when they end.

How one customer message is routed, in order:

1. A flow left waiting longer than ``conversation.resume_minutes`` since the
   customer's previous message (``state.last_inbound_at``) is dropped with a
   polite "let's start over"; the message is then read as if nothing were
   running. Within that time an answer simply continues where the flow
   stopped. A dialog a trigger started (a survey) times itself out instead.
2. Typed "stop" (any language), then a new customer's first message
   (sign-up), then a press of the engine's own offer (below).
3. Nothing running: a command runs; free text goes through the intent step;
   anything else gets "didn't understand" and the menu.
4. A step is open: the offered choice, else a command, else the step's
   ``on_input`` if it has one (a step that asked for free text gets it as is),
   else the intent step, else a stale press is shown the question again, media
   gets a hint, and a text counts as a misunderstanding.

Why an intent step: customers write sentences, not command words. A text that
is neither a command word nor an answer is classified (``bot.intents``: the
offline phrase matcher, or an NLU service that ``handle`` asks before the
pure turn runs; when the service cannot answer, the phrase matcher does, and
when it answers, its answer stands, however unsure). Above
``intents.threshold``: greeting shows the menu with a greeting, thanks gets
"you're welcome" and the open question again, and every other intent runs the
command of the same name if a dialog registers it (so "my coupon didn't work"
starts the complaint dialog, which finds the sentence in ``ctx.event.text``
and the intent in ``ctx.intent``).

Misunderstandings: the first gets "sorry" and the question again (an idle
text nobody understood counts as the first); the second in a row gets the
engine's offer of a person ("handoff" dialog) or the menu, two buttons marked
as the engine's in ``state.offered`` while the step stays open underneath;
any further one, or a second without a handoff dialog, gets the hint to type
help or menu, and the question again.

TRIGGER events (the shop or a timer starts a dialog here, e.g. an order
survey) start the named dialog with the given slots and stack whatever runs
(a flow already left too long is dropped instead); they never count as the
customer coming back, and do nothing in agent mode or in a group.

The engine is pure: no database, no network, no platform names (the one
await, the optional NLU call, happens in ``handle`` before the turn). Every
customer-facing text is a message id looked up in ``locales/``.
"""

from __future__ import annotations

import copy
import json
import logging
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from bot.config import LocalText, ShopConfig
from bot.events import Inbound, Kind
from bot.i18n import FALLBACK_LOCALE, I18n
from bot.messages import Button, Outbound
from bot.turn import (
    ConsentChange,
    ConversationState,
    CustomerSnapshot,
    Effect,
    SetIdentity,
    TurnInput,
    TurnResult,
)

if TYPE_CHECKING:
    from bot.intents import Intent, IntentMatcher, NluBackend

log = logging.getLogger(__name__)

YES = "yes"
NO = "no"
# Global commands, typed as "/name" or as a word of ``commands.<name>`` in any language.
# The first six must have a dialog; the others work once a dialog registers them.
COMMANDS = ("start", "menu", "help", "stop", "privacy", "language", "categories", "complaint", "human")
REQUIRED_COMMANDS = COMMANDS[:6]
STACK_KEY = "_stack"  # in state.slots: interrupted [dialog, step] pairs, innermost last
MAX_STACK = 4  # deeper interruptions drop the oldest; nobody nests menus that far on purpose
MAX_TRANSITIONS = 16  # guards against two dialogs switching to each other forever
# Every adapter sends an id this short as itself (``integrations.base.button_token``:
# Telegram and Viber carry 64 bytes); only a longer id travels as a positional "#n".
MAX_PLAIN_ID_BYTES = 64
APOSTROPHES = frozenset("'\u2019\u02bc`\u00b4")  # dropped, so "let's" matches "lets"
CHOICE_KINDS = (Kind.TEXT, Kind.BUTTON)
UNUSABLE_KINDS = (Kind.MEDIA, Kind.LOCATION, Kind.CONTACT)
# The customer writing to us: only these can find a flow left for too long.
RETURNING_KINDS = (Kind.TEXT, Kind.BUTTON, Kind.COMMAND, *UNUSABLE_KINDS)
# Intents that run the command of the same name; "greeting" and "thanks" the engine answers itself.
INTENT_COMMANDS = ("help", "menu", "stop", "privacy", "language", "categories", "complaint", "human")
GREETING = "greeting"
THANKS = "thanks"
HANDOFF_DIALOG = "handoff"  # offered after two misunderstandings in a row, when registered
OFFER_MARK = "by"  # key in a state.offered entry: "engine" marks the engine's own offer ...
ENGINE = "engine"  # ... so a step that offers a "handoff" button of its own still gets it
TRIGGERED_KEY = "_triggered"  # in state.slots: the dialog a trigger started (it times itself out)


# --------------------------------------------------------------------------- buttons


@dataclass(frozen=True, slots=True)
class Choice:
    """A button a step offers: its id, and a label (message id, or an already localised text).

    ``means`` ("yes"/"no") lets the catalog's yes/no synonyms pick this button,
    so typing "ja" answers a "Continue" button as well as a "Yes" button.
    """

    id: str
    msgid: str | None = None
    label: str | None = None
    means: str | None = None
    params: tuple[tuple[str, Any], ...] = ()


def button(id: str, msgid: str, *, means: str | None = None, **params: Any) -> Choice:
    """A button whose label is the message ``msgid`` in the customer's language."""
    return Choice(id=id, msgid=msgid, means=means, params=tuple(params.items()))


def literal_button(id: str, label: str) -> Choice:
    """A button whose label is already final, e.g. a language in its own name ("Deutsch")."""
    return Choice(id=id, label=label)


def choice_id(action: str, subject: str) -> str:
    """A button id that names what it answers: ``choice_id("yes", "marketing")`` is "yes:marketing".

    Short enough to travel as itself on every platform, never as a positional
    "#n" that a stale press could map onto another question.
    """
    value = f"{action}:{subject}"
    if len(value.encode()) > MAX_PLAIN_ID_BYTES:
        raise ValueError(f"button id {value!r} is longer than {MAX_PLAIN_ID_BYTES} bytes")
    return value


def split_choice_id(choice: str) -> tuple[str, str]:
    """("yes", "marketing") for "yes:marketing"; ("done", "") for an id without a subject."""
    action, _, subject = choice.partition(":")
    return action, subject


def yes_no(subject: str) -> list[Choice]:
    """Yes/No buttons of the question about ``subject``: ids "yes:<subject>" and "no:<subject>".

    The subject is in the id so that a press on an older question's button
    cannot answer this one; ``means`` lets typed "ja"/"nein" pick them.
    """
    return [
        button(choice_id(YES, subject), "buttons.yes", means=YES),
        button(choice_id(NO, subject), "buttons.no", means=NO),
    ]


# --------------------------------------------------------------------------- transitions


@dataclass(frozen=True, slots=True)
class Transition:
    action: str  # stay | go | end | switch
    target: str | None = None
    slots: tuple[tuple[str, Any], ...] = ()
    resume: bool = True


def stay() -> Transition:
    """Remain at the current step without asking again (the handler already replied)."""
    return Transition("stay")


def go(step: str) -> Transition:
    """Enter ``step`` of the current dialog (also the same step again) and prompt it."""
    return Transition("go", step)


def end(*, resume: bool = True) -> Transition:
    """Finish the dialog; resume the interrupted one (its question is asked again) unless told not to."""
    return Transition("end", resume=resume)


def switch(dialog: str, **slots: Any) -> Transition:
    """Replace the current dialog by ``dialog`` (started with ``slots``); interrupted ones stay."""
    return Transition("switch", dialog, tuple(slots.items()))


# --------------------------------------------------------------------------- dialogs


@dataclass(frozen=True, slots=True)
class Step:
    prompt: Callable[[Context], None]
    on_choice: Callable[[Context, str], Transition]
    # Anything that is not one of the offered choices; return None to count it as a miss.
    on_input: Callable[[Context], Transition | None] | None = None


@dataclass(frozen=True, slots=True)
class Dialog:
    name: str
    begin: Callable[[Context], Transition]
    steps: Mapping[str, Step] = field(default_factory=dict)
    commands: tuple[str, ...] = ()  # global commands that start it
    # True: starting it drops every interrupted dialog (/start, stop) instead of keeping them.
    resets: bool = False


class Registry:
    """The dialogs, listed explicitly (``dialogs/__init__.py``); no discovery by name."""

    def __init__(self, dialogs: Iterable[Dialog]) -> None:
        self._dialogs: dict[str, Dialog] = {}
        self._commands: dict[str, Dialog] = {}
        for dialog in dialogs:
            if dialog.name in self._dialogs or dialog.name.startswith("_"):
                raise ValueError(f"bad or duplicate dialog name {dialog.name!r}")
            self._dialogs[dialog.name] = dialog
            for command in dialog.commands:
                if command not in COMMANDS or command in self._commands:
                    raise ValueError(f"bad or duplicate command {command!r}")
                self._commands[command] = dialog
        missing = [c for c in REQUIRED_COMMANDS if c not in self._commands]
        if missing:
            raise ValueError(f"no dialog handles the commands {missing}")

    def get(self, name: str) -> Dialog:
        return self._dialogs[name]

    def for_command(self, command: str) -> Dialog:
        return self._commands[command]

    def has_command(self, command: str | None) -> bool:
        return command in self._commands

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._dialogs)


# --------------------------------------------------------------------------- matching


def normalise(text: str) -> str:
    """Casefold, strip accents, apostrophes, emoji, punctuation and surrounding spaces.

    "¡Sí!" → "si", "Let's start" → "lets start", "STOP_PROMOS" → "stop promos".
    A text made only of symbols keeps them ("?", "👍"; skin tones dropped), so
    such words can still be listed in a catalog.
    """
    folded = unicodedata.normalize("NFKD", text.casefold())
    kept: list[str] = []
    for ch in folded:
        category = unicodedata.category(ch)
        if category[0] in "LN":
            kept.append(ch)
        elif ch in APOSTROPHES or category == "Mn":
            continue
        else:
            kept.append(" ")
    result = " ".join("".join(kept).split())
    if result:
        return result
    return "".join(
        ch for ch in folded if not ch.isspace() and unicodedata.category(ch) not in ("Sk", "Mn", "Me", "Cf")
    )


def resolve_choice(
    event: Inbound, offered: list[dict[str, str]], synonyms: Mapping[str, frozenset[str]]
) -> str | None:
    """The id of the offered button that ``event`` picks, or None.

    A pressed button picks only an id offered now (or its "#n" token), never
    by label, number or meaning: a press from an older message is not an
    answer to this question. ``synonyms`` maps "yes"/"no" to normalised words
    that pick the typed answer's button offered with that meaning.
    """
    if not offered:
        return None
    ids = [o["id"] for o in offered]
    if event.kind is Kind.BUTTON:
        return _by_token(event.payload or "", ids)
    if event.kind is not Kind.TEXT:
        return None
    raw = event.text.strip()
    picked = _by_token(raw, ids)
    if picked:
        return picked
    typed = normalise(raw)
    if not typed:
        return None
    # A typed label wins over a position, so "7" picks the button labelled "7" of a
    # 0-10 rating, not the seventh button.
    for option in offered:
        if normalise(option.get("label", "")) == typed:
            return option["id"]
    if typed.isascii() and typed.isdigit():
        index = int(typed)
        return ids[index - 1] if 1 <= index <= len(ids) else None
    for option in offered:
        means = option.get("means")
        if means and typed in synonyms.get(means, frozenset()):
            return option["id"]
    return None


def _by_token(token: str, ids: list[str]) -> str | None:
    if token in ids:
        return token
    if token.startswith("#") and token[1:].isascii() and token[1:].isdigit():
        index = int(token[1:])
        # Only an id too long to travel as itself was sent as "#n"; a "#n" aimed at a
        # short id comes from another (older) message and must not pick this one.
        if 1 <= index <= len(ids) and len(ids[index - 1].encode()) > MAX_PLAIN_ID_BYTES:
            return ids[index - 1]
    return None


# --------------------------------------------------------------------------- context


class Context:
    """What a dialog sees during one turn; it collects messages and effects.

    Dialogs never build ``Outbound`` or touch the state directly: they say,
    ask, emit effects and return transitions.
    """

    def __init__(
        self,
        engine: DialogEngine,
        turn: TurnInput,
        state: ConversationState,
        locale: str,
        parsed: Intent | None = None,
    ) -> None:
        self._engine = engine
        self.event: Inbound = turn.event
        self.customer: CustomerSnapshot = turn.customer
        self.config: ShopConfig = engine.config
        self.i18n: I18n = engine.i18n
        self.state = state
        self.locale = locale
        self.messages: list[Outbound] = []
        self.effects: list[Effect] = []
        # The intent that routed this turn's text ("my coupon didn't work" → complaint), if any.
        self.intent: Intent | None = None
        self.parsed = parsed  # the NLU backend's answer for the text, asked before the turn

    # -- time: the moment of the event, so a replayed event decides as it did the first time
    @property
    def now(self) -> datetime:
        return self.event.received_at

    # -- identity
    @property
    def first_name(self) -> str | None:
        return self.customer.first_name or self.event.first_name or None

    @property
    def slots(self) -> dict[str, Any]:
        """The running dialog's own slots (dropped when it ends)."""
        if self.state.dialog is None:
            return {}
        return self.state.slots.setdefault(self.state.dialog, {})

    # -- text
    def t(self, msgid: str, **params: Any) -> str:
        return self.i18n.text(self.locale, msgid, **params)

    def tn(self, msgid: str, msgid_plural: str, n: int, **params: Any) -> str:
        return self.i18n.plural(self.locale, msgid, msgid_plural, n, **params)

    def has_dialog(self, name: str) -> bool:
        """Whether ``name`` is registered (menus offer only what exists)."""
        return name in self._engine.registry.names

    def local(self, text: LocalText) -> str:
        """A text from the shop's config (a category name, a survey question) in the customer's language."""
        return text.get(self.locale)

    def percent(self, value: int | float) -> str:
        """``percent(15)`` → "15%" / "15 %" as the locale writes it."""
        return self.i18n.format_percent(self.locale, value / 100)

    def date(self, value: date | datetime) -> str:
        return self.i18n.format_date(self.locale, value)

    def command_word(self, command: str) -> str:
        """The word that runs ``command`` in the customer's language ("hilfe"), for help texts."""
        words = self.i18n.words(self.locale, f"commands.{command}")
        return words[0] if words else command

    # -- output
    def say(self, msgid: str, **params: Any) -> None:
        self.say_text(self.t(msgid, **params))

    def say_text(self, text: str) -> None:
        """Send text already built from catalog messages."""
        self.messages.append(Outbound(text=text, transactional=True))

    def ask(self, msgid: str, buttons: Iterable[Choice], **params: Any) -> None:
        self.ask_text(self.t(msgid, **params), buttons)

    def ask_text(self, text: str, buttons: Iterable[Choice]) -> None:
        """Ask with buttons; they become the offered choices the next answer resolves against."""
        offered: list[dict[str, str]] = []
        for choice in buttons:
            label = choice.label if choice.label is not None else self.t(choice.msgid or "", **dict(choice.params))
            entry = {"id": choice.id, "label": label}
            if choice.means:
                entry["means"] = choice.means
            offered.append(entry)
        self.state.offered = offered
        # A question right after plain text in the same turn travels as one
        # message: fewer sends, one notification, and Viber's single welcome
        # reply can carry both.
        if self.messages and not self.messages[-1].buttons and not self.messages[-1].request_location:
            text = f"{self.messages.pop().text}\n\n{text}"
        self.messages.append(
            Outbound(
                text=text,
                buttons=tuple(Button(o["id"], o["label"]) for o in offered),
                list_label=self.t("buttons.choose") if offered else None,
                transactional=True,
            )
        )

    def emit(self, effect: Effect) -> None:
        self.effects.append(effect)

    # -- locale and consents (as they stand after this turn's effects)
    def set_locale(self, locale: str) -> None:
        """Speak ``locale`` from the next text on; the dialog emits ``SetCustomer`` itself."""
        self.locale = locale
        self.state.locale = locale

    def consent(self, purpose: str) -> tuple[bool, str] | None:
        """(granted, wording version) of ``purpose`` on this channel, or None if never answered."""
        channel = self.customer.channel
        for effect in reversed(self.effects):
            if isinstance(effect, ConsentChange) and effect.purpose == purpose and effect.channel == channel:
                return effect.granted, effect.wording_version
        recorded = self.customer.consent(purpose, channel)
        return (recorded.granted, recorded.wording_version) if recorded else None

    def granted(self, purpose: str) -> bool:
        current = self.consent(purpose)
        return bool(current and current[0])


# --------------------------------------------------------------------------- engine


class DialogEngine:
    """Runs one conversation turn; see the module docstring for the rules.

    ``registry`` defaults to the dialogs listed in ``dialogs/__init__.py``;
    ``matcher`` to the phrase lists in ``locales/``; ``nlu`` (e.g. Rasa) is
    asked first when given.
    """

    def __init__(
        self,
        config: ShopConfig,
        i18n: I18n,
        registry: Registry | None = None,
        *,
        nlu: NluBackend | None = None,
        matcher: IntentMatcher | None = None,
    ) -> None:
        if registry is None:
            from dialogs import build_registry  # dialogs import this module; import late

            registry = build_registry()
        if matcher is None:
            from bot.intents import default_matcher  # it imports this module's normalise

            matcher = default_matcher()
        self.config = config
        self.i18n = i18n
        self.registry = registry
        self.nlu = nlu
        self.matcher = matcher
        languages = self._languages()
        self._command_words = self._word_table(languages)
        # A "ja" in an English chat is as clear as a "yes": every language's yes/no words
        # count everywhere, except a word that is yes in one language and no in another.
        every = set(languages) | set(i18n.locales) | {FALLBACK_LOCALE}
        words = {meaning: {normalise(w) for lang in every for w in i18n.words(lang, f"words.{meaning}")} for meaning in (YES, NO)}
        both = words[YES] & words[NO]
        shared: dict[str, frozenset[str]] = {meaning: frozenset(found - both) for meaning, found in words.items()}
        self._synonyms = shared

    def _languages(self) -> list[str]:
        ordered = [FALLBACK_LOCALE, *self.config.locales]
        return [code for i, code in enumerate(ordered) if code in self.i18n.locales and code not in ordered[:i]]

    def _word_table(self, languages: list[str]) -> dict[str, str]:
        # English first, then the shop's languages; the first language to claim a word keeps it.
        table: dict[str, str] = {}
        for lang in languages:
            for command in COMMANDS:
                if not self.registry.has_command(command):
                    continue
                for word in self.i18n.words(lang, f"commands.{command}"):
                    table.setdefault(normalise(word), command)
        return table

    # -- entry point
    async def handle(self, turn: TurnInput) -> TurnResult:
        """One turn; the NLU backend, if any, is asked first and only for text that needs an intent."""
        parsed = None
        if self.nlu is not None and self.may_need_intent(turn):
            try:
                parsed = await self.nlu.parse(turn.event.text, message_id=turn.event.event_id)
            except Exception:  # noqa: BLE001 - a broken backend must not cost the customer an answer
                log.exception("nlu.failed; using phrase matcher")
        return self.run(turn, parsed)

    def may_need_intent(self, turn: TurnInput) -> bool:
        """Whether the turn may classify its text: cheap, so buttons, commands and answers never reach NLU."""
        event, state = turn.event, turn.state
        if event.kind is not Kind.TEXT or state.mode != "bot" or event.chat_type == "group":
            return False
        if not any(ch.isalpha() for ch in event.text) or self.command_of(event) is not None:
            return False
        if turn.customer.is_new and state.dialog is None:
            return False  # the sign-up comes first
        step = self._current_step(state)
        if step is None or self._expired(state, event):
            return True
        if step.on_input is not None:
            return False
        synonyms = self._synonyms
        return resolve_choice(event, state.offered, synonyms) is None

    def run(self, turn: TurnInput, parsed: Intent | None = None) -> TurnResult:
        """The synchronous core of ``handle`` (no I/O happens in a turn).

        ``parsed`` is the NLU backend's intent for the text when it answered;
        otherwise the phrase matcher classifies the text if the turn needs it.
        """
        event, customer = turn.event, turn.customer
        state = copy.deepcopy(turn.state)
        if event.kind in (Kind.RECEIPT, Kind.EDITED):
            return TurnResult(state=state)
        if state.dialog is not None and state.dialog not in self.registry.names:
            log.warning("dialog.unknown_in_state %s", state.dialog)  # removed in an upgrade: start afresh
            _drop_flow(state)
        if event.kind is Kind.UNSUBSCRIBED:
            return self._unsubscribed(state, customer)
        if event.kind is Kind.RESUBSCRIBED:
            return TurnResult(state=state, effects=[SetIdentity(blocked=False)])

        ctx = Context(self, turn, state, self.resolve_locale(turn), parsed)
        command = self.command_of(event)
        if state.mode == "agent":
            return self._silent(turn, command)
        if event.chat_type == "group":
            return self._group(turn, command)

        if event.kind is Kind.TRIGGER:
            self._trigger(ctx)
        elif event.kind is Kind.STARTED:
            self._run_command(ctx, "start")
            ctx.messages = _single_message(ctx.messages)  # Viber: one reply, in the HTTP response
        elif event.kind is Kind.SUBSCRIBED:
            if state.dialog is None:
                self._run_command(ctx, "start")
        else:
            restarted = event.kind in RETURNING_KINDS and self._expired(state, event)
            if restarted:
                log.info("dialog.expired %s/%s", state.dialog, state.step)
                ctx.say("engine.start_over")
                _drop_flow(state)
            self._dispatch(ctx, command, restarted=restarted)

        if state.dialog is None:
            state.step, state.slots, state.offered, state.misses = None, {}, [], 0
        state.locale = ctx.locale
        return TurnResult(state=state, messages=ctx.messages, effects=ctx.effects)

    # -- what the customer meant
    def resolve_locale(self, turn: TurnInput) -> str:
        """Customer profile, then this conversation, then the app's language, then the shop default."""
        for code in (turn.customer.locale, turn.state.locale):
            if code and code in self.config.locales and code in self.i18n.locales:
                return code
        return self.pick_locale(turn.event.language_code)

    def pick_locale(self, language_code: str | None) -> str:
        """The primary subtag when the shop speaks it ("de-AT" → "de"), else the shop's default."""
        primary = (language_code or "").replace("_", "-").split("-")[0].lower()
        if primary in self.config.locales and primary in self.i18n.locales:
            return primary
        return self.config.default_locale

    def command_of(self, event: Inbound) -> str | None:
        """The global command an event asks for, in any configured language, or None."""
        command = self._command_of(event)
        return command if self.registry.has_command(command) else None

    def _command_of(self, event: Inbound) -> str | None:
        if event.kind is Kind.COMMAND:
            name = (event.command or "").split("@")[0].strip().lower()
            return name if name in COMMANDS else self._command_words.get(normalise(name))
        if event.kind is Kind.TEXT:
            raw = event.text.strip()
            if raw.startswith("/") and len(raw) > 1:
                name = raw[1:].split()[0].split("@")[0].lower()
                return name if name in COMMANDS else self._command_words.get(normalise(name))
            return self._command_words.get(normalise(raw)) if raw else None
        if event.kind is Kind.BUTTON:
            # A menu button from an older message still works; offered ids win in _dispatch.
            payload = (event.payload or "").strip()
            if payload.lower() in COMMANDS:
                return payload.lower()
            return self._command_words.get(normalise(payload)) if payload else None
        return None

    def intent_of(self, ctx: Context) -> Intent | None:
        """The intent of a typed text worth acting on: confident enough, and something we can do."""
        if ctx.event.kind is not Kind.TEXT:
            return None
        intent = ctx.parsed if ctx.parsed is not None else self.matcher.match(ctx.event.text, ctx.locale)
        if intent is None or intent.confidence < self.config.intents.threshold:
            return None
        if intent.name in (GREETING, THANKS):
            return intent
        if intent.name in INTENT_COMMANDS and self.registry.has_command(intent.name):
            return intent
        return None

    def _expired(self, state: ConversationState, event: Inbound) -> bool:
        """A flow the customer left at a step longer ago than the resume time.

        A dialog that a trigger started (a survey) asked a question the customer
        never chose to start: it decides itself how long that stays open.
        """
        if state.dialog is None or state.step is None or state.slots.get(TRIGGERED_KEY) == state.dialog:
            return False
        since = _utc(state.last_inbound_at)
        if since is None:
            return False
        return _utc(event.received_at) - since > timedelta(minutes=self.config.conversation.resume_minutes)

    # -- routing
    def _dispatch(self, ctx: Context, command: str | None, *, restarted: bool = False) -> None:
        state, event = ctx.state, ctx.event
        step = self._current_step(state)
        choice = None
        if step is not None and event.kind in CHOICE_KINDS:
            choice = resolve_choice(event, state.offered, self._synonyms)
        # Typed "stop" is always the stop command, whatever the step asked; only a press
        # of a button the step itself offered (an unambiguous id) goes to the step.
        if command == "stop" and not (event.kind is Kind.BUTTON and choice is not None):
            self._run_command(ctx, "stop")
            return
        if ctx.customer.is_new and state.dialog is None:
            self._run_command(ctx, "start")
            return
        if choice is not None and _offered_by_engine(state, choice):
            self._take_offer(ctx, choice)
            return
        if step is None:
            if command:
                self._run_command(ctx, command)
            elif event.kind is Kind.LOCATION and event.location is not None:
                self._location_shared(ctx)
            elif restarted:
                if not self._understood(ctx):
                    self._run_command(ctx, "menu")  # a fresh start, not a misunderstanding
            elif not self._understood(ctx):
                ctx.say("fallback.idle")
                self._run_command(ctx, "menu")
                state.misses = 1  # the first misunderstanding: one more and a person is offered
            return
        if choice is not None:
            state.misses = 0
            self._apply(ctx, step.on_choice(ctx, choice))
            return
        if command:
            self._run_command(ctx, command)
            return
        if step.on_input is not None:
            transition = step.on_input(ctx)
            if transition is not None:
                state.misses = 0
                self._apply(ctx, transition)
                return
        elif self._understood(ctx):
            return
        if event.kind is Kind.BUTTON:
            # A button of an older message, or a second tap after the question moved on:
            # not an answer to this question and no misunderstanding either. Show it again.
            log.info("dialog.stale_press %s/%s", state.dialog, state.step)
            self._prompt(ctx)
            return
        if event.kind in UNUSABLE_KINDS:
            # Not a misunderstanding of words, so it does not count towards the help hint.
            ctx.say(_unusable_msgid(event, typing=not state.offered))
            self._prompt(ctx)
            return
        self._miss(ctx)

    def _understood(self, ctx: Context) -> bool:
        """Act on the intent of a free text; False when there is none worth acting on."""
        intent = self.intent_of(ctx)
        if intent is None:
            return False
        log.info("intent.matched name=%s confidence=%.2f", intent.name, intent.confidence)
        ctx.intent = intent
        ctx.state.misses = 0
        if intent.name == GREETING and ctx.state.step is not None:
            self._prompt(ctx)  # "hello" in the middle of a flow: the open question is the answer
        elif intent.name == GREETING:
            self._run_command(ctx, "menu", greeting="back")
        elif intent.name == THANKS:
            ctx.say("engine.you_are_welcome")
            self._prompt(ctx)
        else:
            self._run_command(ctx, intent.name)
        return True

    def _location_shared(self, ctx: Context) -> None:
        """A location sent while nothing asked for one: with location consent the pipeline looks
        for an offer nearby (bot.touchpoints); without, say how to allow it. No menu either way."""
        if ctx.granted("location"):
            ctx.say("engine.location_thanks")
        else:
            ctx.say("engine.location_no_consent", privacy=ctx.command_word("privacy"))

    def _miss(self, ctx: Context) -> None:
        state = ctx.state
        state.misses += 1
        if state.misses == 1:
            ctx.say("fallback.retry")
        elif state.misses == 2 and HANDOFF_DIALOG in self.registry.names and state.dialog != HANDOFF_DIALOG:
            self._offer_person(ctx)
            return
        else:
            ctx.say("fallback.help_hint", help=ctx.command_word("help"), menu=ctx.command_word("menu"))
        self._prompt(ctx)

    def _offer_person(self, ctx: Context) -> None:
        """Two misunderstandings in a row: a person, or the menu. The step stays open underneath."""
        ctx.ask("engine.offer_person", [button(HANDOFF_DIALOG, "engine.person"), button("menu", "engine.menu")])
        for entry in ctx.state.offered:
            entry[OFFER_MARK] = ENGINE

    def _take_offer(self, ctx: Context, choice: str) -> None:
        ctx.state.misses = 0
        if choice == HANDOFF_DIALOG and HANDOFF_DIALOG in self.registry.names:
            self._interrupt(ctx, self.registry.get(HANDOFF_DIALOG), {})
        else:
            self._run_command(ctx, "menu")

    def _trigger(self, ctx: Context) -> None:
        """The shop or a timer starts a dialog here (an order survey); whatever runs waits on the stack."""
        request = _trigger_request(ctx.event.payload)
        if request is None:
            log.warning("trigger.bad_payload channel=%s event=%s", ctx.event.channel, ctx.event.event_id)
            return
        name, slots = request
        if name not in self.registry.names:
            log.warning("trigger.unknown_dialog %s channel=%s event=%s", name, ctx.event.channel, ctx.event.event_id)
            return
        if self._expired(ctx.state, ctx.event):
            _drop_flow(ctx.state)  # left long ago: not worth resuming after the triggered dialog
        self._interrupt(ctx, self.registry.get(name), slots)
        if ctx.state.dialog == name:
            ctx.state.slots[TRIGGERED_KEY] = name

    def _run_command(self, ctx: Context, command: str, **slots: Any) -> None:
        self._interrupt(ctx, self.registry.for_command(command), slots)

    def _interrupt(self, ctx: Context, dialog: Dialog, slots: dict[str, Any]) -> None:
        """Start ``dialog`` now; the running one waits on the stack, or is dropped if ``dialog`` resets."""
        state = ctx.state
        if dialog.resets:
            state.dialog, state.step, state.slots = None, None, {}
        elif state.dialog is not None and state.dialog != dialog.name and state.step is not None:
            stack = state.slots.setdefault(STACK_KEY, [])
            stack.append([state.dialog, state.step])
            del stack[:-MAX_STACK]
        self._start(ctx, dialog, slots)

    def _start(self, ctx: Context, dialog: Dialog, slots: dict[str, Any], depth: int = 0) -> None:
        state = ctx.state
        stack = state.slots.get(STACK_KEY, [])
        stack[:] = [entry for entry in stack if entry[0] != dialog.name]
        state.dialog, state.step, state.offered, state.misses = dialog.name, None, [], 0
        state.slots[dialog.name] = dict(slots)
        self._apply(ctx, dialog.begin(ctx), depth + 1)

    def _apply(self, ctx: Context, transition: Transition, depth: int = 0) -> None:
        if depth > MAX_TRANSITIONS:
            raise RuntimeError(f"dialog transitions loop in {ctx.state.dialog!r}")
        state = ctx.state
        if transition.action == "stay":
            if state.step is None:  # a dialog that never entered a step has nothing to stay at
                self._finish(ctx, resume=True)
        elif transition.action == "go":
            dialog = self.registry.get(state.dialog or "")
            if transition.target not in dialog.steps:
                raise KeyError(f"dialog {dialog.name!r} has no step {transition.target!r}")
            state.step, state.offered = transition.target, []
            self._prompt(ctx)
        elif transition.action == "end":
            self._finish(ctx, resume=transition.resume)
        elif transition.action == "switch":
            state.slots.pop(state.dialog or "", None)
            self._start(ctx, self.registry.get(transition.target or ""), dict(transition.slots), depth)
        else:
            raise ValueError(f"unknown transition {transition.action!r}")

    def _finish(self, ctx: Context, *, resume: bool) -> None:
        state = ctx.state
        state.slots.pop(state.dialog or "", None)
        stack = state.slots.get(STACK_KEY, [])
        if resume and stack:
            state.dialog, state.step = stack.pop()
            state.offered, state.misses = [], 0
            if self._current_step(state) is not None:
                self._prompt(ctx)
                return
            log.warning("dialog.resume_failed %s/%s", state.dialog, state.step)
        state.dialog, state.step, state.slots, state.offered = None, None, {}, []

    def _current_step(self, state: ConversationState) -> Step | None:
        if state.dialog is None or state.step is None or state.dialog not in self.registry.names:
            return None
        return self.registry.get(state.dialog).steps.get(state.step)

    def _prompt(self, ctx: Context) -> None:
        step = self._current_step(ctx.state)
        if step is not None:
            step.prompt(ctx)

    # -- fixed behaviour
    def _unsubscribed(self, state: ConversationState, customer: CustomerSnapshot) -> TurnResult:
        """Blocked bot / unsubscribed: withdraw what was granted on this channel, say nothing.

        While offers are paused (until the job ends the pause) the marketing
        purposes that are off are withdrawn again under "platform", so the end
        of the pause does not switch them back on for someone who blocked us.
        """
        paused = customer.marketing_paused_until is not None
        paused_purposes = {p.id for p in self.config.consent_purposes if p.marketing} if paused else set()
        effects: list[Effect] = [
            ConsentChange(c.purpose, c.channel, False, "platform", c.wording_version)
            for c in customer.consents
            if c.channel == customer.channel and (c.granted or c.purpose in paused_purposes)
        ]
        effects.append(SetIdentity(blocked=True))
        # The conversation is over; a returning customer starts from a clean slate.
        _drop_flow(state)
        return TurnResult(state=state, effects=effects)

    def _silent(self, turn: TurnInput, command: str | None) -> TurnResult:
        """A person has taken over: the bot says nothing, but a stop is still honoured."""
        state = copy.deepcopy(turn.state)
        if command != "stop":
            return TurnResult(state=state)
        scratch = Context(self, turn, ConversationState(), self.resolve_locale(turn))
        self._run_command(scratch, "stop")
        return TurnResult(state=state, effects=scratch.effects)

    def _group(self, turn: TurnInput, command: str | None) -> TurnResult:
        """Group chats get the help text for help/menu and nothing else (no dialogs in groups)."""
        state = copy.deepcopy(turn.state)
        if command not in ("help", "menu"):
            return TurnResult(state=state)
        scratch = Context(self, turn, ConversationState(), self.resolve_locale(turn))
        self._run_command(scratch, "help")
        return TurnResult(state=state, messages=scratch.messages)


def _drop_flow(state: ConversationState) -> None:
    """Forget the running dialog, the interrupted ones and the open question."""
    state.dialog, state.step, state.slots, state.offered, state.misses = None, None, {}, [], 0


def _offered_by_engine(state: ConversationState, choice: str) -> bool:
    return any(o["id"] == choice and o.get(OFFER_MARK) == ENGINE for o in state.offered)


def _trigger_request(payload: str | None) -> tuple[str, dict[str, Any]] | None:
    """(dialog, slots) from a TRIGGER payload ``{"dialog": name, "slots": {...}}``, or None if malformed."""
    try:
        data = json.loads(payload or "")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    name, slots = data.get("dialog"), data.get("slots", {})
    if not isinstance(name, str) or not name or name.startswith("_") or not isinstance(slots, dict):
        return None
    return name, slots


def _utc(moment: datetime | None) -> datetime | None:
    """Stores may hand back naive datetimes; everything we keep is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def _unusable_msgid(event: Inbound, *, typing: bool) -> str:
    """What to say to a photo, location ... that the step cannot use (``typing``: it asks for text)."""
    if typing:
        return "fallback.type_answer"  # not "pick one of the options": there are none
    if event.kind is Kind.LOCATION:
        return "fallback.location"
    if event.kind is Kind.CONTACT:
        return "fallback.contact"
    media_type = event.media.type if event.media else ""
    if media_type == "photo":
        return "fallback.photo"
    if media_type in ("document", "file"):
        return "fallback.document"
    return "fallback.media"


def _single_message(messages: list[Outbound]) -> list[Outbound]:
    """Fold a turn's messages into one, keeping the last buttons (Viber's one welcome reply)."""
    if len(messages) <= 1:
        return messages
    with_buttons = [m for m in messages if m.buttons]
    last = with_buttons[-1] if with_buttons else messages[-1]
    text = "\n\n".join(m.text for m in messages)
    return [Outbound(text=text, buttons=last.buttons, list_label=last.list_label, transactional=True)]
