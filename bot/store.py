"""SQL for the pipeline's hot path, with SQLAlchemy Core on the SQLModel tables.

Each function takes a (synchronous) connection and does one job;
``Database.write`` groups the writing ones into shared transactions and runs
them inline on SQLite or through ``run_sync`` on an async driver. Core rather
than ORM sessions, because the ORM's unit-of-work bookkeeping costs several
times more per statement (../shared/PERFORMANCE.md) and we never need
identity maps here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Sequence

from sqlalchemy import (
    LargeBinary,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot import sqlite_fast
from bot.messages import Outbound
from bot.models import (
    ChannelIdentity,
    Consent,
    Conversation,
    Customer,
    DiscountCode,
    InboxEvent,
    MessageLog,
    OutboxMessage,
    SurveyResponse,
    Ticket,
    utcnow,
)
from bot.models_shop import (
    AccountLink,
    Cart,
    CustomerLocation,
    IdempotentRequest,
    Link,
    ProductInterest,
    Push,
    PushEvent,
    ShopOrder,
)
from bot.turn import (
    CodeState,
    ConsentChange,
    ConsentState,
    ConversationState,
    CustomerSnapshot,
    EraseCustomer,
    Handoff,
    IssueCode,
    OpenTicket,
    PauseMarketing,
    SaveCategories,
    SendMyData,
    SetCustomer,
    SetIdentity,
    SurveyAnswer,
    SurveyStatus,
)

if TYPE_CHECKING:
    from bot.config import ShopConfig
    from bot.i18n import I18n

log = logging.getLogger("touchpoint.store")

inbox_t = InboxEvent.__table__
outbox_t = OutboxMessage.__table__
customer_t = Customer.__table__
identity_t = ChannelIdentity.__table__
conversation_t = Conversation.__table__
consent_t = Consent.__table__
log_t = MessageLog.__table__
code_t = DiscountCode.__table__
ticket_t = Ticket.__table__
survey_t = SurveyResponse.__table__
location_t = CustomerLocation.__table__
cart_t = Cart.__table__
interest_t = ProductInterest.__table__
push_t = Push.__table__
push_event_t = PushEvent.__table__
link_t = Link.__table__
order_t = ShopOrder.__table__
account_link_t = AccountLink.__table__
idempotent_t = IdempotentRequest.__table__

# The consent log's source of the withdrawals "pause offers" writes; the job that ends
# a pause grants again exactly the purposes whose newest row still has it.
PAUSE_SOURCE = "pause"


# Statements on the hot path are built once: SQLAlchemy memoises the cache key
# of a statement object, so re-using it skips most of the per-call compile cost.
B = bindparam

_INBOX_PENDING = (
    select(inbox_t.c.id, inbox_t.c.body, inbox_t.c.attempts, inbox_t.c.event_id)
    .where(inbox_t.c.channel == B("channel"), inbox_t.c.address == B("address"), inbox_t.c.status == "pending")
    .order_by(inbox_t.c.id)
    .limit(B("limit"))
)
_INBOX_FINISH = (
    update(inbox_t)
    .where(inbox_t.c.id == B("_id"))
    .values(status=B("_status"), error=B("_error"), processed_at=B("_at"), attempts=inbox_t.c.attempts + 1)
)
_NEWEST_CONSENTS = (
    select(func.max(consent_t.c.id))
    .where(consent_t.c.customer_id == conversation_t.c.customer_id)
    .group_by(consent_t.c.purpose, consent_t.c.channel)
    .correlate(conversation_t)
)
# The customer's usable codes as one JSON array of [id, code, category, percent,
# expires_at, source] (NULL when none). PostgreSQL only: SQLite runs the
# hand-written twin in ``sqlite_fast``.
_USABLE_CODES = (
    select(
        func.json_agg(
            func.json_build_array(
                code_t.c.id, code_t.c.code, code_t.c.category, code_t.c.percent, code_t.c.expires_at, code_t.c.source
            )
        )
    )
    .where(
        code_t.c.customer_id == conversation_t.c.customer_id,
        code_t.c.redeemed_at.is_(None),
        code_t.c.expires_at > B("now"),
    )
    .correlate(conversation_t)
    .scalar_subquery()
)
# The conversation, its customer and identity, the customer's usable codes and
# current consents (one row each; one row of NULLs when there are none) in one statement.
_CONVERSATION = (
    select(
        conversation_t,
        customer_t.c.first_name,
        customer_t.c.locale.label("customer_locale"),
        identity_t.c.id.label("identity_id"),
        identity_t.c.blocked_at,
        consent_t.c.purpose.label("consent_purpose"),
        consent_t.c.channel.label("consent_channel"),
        consent_t.c.granted.label("consent_granted"),
        consent_t.c.created_at.label("consent_at"),
        consent_t.c.wording_version.label("consent_version"),
        customer_t.c.categories,
        customer_t.c.attributes,
        customer_t.c.created_at.label("customer_created_at"),
        customer_t.c.marketing_paused_until,
        _USABLE_CODES.label("codes"),
    )
    .join(customer_t, customer_t.c.id == conversation_t.c.customer_id)
    .join(identity_t, and_(identity_t.c.channel == conversation_t.c.channel, identity_t.c.address == conversation_t.c.address))
    .outerjoin(consent_t, consent_t.c.id.in_(_NEWEST_CONSENTS))
    .where(conversation_t.c.channel == B("channel"), conversation_t.c.address == B("address"))
    .order_by(consent_t.c.id)
)
_CURRENT_CONSENTS = (
    select(consent_t)
    .where(
        consent_t.c.id.in_(
            select(func.max(consent_t.c.id))
            .where(consent_t.c.customer_id == B("customer_id"))
            .group_by(consent_t.c.purpose, consent_t.c.channel)
        )
    )
    .order_by(consent_t.c.id)
)
_SAVE_CONVERSATION = update(conversation_t).where(
    conversation_t.c.id == B("_id"), conversation_t.c.version == B("_version")
)
_IDENTITY_BY_ADDRESS = select(identity_t.c.id, identity_t.c.blocked_at).where(
    identity_t.c.channel == B("channel"), identity_t.c.address == B("address")
)
_SET_BLOCKED = (
    update(identity_t)
    .where(identity_t.c.channel == B("_channel"), identity_t.c.address == B("_address"))
    .values(blocked_at=B("_blocked_at"))
)
_INSERT_CUSTOMER = insert(customer_t).returning(customer_t.c.id)
_INSERT_IDENTITY = insert(identity_t).returning(identity_t.c.id)
_INSERT_CONVERSATION = insert(conversation_t)
_INSERT_CONSENT = insert(consent_t)
_INSERT_LOG = insert(log_t)
_INSERT_OUTBOX = insert(outbox_t)
_OUTBOX_PENDING = (
    select(
        select(identity_t.c.blocked_at)
        .where(identity_t.c.channel == B("channel"), identity_t.c.address == B("address"))
        .scalar_subquery()
        .label("blocked_at"),
        outbox_t.c.id,
        outbox_t.c.payload,
        outbox_t.c.attempts,
        outbox_t.c.parts_sent,
        outbox_t.c.next_attempt_at,
        outbox_t.c.customer_id,
    )
    .where(outbox_t.c.channel == B("channel"), outbox_t.c.address == B("address"), outbox_t.c.status == "pending")
    .order_by(outbox_t.c.id)
    .limit(B("limit"))
)
_OUTBOX_UPDATE = update(outbox_t).where(outbox_t.c.id == B("_id"))
_OUTBOX_BLOCK_PENDING = (
    update(outbox_t)
    .where(outbox_t.c.channel == B("_channel"), outbox_t.c.address == B("_address"), outbox_t.c.status == "pending")
    .values(status="blocked", last_error="recipient blocked")
)
_INBOX_INSERT: dict[str, Any] = {}  # per dialect: INSERT ... ON CONFLICT DO NOTHING RETURNING id


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def utc(value: datetime) -> datetime:
    """Aware UTC: SQLite stores a datetime's wall-clock fields and drops the zone."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _insert_ignore(conn: Connection, table: Any, on: Sequence[str] | None = None) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING, on any unique key or only on the columns ``on``."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=on)
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=on)
    raise RuntimeError(f"unsupported database dialect {dialect}")


# --- inbox -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewInboxRow:
    channel: str
    event_id: str
    address: str
    body: bytes


def inbox_append(conn: Connection, rows: Sequence[NewInboxRow]) -> list[int | None]:
    """Insert rows, ignoring ones already stored; returns the new id or None per row."""
    now = utcnow()
    stmt = _INBOX_INSERT.get(conn.dialect.name)
    if stmt is None:
        stmt = _INBOX_INSERT[conn.dialect.name] = _insert_ignore(conn, inbox_t).returning(inbox_t.c.id)
    ids: list[int | None] = []
    for row in rows:
        result = conn.execute(
            stmt,
            {
                "channel": row.channel,
                "event_id": row.event_id,
                "address": row.address,
                "body": row.body,
                "status": "pending",
                "attempts": 0,
                "received_at": now,
            },
        )
        ids.append(result.scalar_one_or_none())
    return ids


def inbox_pending(conn: Connection, channel: str, address: str, limit: int = 50) -> list[Any]:
    if (db := sqlite_fast.driver(conn)) is not None:
        return sqlite_fast.inbox_pending(db, channel, address, limit)
    return list(conn.execute(_INBOX_PENDING, {"channel": channel, "address": address, "limit": limit}))


def inbox_finish(conn: Connection, inbox_id: int, status: str, error: str | None = None) -> None:
    if (db := sqlite_fast.driver(conn)) is not None:
        return sqlite_fast.inbox_finish(db, inbox_id, status, error, utcnow())
    conn.execute(_INBOX_FINISH, {"_id": inbox_id, "_status": status, "_error": error, "_at": utcnow()})


def inbox_forget(conn: Connection, inbox_id: int, reason: str) -> None:
    """Set an event aside as "ignored" without its body and address (an event for nobody we know).

    Channel and event id stay, so a redelivery is still recognised as a duplicate.
    """
    conn.execute(
        update(inbox_t)
        .where(inbox_t.c.id == inbox_id)
        .values(status="ignored", error=reason, body=b"", address="", processed_at=utcnow(), attempts=inbox_t.c.attempts + 1)
    )


def inbox_stale_keys(conn: Connection, older_than: datetime, limit: int = 1000) -> list[tuple[str, str]]:
    """Conversations with inbox rows still pending (a crash, or a lost wake-up)."""
    result = conn.execute(
        select(inbox_t.c.channel, inbox_t.c.address)
        .where(inbox_t.c.status == "pending", inbox_t.c.received_at <= older_than)
        .group_by(inbox_t.c.channel, inbox_t.c.address)
        .limit(limit)
    )
    return [(r.channel, r.address) for r in result]


# --- customers, identities, conversations ----------------------------------


@dataclass(slots=True)
class Loaded:
    customer: CustomerSnapshot
    state: ConversationState
    conversation_id: int
    identity_id: int
    blocked: bool


def load_conversation(conn: Connection, channel: str, address: str, now: datetime | None = None) -> Loaded | None:
    """The conversation with its customer snapshot; codes are those usable at ``now`` (default: the clock)."""
    now = utc(now) if now is not None else utcnow()
    if (db := sqlite_fast.driver(conn)) is not None:
        rows: list[Any] = sqlite_fast.conversation_rows(db, channel, address, now)
    else:
        rows = conn.execute(_CONVERSATION, {"channel": channel, "address": address, "now": now}).all()
    if not rows:
        return None
    row = rows[0]
    consents = [
        _consent(r.consent_purpose, r.consent_channel, r.consent_granted, r.consent_at, r.consent_version)
        for r in rows
        if r.consent_purpose is not None
    ]
    codes = [
        CodeState(code=code, category=category, percent=percent, expires_at=_json_time(expires), source=source)
        for _id, code, category, percent, expires, source in sorted(row.codes or ())
    ]
    return Loaded(
        customer=CustomerSnapshot(
            id=row.customer_id,
            first_name=row.first_name,
            locale=row.customer_locale,
            channel=channel,
            consents=tuple(consents),
            categories=tuple(row.categories or ()),
            codes=tuple(codes),
            attributes=dict(row.attributes or {}),
            created_at=as_utc(row.customer_created_at),
            marketing_paused_until=as_utc(row.marketing_paused_until),
        ),
        state=ConversationState(
            dialog=row.dialog,
            step=row.step,
            slots=dict(row.slots or {}),
            locale=row.locale,
            mode=row.mode,
            offered=list(row.offered or []),
            misses=row.misses,
            version=row.version,
            last_inbound_at=as_utc(row.last_inbound_at),
        ),
        conversation_id=row.id,
        identity_id=row.identity_id,
        blocked=row.blocked_at is not None,
    )


def _json_time(value: str) -> datetime:
    """A time inside a JSON aggregate: ISO with offset (PostgreSQL) or SQLite's naive UTC text."""
    return utc(datetime.fromisoformat(value))


def current_consents(conn: Connection, customer_id: int) -> list[ConsentState]:
    """The newest consent row per (purpose, channel) of one customer."""
    result = conn.execute(_CURRENT_CONSENTS, {"customer_id": customer_id})
    return [_consent(r.purpose, r.channel, r.granted, r.created_at, r.wording_version) for r in result]


def paused_consents(conn: Connection, customer_id: int) -> set[tuple[str, str]]:
    """(purpose, channel) pairs that are off only because of a running pause of offers.

    A withdrawal said during the pause must write its own row even though the
    purpose is already off: the job that ends the pause grants again exactly the
    pairs whose newest row is still the pause's.
    """
    result = conn.execute(_CURRENT_CONSENTS, {"customer_id": customer_id})
    return {(r.purpose, r.channel) for r in result if not r.granted and r.source == PAUSE_SOURCE}


def _consent(purpose: str, channel: str, granted: Any, at: datetime, version: str) -> ConsentState:
    return ConsentState(
        purpose=purpose, channel=channel, granted=bool(granted), updated_at=as_utc(at), wording_version=version  # type: ignore[arg-type]
    )


def create_identity(
    conn: Connection, channel: str, address: str, first_name: str | None, language_code: str | None
) -> Loaded:
    """Create customer, channel identity and conversation for a first contact.

    Idempotent: when they already exist (a concurrent first contact), loads them.
    """
    if conn.execute(_IDENTITY_BY_ADDRESS, {"channel": channel, "address": address}).first() is not None:
        loaded = load_conversation(conn, channel, address)
        assert loaded is not None
        return loaded
    now = utcnow()
    customer = {"first_name": first_name, "locale": None, "created_at": now, "updated_at": now}
    db = sqlite_fast.driver(conn)
    if db is not None:
        customer_id = sqlite_fast.insert(db, "customer", customer)
    else:
        customer_id = conn.execute(_INSERT_CUSTOMER, customer).scalar_one()
    identity = {
        "customer_id": customer_id,
        "channel": channel,
        "address": address,
        "display_name": first_name,
        "language_code": language_code,
        "deep_link": None,
        "blocked_at": None,
        "created_at": now,
    }
    conversation = {
        "channel": channel,
        "address": address,
        "customer_id": customer_id,
        "dialog": None,
        "step": None,
        "slots": {},
        "offered": [],
        "locale": None,
        "mode": "bot",
        "misses": 0,
        "version": 0,
        "last_inbound_at": None,
        "updated_at": now,
    }
    if db is not None:
        identity_id = sqlite_fast.insert(db, "channel_identity", identity)
        conversation_id = sqlite_fast.insert(db, "conversation", conversation)
    else:
        identity_id = conn.execute(_INSERT_IDENTITY, identity).scalar_one()
        conversation_id = conn.execute(_INSERT_CONVERSATION, conversation).inserted_primary_key[0]
    return Loaded(
        customer=CustomerSnapshot(
            id=customer_id, first_name=first_name, locale=None, channel=channel, is_new=True, created_at=now
        ),
        state=ConversationState(),
        conversation_id=conversation_id,
        identity_id=identity_id,
        blocked=False,
    )


class VersionConflict(Exception):
    """The conversation changed under us (a lease expired); the event is retried."""


def save_turn(
    conn: Connection,
    *,
    loaded: Loaded,
    channel: str,
    address: str,
    new_state: ConversationState,
    effects: Sequence[Any],
    inbound_at: datetime | None,
    inbox_id: int | None = None,
    i18n: I18n | None = None,
    config: ShopConfig | None = None,
) -> list[Outbound]:
    """Save the new state (version-checked), then apply the turn's effects in order.

    Returns the extra messages the effects produced (the my-data report), to be
    queued after the turn's own messages.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "_id": loaded.conversation_id,
        "_version": loaded.state.version,
        "dialog": new_state.dialog,
        "step": new_state.step,
        "slots": new_state.slots,
        "offered": new_state.offered,
        "locale": new_state.locale,
        "mode": new_state.mode,
        "misses": new_state.misses,
        "version": loaded.state.version + 1,
        "updated_at": now,
    }
    if inbound_at is not None:
        values["last_inbound_at"] = inbound_at
    if (db := sqlite_fast.driver(conn)) is not None:
        where = {"id": values.pop("_id"), "version": values.pop("_version")}
        saved = sqlite_fast.update(db, "conversation", values, where)
    else:
        saved = conn.execute(_SAVE_CONVERSATION, values).rowcount
    if saved != 1:
        raise VersionConflict(f"{channel}:{address}")
    if not effects:
        return []
    return apply_effects(
        conn,
        customer_id=loaded.customer.id,
        channel=channel,
        address=address,
        effects=effects,
        now=now,
        identity_id=loaded.identity_id,
        locale=new_state.locale or loaded.customer.locale,
        inbox_id=inbox_id,
        i18n=i18n,
        config=config,
    )


def apply_effects(
    conn: Connection,
    *,
    customer_id: int,
    channel: str,
    address: str,
    effects: Sequence[Any],
    now: datetime,
    identity_id: int | None = None,
    locale: str | None = None,
    inbox_id: int | None = None,
    i18n: I18n | None = None,
    config: ShopConfig | None = None,
) -> list[Outbound]:
    """Persist dialog effects for one customer, in the order given; returns messages to queue.

    Used by every turn (``save_turn``) and by callers outside a turn that
    build effects themselves (the Rasa action endpoint), so both write the
    same rows. ``channel``/``address`` is the conversation the effects came
    from (tickets record it; a handoff switches it to agent mode).
    ``identity_id`` saves a lookup when known; ``inbox_id`` is the event being
    handled (an erasure blanks its stored body too). ``SendMyData`` needs
    ``i18n`` and ``config`` and uses ``locale`` (default: the customer's).
    Order matters: an erasure comes after the consent withdrawals it keeps.
    """
    now = utc(now)
    extra: list[Outbound] = []
    for effect in effects:
        if isinstance(effect, ConsentChange):
            conn.execute(
                _INSERT_CONSENT,
                {
                    "customer_id": customer_id,
                    "purpose": effect.purpose,
                    "channel": effect.channel,
                    "granted": effect.granted,
                    "source": effect.source,
                    "wording_version": effect.wording_version,
                    "created_at": now,
                },
            )
        elif isinstance(effect, SetCustomer):
            changes = {k: v for k, v in (("locale", effect.locale), ("first_name", effect.first_name)) if v is not None}
            if changes:
                _update_customer(conn, customer_id, now, **changes)
        elif isinstance(effect, SetIdentity):
            _set_identity(conn, effect, identity_id, channel, address, now)
        elif isinstance(effect, SaveCategories):
            _update_customer(conn, customer_id, now, categories=list(effect.categories))
        elif isinstance(effect, IssueCode):
            issue_code(conn, customer_id, effect, now)
        elif isinstance(effect, OpenTicket):
            open_ticket(conn, customer_id, channel, address, effect, now)
        elif isinstance(effect, Handoff):
            hand_off(conn, customer_id, channel, address, effect, now)
        elif isinstance(effect, SurveyAnswer):
            record_survey_answer(conn, customer_id, channel, address, effect, now)
        elif isinstance(effect, SurveyStatus):
            set_survey_status(conn, customer_id, channel, address, effect, now)
        elif isinstance(effect, PauseMarketing):
            _update_customer(conn, customer_id, now, marketing_paused_until=utc(effect.until))
        elif isinstance(effect, SendMyData):
            if i18n is None or config is None:
                raise ValueError("SendMyData needs i18n and config")
            from bot.mydata import build_report  # the report reads this module's tables

            extra.append(Outbound(text=build_report(conn, customer_id, i18n, locale, config), transactional=True))
        elif isinstance(effect, EraseCustomer):
            erase_customer(conn, customer_id, now, keep_inbox_id=inbox_id)
        else:
            log.warning("effect.unknown %r", effect)
    return extra


def _update_customer(conn: Connection, customer_id: int, now: datetime, **values: Any) -> None:
    conn.execute(update(customer_t).where(customer_t.c.id == customer_id).values(updated_at=now, **values))


def _set_identity(
    conn: Connection, effect: SetIdentity, identity_id: int | None, channel: str, address: str, now: datetime
) -> None:
    values: dict[str, Any] = {}
    if effect.blocked is not None:
        values["blocked_at"] = now if effect.blocked else None
    if effect.deep_link is not None:
        values["deep_link"] = effect.deep_link[:256]
    if not values:
        return
    if identity_id is not None:
        where = identity_t.c.id == identity_id
    else:
        where = and_(identity_t.c.channel == channel, identity_t.c.address == address)
    conn.execute(update(identity_t).where(where).values(**values))


# --- codes, tickets, handoff, surveys -----------------------------------------


def issue_code(conn: Connection, customer_id: int, effect: IssueCode, now: datetime) -> bool:
    """Store a code; with a reference, once per (customer, source, reference). True when stored."""
    row = {
        "customer_id": customer_id,
        "code": effect.code,
        "category": effect.category,
        "percent": effect.percent,
        "expires_at": utc(effect.expires_at),
        "source": effect.source,
        "reference": effect.reference,
        "issued_at": utc(now),
        "redeemed_at": None,
    }
    if effect.reference is None:
        conn.execute(insert(code_t), row)
        return True
    stmt = _insert_ignore(conn, code_t, on=("customer_id", "source", "reference")).returning(code_t.c.id)
    return conn.execute(stmt, row).scalar_one_or_none() is not None


def redeem_code(conn: Connection, code: str, at: datetime) -> bool:
    """Mark a code used (the shop reports it); True when it was usable."""
    result = conn.execute(
        update(code_t).where(code_t.c.code == code, code_t.c.redeemed_at.is_(None)).values(redeemed_at=utc(at))
    )
    return result.rowcount == 1


def open_ticket(
    conn: Connection, customer_id: int, channel: str, address: str, effect: OpenTicket, now: datetime, status: str = "open"
) -> None:
    now = utc(now)
    conn.execute(
        insert(ticket_t),
        {
            "number": effect.number,
            "customer_id": customer_id,
            "channel": channel,
            "address": address,
            "kind": effect.kind,
            "description": effect.description,
            "order_number": effect.order_number,
            "attachments": [dict(a) for a in effect.attachments],
            "refund_requested": effect.refund_requested,
            "status": status,
            "created_at": now,
            "updated_at": now,
        },
    )


def new_ticket_number() -> str:
    from bot.complaints import (
        new_ticket_number as generate,  # the complaint flow owns the format
    )

    return generate()


def hand_off(conn: Connection, customer_id: int, channel: str, address: str, effect: Handoff, now: datetime) -> str:
    """The ticket waits for a person and the conversation goes to agent mode; returns the ticket number.

    A ticket that is not this customer's (unknown, mistyped, someone else's)
    is never touched: a new "handoff" ticket waits instead, so agent mode
    always has a ticket waiting. Inside a turn the saved state already says
    "agent" and the mode update matches nothing. Outside a turn it switches
    the mode and bumps the version, so a turn running concurrently is
    retried and sees it.
    """
    now = utc(now)
    number = effect.ticket
    if number is not None:
        waiting = conn.execute(
            update(ticket_t)
            .where(ticket_t.c.number == number, ticket_t.c.customer_id == customer_id)
            .values(status="waiting_agent", updated_at=now)
        ).rowcount
        if waiting != 1:
            log.info("handoff.unknown_ticket customer=%s", customer_id)
            number = None
    if number is None:
        number = new_ticket_number()
        open_ticket(
            conn, customer_id, channel, address, OpenTicket(number=number, kind="handoff", description=effect.reason),
            now, status="waiting_agent",
        )
    conn.execute(
        update(conversation_t)
        .where(conversation_t.c.channel == channel, conversation_t.c.address == address, conversation_t.c.mode != "agent")
        .values(mode="agent", version=conversation_t.c.version + 1, updated_at=now)
    )
    return number


def customer_has_ticket(conn: Connection, customer_id: int, number: str) -> bool:
    return conn.execute(
        select(ticket_t.c.id).where(ticket_t.c.number == number, ticket_t.c.customer_id == customer_id)
    ).first() is not None


def start_survey_row(
    conn: Connection, customer_id: int, survey: str, order_ref: str, channel: str, address: str, now: datetime
) -> bool:
    """Create the survey's row as started; False when this order's survey exists already (once per order)."""
    stmt = _insert_ignore(conn, survey_t, on=("customer_id", "survey", "order_ref")).returning(survey_t.c.id)
    row = {
        "customer_id": customer_id,
        "survey": survey,
        "order_ref": order_ref,
        "status": "started",
        "channel": channel,
        "address": address,
        "answers": {},
        "started_at": utc(now),
        "finished_at": None,
    }
    return conn.execute(stmt, row).scalar_one_or_none() is not None


def _survey_where(customer_id: int, survey: str, order: str) -> Any:
    return and_(survey_t.c.customer_id == customer_id, survey_t.c.survey == survey, survey_t.c.order_ref == order)


def record_survey_answer(
    conn: Connection, customer_id: int, channel: str, address: str, effect: SurveyAnswer, now: datetime
) -> None:
    start_survey_row(conn, customer_id, effect.survey, effect.order, channel, address, now)
    where = _survey_where(customer_id, effect.survey, effect.order)
    answers = dict(conn.execute(select(survey_t.c.answers).where(where)).scalar_one() or {})
    answers[effect.question] = effect.answer
    conn.execute(update(survey_t).where(where).values(answers=answers))


def set_survey_status(
    conn: Connection, customer_id: int, channel: str, address: str, effect: SurveyStatus, now: datetime
) -> None:
    start_survey_row(conn, customer_id, effect.survey, effect.order, channel, address, now)
    finished = None if effect.status == "started" else utc(now)
    conn.execute(
        update(survey_t)
        .where(_survey_where(customer_id, effect.survey, effect.order))
        .values(status=effect.status, finished_at=finished)
    )


# --- erasure -------------------------------------------------------------------


def erase_customer(conn: Connection, customer_id: int, now: datetime, keep_inbox_id: int | None = None) -> None:
    """Erase a customer's personal data everywhere (the "delete me" of the privacy flow).

    What stays, for the shop's statistics and as proof of the withdrawals: the
    customer row as a bare id with ``erased_at``; the consent log; ticket rows
    without their contents (number, kind, dates); push rows without address
    and variables (status, reason and times) and their status history without
    details; order rows without the discount code (id, total, times).
    Identities and conversations go, so the next message from one of the
    addresses starts as a new customer. Inbox rows keep channel and event id
    (a redelivered webhook is still recognised); the handled ones, and
    ``keep_inbox_id`` (the event being handled now, still pending while its
    turn is saved), lose body and address. Pending ones are handled later as
    events of an unknown address.

    Pending outbox messages are dropped. The reply of the erasing turn is
    queued after this runs and keeps its address until it is sent: it is the
    confirmation the customer asked for.
    """
    now = utc(now)
    addresses = [
        (r.channel, r.address)
        for r in conn.execute(select(identity_t.c.channel, identity_t.c.address).where(identity_t.c.customer_id == customer_id))
    ]
    contact = conn.execute(
        select(customer_t.c.external_id, customer_t.c.email, customer_t.c.phone).where(customer_t.c.id == customer_id)
    ).first()
    _forget_idempotent_answers(conn, [v for v in (contact or ()) if v])
    conn.execute(
        update(customer_t)
        .where(customer_t.c.id == customer_id)
        .values(
            # null(): SQL NULL, where None in a JSON column would store the JSON value null
            first_name=None, locale=None, categories=null(), attributes=null(), marketing_paused_until=None,
            external_id=None, email=None, phone=None, timezone=None, preferred_channel=None,
            erased_at=now, updated_at=now,
        )
    )
    conn.execute(delete(code_t).where(code_t.c.customer_id == customer_id))
    conn.execute(delete(survey_t).where(survey_t.c.customer_id == customer_id))
    conn.execute(
        update(ticket_t)
        .where(ticket_t.c.customer_id == customer_id)
        .values(address="", description="", order_number=None, attachments=[], status="closed", updated_at=now)
    )
    _erase_shop_side(conn, customer_id)
    by_address = tuple_(log_t.c.channel, log_t.c.address).in_(addresses) if addresses else None
    conn.execute(delete(log_t).where(or_(log_t.c.customer_id == customer_id, *(() if by_address is None else (by_address,)))))
    out_by_address = tuple_(outbox_t.c.channel, outbox_t.c.address).in_(addresses) if addresses else None
    # Pending messages are dropped too; the caller queues this turn's own reply afterwards.
    conn.execute(
        delete(outbox_t).where(or_(outbox_t.c.customer_id == customer_id, *(() if out_by_address is None else (out_by_address,))))
    )
    if addresses:
        handled = inbox_t.c.status != "pending"
        if keep_inbox_id is not None:
            handled = or_(handled, inbox_t.c.id == keep_inbox_id)
        conn.execute(
            update(inbox_t)
            .where(tuple_(inbox_t.c.channel, inbox_t.c.address).in_(addresses), handled)
            .values(body=b"", address="", error=None)
        )
    conn.execute(delete(conversation_t).where(conversation_t.c.customer_id == customer_id))
    conn.execute(delete(identity_t).where(identity_t.c.customer_id == customer_id))


def _erase_shop_side(conn: Connection, customer_id: int) -> None:
    """The shop side of an erasure: what the customer did in the shop, and what we sent them."""
    for table in (location_t, cart_t, interest_t, account_link_t):
        conn.execute(delete(table).where(table.c.customer_id == customer_id))
    pushes = select(push_t.c.id).where(push_t.c.customer_id == customer_id).scalar_subquery()
    conn.execute(update(push_event_t).where(push_event_t.c.push_id.in_(pushes)).values(detail=None))
    conn.execute(delete(link_t).where(link_t.c.push_id.in_(pushes)))  # target URLs may carry codes
    conn.execute(update(push_t).where(push_t.c.customer_id == customer_id).values(address=None, variables={}))
    conn.execute(update(order_t).where(order_t.c.customer_id == customer_id).values(code=None))


def _forget_idempotent_answers(conn: Connection, values: Sequence[str]) -> None:
    """Drop stored API answers that mention one of ``values`` (a replay would hand out the profile).

    A plain substring match on the JSON body, as written (UTF-8) and as
    JSON escapes it: a short value may drop some other answers too, which
    only means a retry of those requests runs again.
    """
    needles = {form for v in values for form in (v.encode(), json.dumps(v)[1:-1].encode())}
    if not needles:
        return
    dialect = conn.dialect.name
    conditions = []
    for index, needle in enumerate(sorted(needles)):
        if dialect == "postgresql":
            name = f"needle_{index}"
            conditions.append(
                text(f"position(:{name} IN idempotent_request.body) > 0").bindparams(bindparam(name, needle, type_=LargeBinary))
            )
        else:
            conditions.append(func.instr(idempotent_t.c.body, literal(needle, LargeBinary)) > 0)
    conn.execute(delete(idempotent_t).where(or_(*conditions)))


# --- background jobs (run by the pipeline's sweeper) --------------------------------


def paused_customers_due(conn: Connection, now: datetime, limit: int = 200) -> list[int]:
    """Customers whose marketing pause has passed (an indexed range read: cheap when none)."""
    result = conn.execute(
        select(customer_t.c.id)
        .where(customer_t.c.marketing_paused_until.is_not(None), customer_t.c.marketing_paused_until <= utc(now))
        .order_by(customer_t.c.marketing_paused_until)
        .limit(limit)
    )
    return [r.id for r in result]


def resume_marketing(conn: Connection, customer_id: int, now: datetime) -> int:
    """End one customer's pause: grant again what the pause withdrew; returns the rows appended.

    Only a purpose whose newest row is still the pause's withdrawal is
    granted again; a purpose the customer changed themselves since keeps
    their choice.
    """
    now = utc(now)
    until = as_utc(conn.execute(select(customer_t.c.marketing_paused_until).where(customer_t.c.id == customer_id)).scalar())
    if until is None or until > now:  # resumed by another process, or paused again meanwhile
        return 0
    paused = [
        r
        for r in conn.execute(_CURRENT_CONSENTS, {"customer_id": customer_id})
        if not r.granted and r.source == PAUSE_SOURCE
    ]
    rows = [
        {
            "customer_id": customer_id,
            "purpose": r.purpose,
            "channel": r.channel,
            "granted": True,
            "source": "pause_ended",
            "wording_version": r.wording_version,
            "created_at": now,
        }
        for r in paused
    ]
    if rows:
        conn.execute(_INSERT_CONSENT, rows)
    _update_customer(conn, customer_id, now, marketing_paused_until=None)
    return len(rows)


def expire_surveys(conn: Connection, lifetimes: Sequence[tuple[str, int]], now: datetime) -> int:
    """Mark started surveys older than their survey's ``expire_hours`` expired; returns how many."""
    now = utc(now)
    expired = 0
    for survey, hours in lifetimes:
        expired += conn.execute(
            update(survey_t)
            .where(
                survey_t.c.status == "started",
                survey_t.c.started_at <= now - timedelta(hours=hours),
                survey_t.c.survey == survey,
            )
            .values(status="expired", finished_at=now)
        ).rowcount
    return expired


def oldest_started_survey(conn: Connection) -> datetime | None:
    """When the oldest running survey started (None: none runs), so the expiry job can skip early."""
    return as_utc(conn.execute(select(func.min(survey_t.c.started_at)).where(survey_t.c.status == "started")).scalar())


def block_identity(conn: Connection, channel: str, address: str, *, source: str = "platform") -> None:
    """The platform says this customer blocked us: stop sending and withdraw this channel's consents.

    Used when a send or a receipt reveals the block (Telegram 403, Viber status 6,
    WhatsApp 131026); block events handled by the dialogs record the same.
    A purpose withdrawn by a running pause is withdrawn again under ``source``,
    so the end of the pause leaves it off.
    """
    identity = conn.execute(_IDENTITY_BY_ADDRESS, {"channel": channel, "address": address}).first()
    set_blocked(conn, channel, address)
    outbox_block_pending(conn, channel, address)
    if identity is None:
        return
    customer_id = conn.execute(
        select(identity_t.c.customer_id).where(identity_t.c.id == identity.id)
    ).scalar_one()
    now = utcnow()
    withdrawn = [
        {
            "customer_id": customer_id,
            "purpose": r.purpose,
            "channel": channel,
            "granted": False,
            "source": source,
            "wording_version": r.wording_version,
            "created_at": now,
        }
        for r in conn.execute(_CURRENT_CONSENTS, {"customer_id": customer_id})
        if r.channel == channel and (r.granted or r.source == PAUSE_SOURCE)
    ]
    if withdrawn:
        conn.execute(_INSERT_CONSENT, withdrawn)


def identity_exists(conn: Connection, channel: str, address: str) -> bool:
    return conn.execute(_IDENTITY_BY_ADDRESS, {"channel": channel, "address": address}).first() is not None


def is_blocked(conn: Connection, channel: str, address: str) -> bool:
    row = conn.execute(_IDENTITY_BY_ADDRESS, {"channel": channel, "address": address}).first()
    return row is not None and row.blocked_at is not None


def inline_reply_for(conn: Connection, channel: str, event_id: str) -> dict[str, Any] | None:
    """The reply already given in the HTTP response to an inline event, for a redelivery."""
    row = conn.execute(
        select(outbox_t.c.payload)
        .join(inbox_t, inbox_t.c.id == outbox_t.c.inbox_id)
        .where(inbox_t.c.channel == channel, inbox_t.c.event_id == event_id, outbox_t.c.status == "sent")
        .order_by(outbox_t.c.id)
        .limit(1)
    ).first()
    return None if row is None else dict(row.payload)


def set_blocked(conn: Connection, channel: str, address: str, blocked: bool = True) -> None:
    conn.execute(_SET_BLOCKED, {"_channel": channel, "_address": address, "_blocked_at": utcnow() if blocked else None})


# --- outbox and message log ------------------------------------------------


def outbox_add(
    conn: Connection,
    *,
    channel: str,
    address: str,
    customer_id: int | None,
    messages: Sequence[Outbound],
    inbox_id: int | None,
    status: str = "pending",
    priority: int = 0,
) -> int:
    """Queue ``messages`` (in order); returns how many were queued."""
    now = utcnow()
    rows = [
        {
            "channel": channel,
            "address": address,
            "customer_id": customer_id,
            "payload": message.to_dict(),
            "status": status,
            "priority": priority,
            "attempts": 0,
            "parts_sent": 0,
            "inbox_id": inbox_id,
            "created_at": now,
            "sent_at": now if status == "sent" else None,
        }
        for message in messages
    ]
    if rows:
        if (db := sqlite_fast.driver(conn)) is not None:
            sqlite_fast.insert_many(db, "outbox", rows)
        else:
            conn.execute(_INSERT_OUTBOX, rows)  # executemany keeps the given order of ids
    return len(rows)


def outbox_pending(conn: Connection, channel: str, address: str, limit: int = 50) -> list[Any]:
    if (db := sqlite_fast.driver(conn)) is not None:
        return sqlite_fast.outbox_pending(db, channel, address, limit)
    return list(conn.execute(_OUTBOX_PENDING, {"channel": channel, "address": address, "limit": limit}))


def outbox_update(conn: Connection, outbox_id: int, **values: Any) -> None:
    if (db := sqlite_fast.driver(conn)) is not None:
        sqlite_fast.update(db, "outbox", values, {"id": outbox_id})
        return
    conn.execute(_OUTBOX_UPDATE, {"_id": outbox_id, **values})


def outbox_mark_sent(conn: Connection, outbox_id: int, **values: Any) -> bool:
    """Record that a message left; False when it had been withdrawn meanwhile (it is sent all the same)."""
    values = {"status": "sent", **values}
    if (db := sqlite_fast.driver(conn)) is not None:
        if sqlite_fast.update(db, "outbox", values, {"id": outbox_id, "status": "pending"}):
            return True
    elif conn.execute(_OUTBOX_UPDATE.where(outbox_t.c.status == "pending"), {"_id": outbox_id, **values}).rowcount:
        return True
    outbox_update(conn, outbox_id, **values)
    return False


def outbox_still_sendable(conn: Connection, channel: str, address: str, outbox_id: int) -> bool:
    """Whether this pending message may still go: not withdrawn, and its recipient has not blocked us."""
    status = conn.execute(select(outbox_t.c.status).where(outbox_t.c.id == outbox_id)).scalar()
    return status == "pending" and not is_blocked(conn, channel, address)


def outbox_block_pending(conn: Connection, channel: str, address: str) -> None:
    """Nothing more goes to a recipient who blocked us."""
    conn.execute(_OUTBOX_BLOCK_PENDING, {"_channel": channel, "_address": address})


def outbox_due_keys(conn: Connection, now: datetime, limit: int = 1000) -> list[tuple[str, str]]:
    """Conversations with pending messages that are due (retries, or a lost wake-up)."""
    result = conn.execute(
        select(outbox_t.c.channel, outbox_t.c.address)
        .where(
            outbox_t.c.status == "pending",
            (outbox_t.c.next_attempt_at.is_(None)) | (outbox_t.c.next_attempt_at <= now),
        )
        .group_by(outbox_t.c.channel, outbox_t.c.address)
        .limit(limit)
    )
    return [(r.channel, r.address) for r in result]


def outbox_receipt(conn: Connection, channel: str, platform_message_id: str, status: str) -> None:
    """Record a delivery receipt; statuses only move forward (read beats delivered)."""
    order = {"sent": 0, "delivered": 1, "read": 2, "failed": 3}
    row = (
        conn.execute(
            select(outbox_t.c.id, outbox_t.c.delivery_status).where(
                outbox_t.c.channel == channel, outbox_t.c.platform_message_id == platform_message_id
            )
        )
    ).first()
    if row is None:
        return
    if order.get(status, -1) > order.get(row.delivery_status or "sent", 0) or row.delivery_status is None:
        conn.execute(update(outbox_t).where(outbox_t.c.id == row.id).values(delivery_status=status))


def log_messages(conn: Connection, entries: Sequence[dict[str, Any]]) -> None:
    """Append several message-log rows at once (keys as in ``log_message``)."""
    if entries:
        now = utcnow()
        rows = [
            {"platform_message_id": None, "created_at": now, **entry, "text": entry["text"][:4000]} for entry in entries
        ]
        if (db := sqlite_fast.driver(conn)) is not None:
            sqlite_fast.insert_many(db, "message_log", rows)
        else:
            conn.execute(_INSERT_LOG, rows)


# --- shop API reads ----------------------------------------------------------


def lookup_customer(conn: Connection, channel: str, address: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(customer_t.c.id, customer_t.c.first_name, customer_t.c.locale, identity_t.c.blocked_at)
            .join(identity_t, identity_t.c.customer_id == customer_t.c.id)
            .where(identity_t.c.channel == channel, identity_t.c.address == address)
        )
    ).first()
    if row is None:
        return None
    consents = current_consents(conn, row.id)
    return {
        "id": row.id,
        "name": row.first_name,
        "locale": row.locale,
        "channel": channel,
        "address": address,
        "blocked": row.blocked_at is not None,
        "consents": [
            {
                "purpose": c.purpose,
                "channel": c.channel,
                "granted": c.granted,
                "updated_at": c.updated_at.isoformat(),
                "wording_version": c.wording_version,
            }
            for c in consents
        ],
    }
