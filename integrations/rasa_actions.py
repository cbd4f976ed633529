"""Touchpoint's shop actions for a Rasa assistant, served with rasa-sdk.

A shop that already runs a Rasa assistant sets its action endpoint to
``<touchpoint>/rasa/webhook`` (``endpoints.yml``: ``action_endpoint: url:``)
and calls these actions by name. They are ordinary rasa-sdk ``Action``
classes run by rasa-sdk's ``ActionExecutor``, and they run the same rules
(``bot.codes``, ``bot.complaints``) and build the same effects
(``bot.turn``) as the built-in dialogs, persisted by the same
``store.apply_effects``: one consent log, one set of codes, one set of
tickets, whichever assistant the customer talked to.

Who the customer is. Rasa knows a conversation by its ``sender_id``:

* ``"<channel>:<address>"`` (``"telegram:5550100201"``), the address being
  what Touchpoint's own webhooks see (Telegram chat id, Viber user id,
  WhatsApp number without "+": Twilio's ``"whatsapp:+49..."`` works as is);
* or a bare id, with the channel in the slot ``channel``, in the latest
  message's ``metadata.channel``, or as Rasa's input channel (Rasa's own
  Telegram connector calls itself "telegram" and uses the chat id).

A customer Touchpoint has never seen is created as on a first contact
through our webhooks (customer, channel identity, conversation in bot
mode): the shop expects a consent or a complaint given to its assistant to
be kept, not refused because the customer happened to talk to Rasa first.
Any other channel is refused (400): consents and codes belong to a channel
Touchpoint can reach.

What the actions read and set (slots):

* ``action_record_consent``: ``purpose`` (a configured consent purpose),
  ``granted`` (true/false, "yes"/"no"); appends to the consent log with
  source "rasa" and the purpose's wording version (nothing when unchanged).
* ``action_save_categories``: ``categories`` (ids or names in any shop
  language, at most ``discounts.max_favourites``); saves them and, with
  marketing consent on the channel, issues a welcome code per category that
  has no usable one. Sets ``categories`` (ids) and ``discount_codes`` (the
  codes issued now). Unknown or too many: says so, sets ``categories`` to
  None (as a form's validation would), changes nothing.
* ``action_open_complaint``: ``complaint_kind`` (one of ``KINDS``),
  ``order_number`` (optional; "skip" or empty for none), ``complaint_description``,
  ``loyalty_category`` (optional). Opens the ticket with the complaint rules:
  a coupon that did not work requests a refund; a loyal customer gets the
  loyalty code on ``loyalty_category`` (else their first favourite, else the
  first category), once per ticket and not while one is usable. Sets
  ``ticket_number``, ``refund_requested``, ``loyalty_code``; an order number
  that does not match the shop's pattern is said and reset, nothing opened.
  Every complaint should offer a person: ask, then call ``action_handoff``.
* ``action_submit_survey_answer``: ``survey``, ``order``, ``question``,
  ``answer`` (rating 1-5 or 0-10, a choice's number or text, free text).
* ``action_handoff``: the conversation switches to agent mode (Touchpoint's
  bot stays silent), the ticket in ``ticket_number`` (or a new "handoff"
  ticket) waits for a person; says when to expect an answer; sets ``handoff``.
  A ``ticket_number`` that is not one of this customer's tickets (or not a
  string) gets a new "handoff" ticket, and the answer names that one.

Errors, as rasa-sdk's own server answers them: a slot the assistant must
fill correctly (an unknown purpose, kind, survey ...) rejects the action,
400 ``{"error", "action_name"}``, and nothing is stored; an unknown action is
404; a call without a domain 449. A malformed call is 400 (``check_call``),
and so is a ``sender_id`` with a NUL character (PostgreSQL cannot store it).
Texts come from ``locales/*/LC_MESSAGES/rasa.po`` in the customer's language.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Sequence

from babel.dates import format_datetime
from rasa_sdk import Action, ActionExecutionRejection, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher
from rasa_sdk.interfaces import ActionMissingDomainException, ActionNotFoundException
from sqlalchemy.engine import Connection

from bot import store
from bot.codes import code_link, plan_welcome_codes
from bot.complaints import (
    KINDS,
    LOYALTY_SOURCE,
    clean_order_number,
    follow_up,
    loyalty_code,
    new_ticket_number,
    valid_order_number,
)
from bot.config import Category, ShopConfig, SurveyQuestion
from bot.db import Database
from bot.dialog import normalise
from bot.i18n import I18n
from bot.messages import Outbound
from bot.models import utcnow
from bot.support_hours import next_reply_at
from bot.turn import (
    ConsentChange,
    CustomerSnapshot,
    Effect,
    Handoff,
    IssueCode,
    OpenTicket,
    SaveCategories,
    SurveyAnswer,
)

log = logging.getLogger("touchpoint.rasa")

SOURCE = "rasa"  # the consent log's source for changes made through Rasa
CHANNELS = ("telegram", "viber", "whatsapp")
MARKETING = "marketing"  # the purpose that welcome codes need on the channel
MAX_ADDRESS = 128
NO_ORDER = {"", "skip", "none", "-"}
TRUE_WORDS = {"true", "yes", "y", "1", "on", "granted"}
FALSE_WORDS = {"false", "no", "n", "0", "off", "withdrawn", "denied"}


@dataclass(frozen=True, slots=True)
class RasaServices:
    """What the actions need from the app; ``clock`` lets tests move time."""

    db: Database
    config: ShopConfig
    i18n: I18n
    clock: Callable[[], datetime] = utcnow


@dataclass(frozen=True, slots=True)
class Saved:
    """The outcome of one action's unit of work."""

    customer: CustomerSnapshot  # as it was before the effects
    effects: list[Effect]
    said: list[Outbound]  # what the store asks to tell the customer (e.g. a summary)
    locale: str
    now: datetime


@dataclass(frozen=True, slots=True)
class Texts:
    """The catalogs in one customer's language, with the dialog ``Context``'s ``t`` / ``tn`` signatures."""

    i18n: I18n
    locale: str

    def t(self, msgid: str, **params: Any) -> str:
        return self.i18n.text(self.locale, msgid, **params)

    def tn(self, msgid: str, msgid_plural: str, n: int, **params: Any) -> str:
        return self.i18n.plural(self.locale, msgid, msgid_plural, n, **params)

    def percent(self, value: int) -> str:
        return self.i18n.format_percent(self.locale, value / 100)

    def date(self, value: datetime) -> str:
        return self.i18n.format_date(self.locale, value)

    def date_time(self, value: datetime) -> str:
        """Date and time as the support team's clock shows it (``value`` carries that zone)."""
        return format_datetime(value, format="short", tzinfo=value.tzinfo, locale=self.locale)

    def category(self, config: ShopConfig, category_id: str) -> str:
        category = config.category(category_id)
        return category.name.get(self.locale) if category else category_id


# --------------------------------------------------------------------------- the call


class BadCall(ValueError):
    """The body is not an action call Rasa would send; rasa-sdk itself would answer 500."""


def check_call(call: Any) -> None:
    """Raise ``BadCall`` saying what is wrong with the shape of an action call."""
    if not isinstance(call, dict):
        raise BadCall("the body must be a JSON object (Rasa's action call)")
    if not isinstance(call.get("next_action"), str) or not call["next_action"]:
        raise BadCall("field 'next_action' (the action's name) is required")
    tracker = call.get("tracker")
    if not isinstance(tracker, dict):
        raise BadCall("field 'tracker' (an object) is required")
    if not isinstance(tracker.get("sender_id"), str) or not tracker["sender_id"].strip():
        raise BadCall("field 'tracker.sender_id' (a string) is required")
    if "\x00" in tracker["sender_id"]:
        raise BadCall("field 'tracker.sender_id' must not contain NUL characters")
    for key, kind, json_name in (("slots", dict, "object"), ("latest_message", dict, "object"), ("events", list, "array")):
        if tracker.get(key) is not None and not isinstance(tracker[key], kind):
            raise BadCall(f"field 'tracker.{key}' must be a JSON {json_name}")
    if not all(isinstance(event, dict) for event in tracker.get("events") or ()):
        raise BadCall("field 'tracker.events' must hold event objects")
    if call.get("domain") is not None and not isinstance(call["domain"], dict):
        raise BadCall("field 'domain' must be a JSON object")


async def run_call(executor: ActionExecutor, call: Any) -> tuple[int, Any]:
    """Run one action call; (HTTP status, JSON body) as rasa-sdk's action server answers."""
    try:
        check_call(call)
    except BadCall as exc:
        return 400, {"error": str(exc)}
    name = call["next_action"]
    log.debug("rasa.call action=%s rasa_version=%s", name, call.get("version"))
    try:
        result = await executor.run(call)
    except ActionNotFoundException as exc:
        log.warning("rasa.unknown_action action=%s", name)
        return 404, {"error": exc.message, "action_name": exc.action_name}
    except ActionExecutionRejection as exc:
        log.info("rasa.rejected action=%s reason=%s", name, exc.message)
        return 400, {"error": exc.message, "action_name": exc.action_name}
    except ActionMissingDomainException as exc:
        return 449, {"error": exc.message, "action_name": exc.action_name}
    return 200, result.model_dump() if result is not None else None


def build_executor(services: RasaServices) -> ActionExecutor:
    executor = ActionExecutor()
    for action in (RecordConsent, SaveFavourites, OpenComplaint, SubmitSurveyAnswer, HandOff):
        executor.register_action(action(services))
    return executor


# --------------------------------------------------------------------------- the customer


def conversation_of(tracker: Tracker, action: str) -> tuple[str, str]:
    """(channel, address) of the customer this Rasa conversation is with; see the module docstring."""
    sender = tracker.sender_id.strip()
    prefix, colon, rest = sender.partition(":")
    if colon and prefix.lower() in CHANNELS:
        channel, address = prefix.lower(), rest.strip()
    else:
        metadata = (tracker.latest_message or {}).get("metadata")
        from_metadata = metadata.get("channel") if isinstance(metadata, dict) else None
        named = tracker.get_slot("channel") or from_metadata or tracker.get_latest_input_channel()
        channel, address = str(named or "").lower(), sender
        if channel not in CHANNELS:
            raise ActionExecutionRejection(
                action,
                f"cannot tell the customer's channel: use sender_id '<channel>:<address>' or the slot 'channel'"
                f" (one of {', '.join(CHANNELS)}); got sender_id {sender!r} and channel {named!r}",
            )
    if channel == "whatsapp":
        address = address.removeprefix("+")  # WhatsApp's wa_id has no "+"
    if not address or len(address) > MAX_ADDRESS:
        raise ActionExecutionRejection(action, f"the customer's address must be 1 to {MAX_ADDRESS} characters")
    return channel, address


# --------------------------------------------------------------------------- the actions


class TouchpointAction(Action):
    """A Rasa action that persists ``bot.turn`` effects for the conversation's customer."""

    def __init__(self, services: RasaServices) -> None:
        self.services = services

    @property
    def config(self) -> ShopConfig:
        return self.services.config

    def reject(self, message: str) -> ActionExecutionRejection:
        return ActionExecutionRejection(self.name(), message)

    async def save(
        self,
        tracker: Tracker,
        decide: Callable[[CustomerSnapshot, datetime, Connection], list[Effect]],
    ) -> Saved:
        """Load (or create) the customer, decide the effects from that snapshot, persist both at once.

        Deciding inside the unit of work means two calls at once cannot both
        see "no code yet" and issue two; ``decide`` gets the unit's connection
        for what the snapshot does not hold (whose ticket a number is). A
        ``Handoff`` switches the conversation to agent mode in the store,
        bumping its version, so a turn of our own bot running at that moment
        is retried and sees it.
        """
        channel, address = conversation_of(tracker, self.name())
        now = self.services.clock()

        def unit(conn: Any) -> Saved:
            loaded = store.load_conversation(conn, channel, address, now)
            if loaded is None:
                loaded = store.create_identity(conn, channel, address, None, None)
                log.info("rasa.new_customer channel=%s customer=%s", channel, loaded.customer.id)
            locale = self._locale(loaded.customer.locale or loaded.state.locale)
            effects = decide(loaded.customer, now, conn)
            said = store.apply_effects(
                conn,
                customer_id=loaded.customer.id,
                channel=channel,
                address=address,
                effects=effects,
                now=now,
                identity_id=loaded.identity_id,
                locale=locale,
                i18n=self.services.i18n,
                config=self.config,
            )
            return Saved(loaded.customer, effects, list(said or ()), locale, now)

        saved = await self.services.db.write(unit)
        log.info(
            "rasa.action action=%s channel=%s customer=%s effects=%s",
            self.name(), channel, saved.customer.id, ",".join(type(e).__name__ for e in saved.effects) or "-",
        )  # fmt: skip
        return saved

    def _locale(self, preferred: str | None) -> str:
        return preferred if preferred in self.config.locales else self.config.default_locale

    async def customer_texts(self, tracker: Tracker) -> Texts:
        """The language of a customer we only answer: nothing is stored, nobody is created."""
        channel, address = conversation_of(tracker, self.name())
        loaded = await self.services.db.read(lambda conn: store.load_conversation(conn, channel, address))
        return self.texts(self._locale(loaded.customer.locale or loaded.state.locale if loaded else None))

    def texts(self, locale: str) -> Texts:
        return Texts(self.services.i18n, locale)

    def tell(self, dispatcher: CollectingDispatcher, saved: Saved, *texts: str) -> None:
        """Our texts and whatever the store asked to tell, for Rasa to send through its own channel."""
        for text in [*texts, *(message.text for message in saved.said)]:
            if text:
                dispatcher.utter_message(text=text)

    def slot_text(self, tracker: Tracker, slot: str) -> str:
        """The slot as text; NUL characters are dropped (PostgreSQL cannot store them in text)."""
        value = tracker.get_slot(slot)
        text = value if isinstance(value, str) else ("" if value is None else str(value))
        return text.replace("\x00", "").strip()

    def slot_string(self, tracker: Tracker, slot: str) -> str:
        """Like ``slot_text``, but a value that is not a string is no value (a dict names no ticket)."""
        return self.slot_text(tracker, slot) if isinstance(tracker.get_slot(slot), str) else ""


class RecordConsent(TouchpointAction):
    def name(self) -> str:
        return "action_record_consent"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        purpose = self.config.purpose(self.slot_text(tracker, "purpose"))
        if purpose is None:
            known = ", ".join(p.id for p in self.config.consent_purposes)
            raise self.reject(f"slot 'purpose' must name a configured consent purpose ({known})")
        granted = as_bool(tracker.get_slot("granted"))
        if granted is None:
            raise self.reject("slot 'granted' must be true or false (or 'yes' / 'no')")

        def decide(customer: CustomerSnapshot, now: datetime, conn: Connection) -> list[Effect]:
            current = customer.consent(purpose.id)
            unchanged = current is not None and current.granted == granted and current.wording_version == purpose.version
            # A "no" during a pause of offers is the customer's own: recorded, so the pause's end leaves it off.
            paused = not granted and purpose.marketing and customer.marketing_paused_until is not None
            if unchanged and not paused:
                return []  # already so: the log records changes, as the privacy dialog does
            return [ConsentChange(purpose.id, customer.channel, granted, SOURCE, purpose.version)]

        saved = await self.save(tracker, decide)
        say = self.texts(saved.locale)
        name = say.t(f"consent.{purpose.id}.name")
        self.tell(dispatcher, saved, say.t("rasa.consent_on", purpose=name) if granted else say.t("rasa.consent_off", purpose=name))
        return []


class SaveFavourites(TouchpointAction):
    def name(self) -> str:
        return "action_save_categories"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        wanted = tracker.get_slot("categories")
        if isinstance(wanted, str):
            wanted = [part for part in wanted.split(",") if part.strip()]
        if not isinstance(wanted, list) or not all(isinstance(item, str) for item in wanted):
            raise self.reject("slot 'categories' must be a list of category ids or names")
        picked: list[Category] = []
        unknown: list[str] = []
        for item in wanted:
            category = find_category(self.config, item)
            if category is None:
                unknown.append(item.strip())
            elif category not in picked:
                picked.append(category)
        limit = self.config.discounts.max_favourites
        problem: str | None = None
        if unknown or not picked or len(picked) > limit:
            say = await self.customer_texts(tracker)
            names = ", ".join(say.category(self.config, c.id) for c in self.config.categories)
            if unknown:
                problem = say.tn(
                    "rasa.categories_unknown", "rasa.categories_unknown.plural", len(unknown),
                    unknown=", ".join(unknown), choices=names,
                )  # fmt: skip
            elif not picked:
                problem = say.t("rasa.categories_none", choices=names)
            else:
                problem = say.tn("rasa.categories_too_many", "rasa.categories_too_many.plural", limit)
        if problem is not None:
            dispatcher.utter_message(text=problem)
            return [SlotSet("categories", None)]
        ids = tuple(c.id for c in picked)

        def decide(customer: CustomerSnapshot, now: datetime, conn: Connection) -> list[Effect]:
            effects: list[Effect] = [SaveCategories(ids)]
            consent = customer.consent(MARKETING)
            if consent is not None and consent.granted:
                effects.extend(plan_welcome_codes(self.config, ids, customer.codes, now))
            return effects

        saved = await self.save(tracker, decide)
        say = self.texts(saved.locale)
        codes = [e for e in saved.effects if isinstance(e, IssueCode)]
        lines = [say.t("rasa.categories_saved", categories=", ".join(say.category(self.config, i) for i in ids))]
        consent = saved.customer.consent(MARKETING)
        if codes:
            lines.append(say.tn("rasa.codes_intro", "rasa.codes_intro.plural", len(codes)))
            lines.extend(self._code_line(say, code) for code in codes)
        elif consent is None or not consent.granted:
            lines.append(say.t("rasa.codes_need_consent"))
        else:
            lines.append(say.t("rasa.codes_still_valid"))
        self.tell(dispatcher, saved, "\n".join(lines))
        issued = [
            {
                "code": code.code,
                "category": code.category,
                "percent": code.percent,
                "expires_at": code.expires_at.isoformat(),
                "link": code_link(self.config, code.category, code.code),
            }
            for code in codes
        ]
        return [SlotSet("categories", list(ids)), SlotSet("discount_codes", issued)]

    def _code_line(self, say: Texts, code: IssueCode) -> str:
        line = say.t(
            "rasa.code_line",
            category=say.category(self.config, code.category),
            code=code.code,
            percent=say.percent(code.percent),
            date=say.date(code.expires_at),
        )
        link = code_link(self.config, code.category, code.code)
        return f"{line}\n{link}" if link else line


class OpenComplaint(TouchpointAction):
    def name(self) -> str:
        return "action_open_complaint"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        kind = self.slot_text(tracker, "complaint_kind")
        if kind not in KINDS:
            raise self.reject(f"slot 'complaint_kind' must be one of {', '.join(KINDS)}")
        description = self.slot_text(tracker, "complaint_description")
        if not description:
            raise self.reject("slot 'complaint_description' (what happened) is required")
        order = clean_order_number(self.slot_text(tracker, "order_number"))
        if order.casefold() in NO_ORDER:
            order = ""
        elif not valid_order_number(self.config, order):
            say = await self.customer_texts(tracker)
            dispatcher.utter_message(text=say.t("rasa.complaint_order_invalid", order=order))
            return [SlotSet("order_number", None)]
        chosen = find_category(self.config, self.slot_text(tracker, "loyalty_category"))
        number = new_ticket_number()

        def decide(customer: CustomerSnapshot, now: datetime, conn: Connection) -> list[Effect]:
            rules = follow_up(self.config, kind, customer.attributes, customer.created_at, now)
            effects: list[Effect] = [
                OpenTicket(
                    number=number,
                    kind=kind,
                    description=description,
                    order_number=order or None,
                    refund_requested=rules.refund,
                )
            ]
            holds_one = any(code.source == LOYALTY_SOURCE for code in customer.codes)
            category = chosen or loyalty_category(self.config, customer)
            if rules.loyalty_percent and not holds_one and category is not None:
                effects.append(loyalty_code(self.config, category.id, now, reference=number))
            return effects

        saved = await self.save(tracker, decide)
        say = self.texts(saved.locale)
        ticket = next(e for e in saved.effects if isinstance(e, OpenTicket))
        lines = [say.t("rasa.complaint_opened", number=number)]
        if ticket.refund_requested:
            lines.append(say.t("rasa.complaint_refund"))
        code = next((e for e in saved.effects if isinstance(e, IssueCode)), None)
        if code is not None:
            lines.append(
                say.t(
                    "rasa.complaint_loyalty",
                    percent=say.percent(code.percent),
                    category=say.category(self.config, code.category),
                    code=code.code,
                    date=say.date(code.expires_at),
                )
            )
        self.tell(dispatcher, saved, "\n\n".join(lines))
        return [
            SlotSet("ticket_number", number),
            SlotSet("refund_requested", ticket.refund_requested),
            SlotSet("loyalty_code", code.code if code else None),
        ]


class SubmitSurveyAnswer(TouchpointAction):
    def name(self) -> str:
        return "action_submit_survey_answer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        survey = self.config.survey(self.slot_text(tracker, "survey"))
        if survey is None:
            raise self.reject(f"slot 'survey' must name a configured survey: {[s.id for s in self.config.surveys]}")
        order = self.slot_text(tracker, "order")
        if not order or len(order) > MAX_ADDRESS:
            raise self.reject(f"slot 'order' (the order the survey is about, at most {MAX_ADDRESS} characters) is required")
        question = survey.question(self.slot_text(tracker, "question"))
        if question is None:
            raise self.reject(f"slot 'question' must be one of {', '.join(q.id for q in survey.questions)}")
        answer = survey_answer(self.config, question, tracker.get_slot("answer"))
        if answer is None:
            raise self.reject(f"slot 'answer' is not a valid answer to question {question.id!r} ({question.kind})")
        saved = await self.save(tracker, lambda customer, now, conn: [SurveyAnswer(survey.id, order, question.id, answer)])
        self.tell(dispatcher, saved)
        return []


class HandOff(TouchpointAction):
    def name(self) -> str:
        return "action_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        named = self.slot_string(tracker, "ticket_number")
        fresh = new_ticket_number()

        def decide(customer: CustomerSnapshot, now: datetime, conn: Connection) -> list[Effect]:
            if not named:
                return [Handoff()]
            if store.customer_has_ticket(conn, customer.id, named):
                return [Handoff(ticket=named)]
            # Not this customer's ticket: a ticket of its own waits, and the customer is told its number.
            return [OpenTicket(number=fresh, kind="handoff", description=Handoff().reason), Handoff(ticket=fresh)]

        saved = await self.save(tracker, decide)
        say = self.texts(saved.locale)
        at = say.date_time(next_reply_at(self.config.support, saved.now))
        waiting = next(e.ticket for e in saved.effects if isinstance(e, Handoff))
        self.tell(dispatcher, saved, say.t("rasa.handoff_ticket", number=waiting, time=at) if waiting else say.t("rasa.handoff", time=at))
        return [SlotSet("handoff", True)]


# --------------------------------------------------------------------------- slot values


def as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().casefold() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().casefold() in TRUE_WORDS
    return None


def find_category(config: ShopConfig, text: str) -> Category | None:
    """A category by id or by its name in any of the shop's languages ("Schuhe", "zapatos")."""
    key = normalise(text)
    if not key:
        return None
    for category in config.categories:
        names = {category.id, *(category.name.get(lang) for lang in config.locales)}
        if key in {normalise(name) for name in names}:
            return category
    return None


def loyalty_category(config: ShopConfig, customer: CustomerSnapshot) -> Category | None:
    """The customer's first favourite still in the catalog, else the first category."""
    favourites: Sequence[Category | None] = [config.category(c) for c in customer.categories]
    return next((c for c in favourites if c is not None), config.categories[0] if config.categories else None)


def survey_answer(config: ShopConfig, question: SurveyQuestion, value: Any) -> str | None:
    """The answer as the dialogs store it (a rating's number, a choice's 1-based index, the text)."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    if question.kind in ("rating5", "rating10"):
        low, high = (1, 5) if question.kind == "rating5" else (0, 10)
        number = int(text) if text.isdigit() else (int(value) if isinstance(value, float) and value.is_integer() else None)
        return str(number) if number is not None and low <= number <= high else None
    if question.kind == "choice":
        if text.isdigit() and 1 <= int(text) <= len(question.options):
            return text
        key = normalise(text)
        for index, option in enumerate(question.options, start=1):
            if key and key in {normalise(option.get(lang)) for lang in config.locales}:
                return str(index)
        return None
    return text or None
