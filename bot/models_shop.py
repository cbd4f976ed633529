"""Tables of the shop side: catalog, what customers did in the shop, pushes and their outcome.

Kept apart from ``bot/models.py`` (the conversation side) because they change
with the shop API, not with the dialogs. Alembic sees both through
``bot.models.TABLES``. Ids the shop owns (products, stores, orders) are the
shop's own strings; times are UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot.models import utcnow


class ShopCategory(SQLModel, table=True):
    """A category the shop sent over the API (the config file's categories are the defaults)."""

    __tablename__ = "shop_category"

    id: str = Field(primary_key=True, max_length=32)
    name: dict[str, str] = Field(sa_column=Column(JSON, nullable=False))  # {"en": ..., "de": ...}
    url: str = ""
    percent: int = 10
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Product(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    name: str
    category: str = Field(max_length=32, index=True)
    url: str = ""
    price: float | None = None
    currency: str = Field(default="EUR", max_length=3)
    in_stock: bool = True
    available_on: str | None = Field(default=None, max_length=10)  # pre-order date, ISO
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Store(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    name: str
    address: str = ""
    latitude: float
    longitude: float
    radius_m: float = 200.0
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ProductInterest(SQLModel, table=True):
    """A customer asked to be told about a product ("subscribed") or looked at it ("viewed")."""

    __tablename__ = "product_interest"
    __table_args__ = (UniqueConstraint("product_id", "customer_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    product_id: str = Field(max_length=64)
    customer_id: int = Field(index=True)
    kind: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Cart(SQLModel, table=True):
    customer_id: int = Field(primary_key=True)
    items: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class CustomerLocation(SQLModel, table=True):
    """The customer's last known position (a shared location with consent, or the shop's event)."""

    __tablename__ = "customer_location"

    customer_id: int = Field(primary_key=True)
    latitude: float
    longitude: float
    source: str = Field(max_length=16)  # chat, event
    at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Campaign(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    touchpoint: str = Field(max_length=64)
    audience: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    variables: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="scheduled", max_length=16)  # scheduled, running, done, cancelled
    scheduled_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    # Customers are enqueued in id order; the last id enqueued lets a restart continue.
    cursor: int = 0
    targeted: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class Push(SQLModel, table=True):
    """One touchpoint for one customer: decided, maybe deferred, sent on some channel, or skipped.

    ``dedup_key`` makes the same alert at most once per customer and
    touchpoint (the product id, the store and period, the order id ...).
    """

    __table_args__ = (
        UniqueConstraint("customer_id", "touchpoint", "dedup_key"),
        Index("ix_push_due", "status", "due_at"),
        Index("ix_push_customer_sent", "customer_id", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int
    touchpoint: str = Field(max_length=64)
    dedup_key: str = Field(max_length=200)
    campaign_id: int | None = Field(default=None, index=True)
    variables: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    priority: int = 50
    transactional: bool = False
    # queued, deferred, sending, sent, delivered, read, failed, skipped
    status: str = Field(default="queued", max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=16)
    address: str | None = Field(default=None, max_length=256)
    tried: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # channels used so far
    outbox_id: int | None = Field(default=None, index=True)
    due_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    clicked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    converted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    opted_out_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class PushEvent(SQLModel, table=True):
    """The status history of a push: what was decided, when, on which channel, and why."""

    __tablename__ = "push_event"
    __table_args__ = (Index("ix_push_event_push", "push_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    push_id: int
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=16)
    detail: str | None = None
    at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Link(SQLModel, table=True):
    """A tracked link: ``/l/{token}`` records the click and redirects to ``url``."""

    token: str = Field(primary_key=True, max_length=32)
    push_id: int = Field(index=True)
    url: str
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ShopOrder(SQLModel, table=True):
    __tablename__ = "shop_order"

    id: str = Field(primary_key=True, max_length=64)
    customer_id: int = Field(index=True)
    code: str | None = Field(default=None, max_length=32)
    push_id: int | None = None  # the push the order is attributed to
    total: float | None = None
    delivered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class IdempotentRequest(SQLModel, table=True):
    """The first answer to a POST with an ``Idempotency-Key``, replayed for retries."""

    __tablename__ = "idempotent_request"
    __table_args__ = (Index("ix_idempotent_request_created", "created_at"),)  # the expiry clean-up

    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)  # method, path and body hash: a reused key with another body is refused
    status: int
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class AccountLink(SQLModel, table=True):
    """A single-use token that binds a messaging identity to a shop customer when its deep link is opened.

    The token travels as a Telegram start parameter, a Viber context or in a
    WhatsApp prefilled text; nothing but the token identifies the customer.
    """

    __tablename__ = "account_link"

    token: str = Field(primary_key=True, max_length=64)
    customer_id: int = Field(index=True)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


SHOP_TABLES = (
    ShopCategory,
    Product,
    Store,
    ProductInterest,
    Cart,
    CustomerLocation,
    Campaign,
    Push,
    PushEvent,
    Link,
    ShopOrder,
    IdempotentRequest,
    AccountLink,
)
