"""A chat simulator for dialog tests: one customer, one channel, many turns.

It plays the pipeline's part around the real engine: keeps the
ConversationState between turns (bumping its version), applies the effects
to an in-memory customer (consent log, locale, first name, identity flags)
and builds the next CustomerSnapshot from it, exactly as the database would.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from bot.config import ShopConfig, load_config
from bot.dialog import DialogEngine
from bot.events import Inbound, Kind
from bot.i18n import I18n
from bot.messages import Outbound
from bot.turn import (
    CodeState,
    ConsentChange,
    ConsentState,
    ConversationState,
    CustomerSnapshot,
    Effect,
    EraseCustomer,
    Handoff,
    IssueCode,
    OpenTicket,
    PauseMarketing,
    SaveCategories,
    SetCustomer,
    SetIdentity,
    SurveyAnswer,
    SurveyStatus,
    TurnInput,
)

LOCALES_DIR = Path(__file__).resolve().parents[2] / "locales"
_event_ids = itertools.count(1)
# Events the pipeline does not count as the customer's last message.
_NOT_THE_CUSTOMER_SPEAKING = (Kind.UNSUBSCRIBED, Kind.RESUBSCRIBED, Kind.TRIGGER)


class Chat:
    def __init__(
        self,
        engine: DialogEngine,
        *,
        channel: str = "telegram",
        address: str = "5550100201",
        first_name: str | None = "Alice",
        language_code: str | None = "en",
        chat_type: str = "private",
    ) -> None:
        self.engine = engine
        self.channel = channel
        self.address = address
        self.platform_first_name = first_name
        self.language_code = language_code
        self.chat_type = chat_type
        self.state = ConversationState()
        # the customer as the database would hold it
        self.locale: str | None = None
        self.first_name: str | None = None
        self.consent_log: list[ConsentChange] = []
        self.blocked = False
        self.deep_link: str | None = None
        self.categories: tuple[str, ...] = ()
        self.codes: list[IssueCode] = []  # every code issued, usable or not
        self.redeemed: set[str] = set()
        self.tickets: list[OpenTicket] = []
        self.handoffs: list[Handoff] = []
        self.survey_answers: list[SurveyAnswer] = []
        self.survey_status: dict[tuple[str, str], str] = {}
        self.attributes: dict[str, Any] = {}
        # When the customer was created; None until the first event, which sets
        # it to that event's time like the pipeline does (a new customer, not a
        # loyal one). Tests that need an older customer set it themselves.
        self.created_at: datetime | None = None
        self.paused_until: datetime | None = None
        self.erased = False
        self.other_effects: list[Effect] = []  # SendMyData and anything the store handles alone
        # The clock of the next event (``received_at``); None: the real time.
        self.now: datetime | None = None
        self.turns = 0
        # the last turn
        self.messages: list[Outbound] = []
        self.effects: list[Effect] = []

    # -- the customer's snapshot, rebuilt from the log like the pipeline does
    def snapshot(self) -> CustomerSnapshot:
        current: dict[tuple[str, str], ConsentState] = {}
        for change in self.consent_log:
            current[(change.purpose, change.channel)] = ConsentState(
                change.purpose, change.channel, change.granted, datetime.now(timezone.utc), change.wording_version
            )
        now = self.now or datetime.now(timezone.utc)
        usable = tuple(
            CodeState(c.code, c.category, c.percent, c.expires_at, c.source, c.reference)
            for c in self.codes
            if c.expires_at > now and c.code not in self.redeemed
        )
        return CustomerSnapshot(
            id=1,
            first_name=self.first_name,
            locale=self.locale,
            channel=self.channel,
            consents=tuple(current.values()),
            is_new=self.turns == 0,
            categories=self.categories,
            codes=usable,
            attributes=dict(self.attributes),
            created_at=self.created_at,
            marketing_paused_until=self.paused_until,
        )

    def granted(self, purpose: str) -> bool | None:
        consent = self.snapshot().consent(purpose)
        return None if consent is None else consent.granted

    # -- sending events
    async def event(self, kind: Kind, **fields: Any) -> list[Outbound]:
        fields.setdefault("first_name", self.platform_first_name)
        fields.setdefault("language_code", self.language_code)
        fields.setdefault("chat_type", self.chat_type)
        if self.now is not None:
            fields.setdefault("received_at", self.now)
        inbound = Inbound(
            channel=self.channel, address=self.address, event_id=f"e{next(_event_ids)}", kind=kind, **fields
        )
        if self.created_at is None:
            self.created_at = inbound.received_at
        result = await self.engine.handle(TurnInput(event=inbound, state=self.state, customer=self.snapshot()))
        assert result.state is not self.state, "the engine must return a new state, not mutate its input"
        self.turns += 1
        # stored as JSON between turns, like every state store does
        stored = json.loads(json.dumps(dataclasses.asdict(result.state), default=str))
        # The pipeline records only the customer's own messages as "last heard
        # from"; a trigger is the shop speaking and leaves the time as it was.
        if kind not in _NOT_THE_CUSTOMER_SPEAKING:
            stored["last_inbound_at"] = inbound.received_at
        else:
            stored["last_inbound_at"] = self.state.last_inbound_at
        self.state = ConversationState(**stored)
        self.state.version += 1
        self.messages, self.effects = result.messages, result.effects
        for effect in result.effects:
            self._apply(effect)
        return result.messages

    def _apply(self, effect: Effect) -> None:
        if isinstance(effect, ConsentChange):
            self.consent_log.append(effect)
        elif isinstance(effect, SetCustomer):
            self.locale = effect.locale or self.locale
            self.first_name = effect.first_name or self.first_name
        elif isinstance(effect, SetIdentity):
            if effect.blocked is not None:
                self.blocked = effect.blocked
            if effect.deep_link is not None:
                self.deep_link = effect.deep_link
        elif isinstance(effect, SaveCategories):
            self.categories = tuple(effect.categories)
        elif isinstance(effect, IssueCode):
            once = effect.reference is not None and any(
                (c.source, c.reference) == (effect.source, effect.reference) for c in self.codes
            )
            if not once:
                self.codes.append(effect)
        elif isinstance(effect, OpenTicket):
            self.tickets.append(effect)
        elif isinstance(effect, Handoff):
            self.handoffs.append(effect)
        elif isinstance(effect, SurveyAnswer):
            self.survey_answers.append(effect)
        elif isinstance(effect, SurveyStatus):
            self.survey_status[(effect.survey, effect.order)] = effect.status
        elif isinstance(effect, PauseMarketing):
            self.paused_until = effect.until
        elif isinstance(effect, EraseCustomer):
            self.erased = True
            self.first_name, self.categories, self.codes, self.tickets = None, (), [], []
            self.survey_answers, self.attributes = [], {}
        else:
            self.other_effects.append(effect)

    async def trigger(self, dialog: str, **slots: Any) -> list[Outbound]:
        """What the pipeline delivers when the shop starts a dialog here (e.g. an order survey)."""
        return await self.event(Kind.TRIGGER, payload=json.dumps({"dialog": dialog, "slots": slots}))

    async def send(self, text: str) -> list[Outbound]:
        return await self.event(Kind.TEXT, text=text)

    async def press(self, button_id: str) -> list[Outbound]:
        return await self.event(Kind.BUTTON, payload=button_id)

    async def command(self, name: str, args: str = "") -> list[Outbound]:
        return await self.event(Kind.COMMAND, command=name, text=args, context=args or None)

    async def answer(self, meaning: str) -> list[Outbound]:
        """Press the offered "yes:<subject>" / "no:<subject>" button of the open question."""
        for button_id, _ in self.buttons:
            if button_id.split(":")[0] == meaning:
                return await self.press(button_id)
        raise AssertionError(f"no {meaning!r} button in {self.buttons}")

    async def press_label(self, label: str) -> list[Outbound]:
        """Press the offered button that shows ``label`` (fails if it is not offered)."""
        for button_id, shown in self.buttons:
            if shown == label:
                return await self.press(button_id)
        raise AssertionError(f"no button {label!r} in {self.buttons}")

    # -- what the customer sees
    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.messages]

    @property
    def text(self) -> str:
        return "\n---\n".join(self.texts)

    @property
    def buttons(self) -> list[tuple[str, str]]:
        """(id, label) of the last message that has buttons in the last turn."""
        for message in reversed(self.messages):
            if message.buttons:
                return [(b.id, b.label) for b in message.buttons]
        return []

    @property
    def button_ids(self) -> list[str]:
        return [b for b, _ in self.buttons]

    @property
    def labels(self) -> list[str]:
        return [label for _, label in self.buttons]

    def consent_changes(self) -> list[tuple[str, bool, str]]:
        """(purpose, granted, source) of the last turn's consent effects."""
        return [(e.purpose, e.granted, e.source) for e in self.effects if isinstance(e, ConsentChange)]


@pytest.fixture(scope="session")
def i18n() -> I18n:
    return I18n.load(LOCALES_DIR)


@pytest.fixture(scope="session")
def config() -> ShopConfig:
    return load_config(None)


@pytest.fixture
def engine(config: ShopConfig, i18n: I18n) -> DialogEngine:
    return DialogEngine(config, i18n)


@pytest.fixture
def make_chat(engine: DialogEngine):
    def make(**kwargs: Any) -> Chat:
        return Chat(engine, **kwargs)

    return make


@pytest.fixture
def t(i18n: I18n):
    """The catalog text for a locale: ``t("de", "buttons.yes")``; tests compare against it."""
    return i18n.text


@pytest.fixture
def help_text(i18n: I18n):
    """The whole help as a customer in ``locale`` sees it with every flow installed, built from the catalog.

    The fixed commands, then one line per optional flow (categories,
    complaint, a person), then the footer, each command named by its first
    word in that language ("hilfe", "datenschutz").
    """

    def build(locale: str) -> str:
        def word(command: str) -> str:
            return i18n.words(locale, f"commands.{command}")[0]

        fixed = i18n.text(locale, "help.text", **{c: word(c) for c in ("help", "menu", "privacy", "language", "stop")})
        optional = [
            i18n.text(locale, "help.categories", categories=word("categories")),
            i18n.text(locale, "help.complaint", complaint=word("complaint")),
            i18n.text(locale, "help.human", human=word("human")),
        ]
        return "\n".join([fixed, *optional]) + "\n\n" + i18n.text(locale, "help.footer")

    return build


@pytest.fixture
def joined():
    """One message as the engine builds it from a plain text and the question asked right after it.

    ``joined(t("en", "fallback.retry"), question)`` is the retry line, a blank
    line, then the question: compare a whole message against it, so both
    parts, their order and the separator are checked at once.
    """

    def join(*parts: str) -> str:
        return "\n\n".join(parts)

    return join


async def signed_up(chat: Chat, answers: tuple[str, ...] = ("yes", "no", "yes", "no")) -> Chat:
    """Run the whole sign-up (a helper for tests that start after it).

    "yes"/"no" press the open question's Yes/No button; any other answer is typed.
    """
    await chat.command("start")
    await chat.press("continue")
    for answer in answers:
        if answer in ("yes", "no"):
            await chat.answer(answer)
        else:
            await chat.send(answer)
    if chat.state.dialog == "categories":  # the welcome offer that follows a marketing "yes"
        await chat.press("done:categories")
    assert chat.state.dialog is None, chat.text
    return chat


@pytest.fixture
def signed_up_chat():
    return signed_up
