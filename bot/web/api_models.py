"""Request and response bodies of the shop API, validated with pydantic.

Every model forbids unknown fields, so a typo is a 422 that names the field
instead of a silently ignored value. ``bot/web/openapi.py`` builds the API
description from these models.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = Union[str, int, float, bool, None]
ExternalId = Annotated[str, Field(min_length=1, max_length=128, description="the shop's own id")]
ProductId = Annotated[str, Field(min_length=1, max_length=64)]
Channel = Literal["whatsapp", "viber", "telegram", "sms", "email"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --------------------------------------------------------------------------- events


class EventBase(Strict):
    event_id: str | None = Field(default=None, max_length=128, description="the shop's id of this event, for its own tracing")
    occurred_at: datetime | None = None


class BackInStock(EventBase):
    type: Literal["product.back_in_stock"]
    product_id: ProductId


class ProductLaunched(EventBase):
    type: Literal["product.launched"]
    product_id: ProductId
    available_on: date | None = Field(default=None, description="pre-order: the day it ships")


class ProductSubscribed(EventBase):
    type: Literal["product.subscribed"]
    customer_id: ExternalId
    product_id: ProductId


class ProductViewed(EventBase):
    type: Literal["product.viewed"]
    customer_id: ExternalId
    product_id: ProductId


class CartItem(Strict):
    product_id: ProductId
    quantity: int = Field(default=1, ge=1, le=10_000)


class CartUpdated(EventBase):
    type: Literal["cart.updated"]
    customer_id: ExternalId
    items: list[CartItem] = Field(default_factory=list, max_length=500, description="the whole cart; empty: emptied")


class OrderPlaced(EventBase):
    type: Literal["order.placed"]
    customer_id: ExternalId
    order_id: Annotated[str, Field(min_length=1, max_length=64)]
    code: str | None = Field(default=None, max_length=32, description="discount code used, if any")
    push_id: int | None = Field(default=None, ge=1, description="the push the shop attributes the order to")
    total: float | None = Field(default=None, ge=0)


class OrderDelivered(EventBase):
    type: Literal["order.delivered"]
    customer_id: ExternalId
    order_id: Annotated[str, Field(min_length=1, max_length=64)]


class CustomerLocationEvent(EventBase):
    type: Literal["customer.location"]
    customer_id: ExternalId
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


ShopEvent = Annotated[
    Union[
        BackInStock,
        ProductLaunched,
        ProductSubscribed,
        ProductViewed,
        CartUpdated,
        OrderPlaced,
        OrderDelivered,
        CustomerLocationEvent,
    ],
    Field(discriminator="type"),
]
EVENT_TYPES = (
    "product.back_in_stock",
    "product.launched",
    "product.subscribed",
    "product.viewed",
    "cart.updated",
    "order.placed",
    "order.delivered",
    "customer.location",
)


class EventEnvelope(Strict):
    """``POST /api/v1/events`` takes one event object; this wrapper lets pydantic pick its type."""

    event: ShopEvent


# --------------------------------------------------------------------------- audiences, pushes, campaigns


class AttributeCondition(Strict):
    name: str = Field(min_length=1, max_length=64)
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in"]
    value: Scalar | list[Scalar]


class AudienceFilter(Strict):
    categories_any: list[str] = Field(default_factory=list, max_length=50)
    categories_all: list[str] = Field(default_factory=list, max_length=50)
    consent_purpose: str | None = None
    channel: Channel | None = None
    locale: Literal["en", "de", "es"] | None = None
    active_within_days: int | None = Field(default=None, ge=1, le=3650)
    attributes: list[AttributeCondition] = Field(default_factory=list, max_length=20)


class PushRequest(Strict):
    touchpoint: str = Field(min_length=1, max_length=64)
    customer_ids: list[ExternalId] | None = Field(default=None, min_length=1, max_length=1000)
    audience: AudienceFilter | None = None
    variables: dict[str, Scalar] = Field(default_factory=dict, max_length=50)

    @model_validator(mode="after")
    def _one_target(self) -> "PushRequest":
        if (self.customer_ids is None) == (self.audience is None):
            raise ValueError("give exactly one of customer_ids or audience")
        return self


class CampaignRequest(Strict):
    name: str = Field(min_length=1, max_length=200)
    touchpoint: str = Field(min_length=1, max_length=64)
    audience: AudienceFilter
    variables: dict[str, Scalar] = Field(default_factory=dict, max_length=50)
    send_at: datetime | None = Field(default=None, description="omit to send now; must carry a time zone")

    @model_validator(mode="after")
    def _aware(self) -> "CampaignRequest":
        if self.send_at is not None and self.send_at.tzinfo is None:
            raise ValueError("send_at needs a time zone, e.g. 2026-12-24T09:00:00+01:00")
        return self


class PreviewRequest(Strict):
    audience: AudienceFilter


class DryRunPush(Strict):
    touchpoint: str = Field(min_length=1, max_length=64)
    variables: dict[str, Scalar] = Field(default_factory=dict, max_length=50)


class DryRunRequest(Strict):
    customer_id: ExternalId
    push: DryRunPush | None = None
    event: ShopEvent | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> "DryRunRequest":
        if (self.push is None) == (self.event is None):
            raise ValueError("give exactly one of push or event")
        return self


# --------------------------------------------------------------------------- answers


class HistoryEntry(BaseModel):
    at: datetime
    status: str
    reason: str | None = None
    channel: str | None = None
    detail: str | None = None


class PushStatus(BaseModel):
    id: int
    customer_id: str | None
    touchpoint: str
    status: str
    reason: str | None = None
    channel: str | None = None
    campaign_id: int | None = None
    history: list[HistoryEntry]


class ErrorField(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    error: str
    fields: list[ErrorField] = Field(default_factory=list)


def error_fields(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """pydantic's errors as {"field": "items.0.quantity", "message": ...}, discriminator tags left out."""
    out = []
    for error in errors:
        path = [str(p) for p in error.get("loc", ()) if not (isinstance(p, str) and "." in p and p in EVENT_TYPES)]
        out.append({"field": ".".join(path) or "(body)", "message": error.get("msg", "invalid")})
    return out
