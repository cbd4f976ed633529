"""All database tables (SQLModel). Alembic migrations in ``bot/migrations`` create them.

Times are stored in UTC. JSON columns hold dialog slots, offered buttons and
outbound payloads, which are only ever read whole.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Customer(SQLModel, table=True):
    """A person, across their channel identities.

    An erased customer keeps only this row's id and ``erased_at``: the consent
    log still points at it as the anonymised record of the withdrawals.
    """

    __table_args__ = (
        Index("ix_customer_paused", "marketing_paused_until"),
        Index("ix_customer_external_id", "external_id", unique=True),  # NULLs never collide
    )

    id: int | None = Field(default=None, primary_key=True)
    first_name: str | None = None
    locale: str | None = Field(default=None, max_length=8)
    # Favourite category ids in the order picked; None when never picked or erased.
    categories: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The shop's own facts (order_count, customer_since ...), read by complaint rules.
    attributes: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Set by "pause offers"; the sweeper grants the paused purposes again once it has passed.
    marketing_paused_until: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    erased_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    # The shop's side (shop API): its own customer id and contact details.
    external_id: str | None = Field(default=None, max_length=128)
    email: str | None = Field(default=None, max_length=256)
    phone: str | None = Field(default=None, max_length=32)
    timezone: str | None = Field(default=None, max_length=64)
    preferred_channel: str | None = Field(default=None, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ChannelIdentity(SQLModel, table=True):
    """One messaging account of a customer (a Telegram chat, a Viber user, a WhatsApp number)."""

    __tablename__ = "channel_identity"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    channel: str = Field(max_length=16)
    address: str = Field(max_length=128)
    display_name: str | None = None
    language_code: str | None = Field(default=None, max_length=16)
    deep_link: str | None = Field(default=None, max_length=256)
    # Set when the platform says the customer blocked us or unsubscribed;
    # nothing is sent to a blocked identity.
    blocked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Conversation(SQLModel, table=True):
    """The bot's state for one channel identity; ``version`` guards concurrent writers.

    ``last_inbound_at`` is the customer's last message (WhatsApp's 24-hour window).
    """

    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    address: str = Field(max_length=128)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    dialog: str | None = Field(default=None, max_length=64)
    step: str | None = Field(default=None, max_length=64)
    slots: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    offered: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    locale: str | None = Field(default=None, max_length=8)
    mode: str = Field(default="bot", max_length=8)
    misses: int = 0
    version: int = 0
    last_inbound_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Consent(SQLModel, table=True):
    """Append-only consent log: the newest row per (customer, purpose, channel) is the current value."""

    __table_args__ = (Index("ix_consent_current", "customer_id", "purpose", "channel", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    purpose: str = Field(max_length=32)
    channel: str = Field(max_length=16)
    granted: bool
    source: str = Field(max_length=32)
    wording_version: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class InboxEvent(SQLModel, table=True):
    """A webhook event stored before the platform got its 200; the worker consumes it."""

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("channel", "event_id"),
        Index("ix_inbox_pending", "channel", "address", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    event_id: str = Field(max_length=256)
    address: str = Field(max_length=128)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending, done, ignored, failed
    attempts: int = 0
    error: str | None = None
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    processed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class OutboxMessage(SQLModel, table=True):
    """A message waiting to be sent, or the record of one that was."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "channel", "address", "status", "id"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    address: str = Field(max_length=128)
    customer_id: int | None = Field(default=None, index=True)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending, sent, failed, blocked
    priority: int = 0
    attempts: int = 0
    parts_sent: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    last_error: str | None = None
    platform_message_id: str | None = Field(default=None, max_length=256, index=True)
    delivery_status: str | None = Field(default=None, max_length=16)  # delivered, read, failed (receipts)
    inbox_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class MessageLog(SQLModel, table=True):
    """Every message in or out, for support staff and audits."""

    __tablename__ = "message_log"
    __table_args__ = (Index("ix_message_log_conv", "channel", "address", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    direction: str = Field(max_length=3)  # in, out
    channel: str = Field(max_length=16)
    address: str = Field(max_length=128)
    customer_id: int | None = None
    kind: str = Field(max_length=16)
    text: str = ""
    platform_message_id: str | None = Field(default=None, max_length=256)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class DiscountCode(SQLModel, table=True):
    """A code issued to one customer; usable while not redeemed and not expired.

    (customer, source, reference) is unique so that a reward tied to something
    (the survey of one order) is issued once; NULL references never collide.
    """

    __tablename__ = "discount_code"
    __table_args__ = (UniqueConstraint("customer_id", "source", "reference"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    code: str = Field(max_length=32, unique=True)
    category: str = Field(max_length=32)
    percent: int
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    source: str = Field(max_length=16)  # welcome, loyalty, survey, campaign
    reference: str | None = Field(default=None, max_length=128)
    issued_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    redeemed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class Ticket(SQLModel, table=True):
    """A complaint or a request for a person; ``number`` is what the customer quotes."""

    __table_args__ = (Index("ix_ticket_status", "status", "updated_at"),)

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=16, unique=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    channel: str = Field(max_length=16)
    address: str = Field(max_length=128)
    kind: str = Field(max_length=32)  # discount_low, coupon_failed, delivery, quality, other, handoff
    description: str = ""
    order_number: str | None = Field(default=None, max_length=64)
    attachments: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    refund_requested: bool = False
    status: str = Field(default="open", max_length=16)  # open, waiting_agent, closed
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class SurveyResponse(SQLModel, table=True):
    """One survey of one order for one customer: started once, answers kept as they come."""

    __tablename__ = "survey_response"
    __table_args__ = (
        UniqueConstraint("customer_id", "survey", "order_ref"),
        Index("ix_survey_response_open", "status", "started_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    survey: str = Field(max_length=32)
    order_ref: str = Field(max_length=128)
    status: str = Field(default="started", max_length=16)  # started, completed, expired
    channel: str = Field(max_length=16)
    address: str = Field(max_length=128)
    answers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # question id -> answer
    started_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


TABLES = (
    Customer,
    ChannelIdentity,
    Conversation,
    Consent,
    InboxEvent,
    OutboxMessage,
    MessageLog,
    DiscountCode,
    Ticket,
    SurveyResponse,
)
