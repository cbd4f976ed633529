"""Request and response bodies of the shop API, validated with pydantic.

Every model forbids unknown fields, so a typo is a 422 that names the field
instead of a silently ignored value. ``bot/web/openapi.py`` builds the API
description from these models.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from bot.config import ID_PATTERN

# Integers fit the databases' 64-bit columns; NaN and Infinity are refused when the body is read.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


def _scalar(value: Any) -> Any:
    """A variable's or attribute's value: one error naming its key, not one per type tried."""
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int):
        if not -(2**63) <= value <= 2**63 - 1:
            raise ValueError("a whole number must fit in 64 bits")
        return value
    raise ValueError("must be a string, number, boolean or null")


SCALAR_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]
}
Scalar = Annotated[Any, PlainValidator(_scalar), WithJsonSchema(SCALAR_SCHEMA)]
ExternalId = Annotated[str, Field(min_length=1, max_length=128, description="the shop's own id")]
ProductId = Annotated[str, Field(min_length=1, max_length=64)]
Channel = Literal["whatsapp", "viber", "telegram", "sms", "email"]
MESSENGERS = ("whatsapp", "viber", "telegram")
# Numbers and booleans are taken as JSON numbers and booleans only: "52.5" or true for a latitude, or
# "yes" for in_stock, is a mistake in the shop's code that should surface as a 422, not be guessed at.
Number = Annotated[float, Field(strict=True)]
Whole = Annotated[int, Field(strict=True)]
Flag = Annotated[bool, Field(strict=True)]


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
    quantity: Whole = Field(default=1, ge=1, le=10_000)


class CartUpdated(EventBase):
    type: Literal["cart.updated"]
    customer_id: ExternalId
    items: list[CartItem] = Field(default_factory=list, max_length=500, description="the whole cart; empty: emptied")


class OrderPlaced(EventBase):
    type: Literal["order.placed"]
    customer_id: ExternalId
    order_id: Annotated[str, Field(min_length=1, max_length=64)]
    code: str | None = Field(default=None, max_length=32, description="discount code used, if any")
    push_id: Whole | None = Field(default=None, ge=1, le=2**63 - 1, description="the push the shop attributes the order to")
    total: Number | None = Field(default=None, ge=0)


class OrderDelivered(EventBase):
    type: Literal["order.delivered"]
    customer_id: ExternalId
    order_id: Annotated[str, Field(min_length=1, max_length=64)]


class CustomerLocationEvent(EventBase):
    type: Literal["customer.location"]
    customer_id: ExternalId
    latitude: Number = Field(ge=-90, le=90)
    longitude: Number = Field(ge=-180, le=180)


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


# --------------------------------------------------------------------------- audiences, pushes, campaigns


def _scalar_or_list(value: Any) -> Any:
    if isinstance(value, list):
        if len(value) > 1000:
            raise ValueError("at most 1000 values")
        return [_scalar(item) for item in value]
    return _scalar(value)


ConditionValue = Annotated[
    Any,
    PlainValidator(_scalar_or_list),
    WithJsonSchema({"anyOf": [SCALAR_SCHEMA, {"type": "array", "items": SCALAR_SCHEMA, "maxItems": 1000}]}),
]


class AttributeCondition(Strict):
    name: str = Field(min_length=1, max_length=64)
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in"]
    value: ConditionValue

    @model_validator(mode="after")
    def _value_fits_op(self) -> "AttributeCondition":
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError('"in" needs a list of values')
        if self.op != "in" and isinstance(self.value, list):
            raise ValueError(f'"{self.op}" needs a single value, not a list')
        if self.op in ("gt", "gte", "lt", "lte") and (self.value is None or isinstance(self.value, bool)):
            raise ValueError(f'"{self.op}" needs a number or a date')
        return self


class AudienceFilter(Strict):
    categories_any: list[str] = Field(default_factory=list, max_length=50)
    categories_all: list[str] = Field(default_factory=list, max_length=50)
    consent_purpose: str | None = None
    channel: Channel | None = None
    locale: Literal["en", "de", "es"] | None = None
    active_within_days: Whole | None = Field(default=None, ge=1, le=3650)
    attributes: list[AttributeCondition] = Field(default_factory=list, max_length=20)


class PushRequest(Strict):
    touchpoint: str = Field(min_length=1, max_length=64)
    customer_ids: list[ExternalId] | None = Field(default=None, min_length=1, max_length=1000)
    audience: AudienceFilter | None = None
    variables: dict[str, Scalar] = Field(default_factory=dict, max_length=50)

    @field_validator("customer_ids")
    @classmethod
    def _each_once(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(value))  # a customer named twice gets one push

    @model_validator(mode="after")
    def _one_target(self) -> "PushRequest":
        if (self.customer_ids is None) == (self.audience is None):
            raise ValueError("give exactly one of customer_ids or audience")
        return self


PAST_SEND_AT = timedelta(minutes=5)  # tolerated clock difference between the shop and us


def _iso_text(value: Any) -> Any:
    # A number, or digits in a string, would be read as a Unix time: too easy to send by mistake.
    if value is not None and (not isinstance(value, str) or re.fullmatch(r"\s*[-+]?[0-9.eE+]+\s*", value)):
        raise ValueError("must be an ISO 8601 date and time, e.g. 2026-12-24T09:00:00+01:00")
    return value


class CampaignRequest(Strict):
    name: str = Field(min_length=1, max_length=200)
    touchpoint: str = Field(min_length=1, max_length=64)
    audience: AudienceFilter
    variables: dict[str, Scalar] = Field(default_factory=dict, max_length=50)
    send_at: Annotated[datetime | None, BeforeValidator(_iso_text)] = Field(
        default=None, description="omit to send now; an ISO 8601 time with a time zone, not in the past"
    )

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-12-24T09:00:00+01:00")
        if value is not None and value < datetime.now(timezone.utc) - PAST_SEND_AT:
            raise ValueError("is in the past; leave send_at out to send now")
        return value


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
    due_at: datetime | None = None
    clicked_at: datetime | None = None
    converted_at: datetime | None = None
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
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        out.append({"field": ".".join(path) or "(body)", "message": message})
    return out


# --------------------------------------------------------------------------- customers

Locale = Literal["en", "de", "es"]
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
MAX_EMAIL = 128  # it is also a channel address (channel_identity.address)


def _e164(value: str) -> str:
    if not E164.match(value):
        raise ValueError("must be an E.164 phone number: + and 7 to 15 digits, no spaces, e.g. +491701234567")
    return value


def _short_email(value: str) -> str:
    if len(value) > MAX_EMAIL:
        raise ValueError(f"at most {MAX_EMAIL} characters")
    return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone such as Europe/Berlin") from None
    return value


def _is_iso_date(value: Any) -> bool:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


Phone = Annotated[str, AfterValidator(_e164)]
Email = Annotated[EmailStr, AfterValidator(_short_email)]
TimeZone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_time_zone)]


class ConsentIn(Strict):
    """Consent the shop collected itself (a checkbox at checkout for e-mail or SMS)."""

    purpose: str = Field(min_length=1, max_length=32, description="one of the configured consent purposes")
    channel: Channel
    granted: Flag = Field(description="true only for email or sms: a messenger's consent is asked in its chat")


def attribute_problems(attributes: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for attribute values the rules would misread; the complaint rules read
    ``order_count`` and ``customer_since``, and a wrong type would silently disable them."""
    problems = []
    count = attributes.get("order_count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        problems.append(("order_count", "must be a whole number of at least 0"))
    since = attributes.get("customer_since")
    if since is not None and not _is_iso_date(since):
        problems.append(("customer_since", "must be an ISO date such as 2023-04-01"))
    for name, item in attributes.items():
        if isinstance(item, str) and len(item) > 1000:
            problems.append((name, "at most 1000 characters"))
    return problems


class CustomerUpsert(Strict):
    """``POST /api/v1/customers``: create or update by ``external_id``.

    A field left out keeps its stored value; ``null`` clears it (a cleared
    e-mail or phone also removes that channel). ``attributes`` are merged
    key by key; a key set to ``null`` is removed.
    """

    external_id: ExternalId
    first_name: str | None = Field(default=None, max_length=100)
    email: Email | None = None
    phone: Phone | None = Field(default=None, description="E.164, e.g. +491701234567")
    locale: Locale | None = None
    timezone: TimeZone | None = Field(default=None, description="IANA name, e.g. Europe/Berlin")
    preferred_channel: Channel | None = None
    attributes: dict[Annotated[str, Field(min_length=1, max_length=64)], Scalar] = Field(
        default_factory=dict,
        max_length=50,
        description="the shop's facts: order_count (integer), customer_since (ISO date) and any other scalar",
    )
    consents: list[ConsentIn] = Field(default_factory=list, max_length=20)



    @field_validator("consents")
    @classmethod
    def _one_per_purpose_and_channel(cls, value: list[ConsentIn]) -> list[ConsentIn]:
        seen = set()
        for item in value:
            if (item.purpose, item.channel) in seen:
                raise ValueError(f"{item.purpose} on {item.channel} is given twice")
            seen.add((item.purpose, item.channel))
        return value


class ConsentOut(BaseModel):
    purpose: str
    channel: str
    granted: Flag
    updated_at: datetime
    wording_version: str


class IdentityOut(BaseModel):
    channel: str
    address: str = Field(description="platform user id, e-mail address or E.164 phone")
    blocked: bool = Field(description="the customer blocked us there (or the address bounced); nothing is sent")


class CustomerOut(BaseModel):
    id: int = Field(description="Touchpoint's own id (the lookup by channel address answers it too)")
    external_id: str | None
    first_name: str | None
    email: str | None
    phone: str | None
    locale: str | None
    timezone: str | None
    preferred_channel: str | None
    categories: list[str] = Field(description="favourite category ids in the order picked")
    attributes: dict[str, Scalar]
    identities: list[IdentityOut]
    consents: list[ConsentOut] = Field(description="the current value per purpose and channel")
    created_at: datetime
    updated_at: datetime


class LookupOut(BaseModel):
    """``GET /api/v1/customers/lookup``: the customer behind one channel address."""

    id: int
    name: str | None = Field(description="first name")
    locale: str | None
    channel: str
    address: str
    blocked: bool
    consents: list[ConsentOut]


class LinkTokenOut(BaseModel):
    """A single-use token that binds a messaging account to this customer when opened."""

    token: str = Field(description="A-Za-z0-9_- only, at most 64 characters (fits a Telegram start parameter)")
    expires_at: datetime
    links: dict[Literal["telegram", "viber", "whatsapp"], str] = Field(
        description="per channel deep link; channels without a configured bot are left out"
    )


# --------------------------------------------------------------------------- catalog

MAX_ITEMS = 1000


class CategoryName(Strict):
    en: str = Field(min_length=1, max_length=100)
    de: str | None = Field(default=None, min_length=1, max_length=100)
    es: str | None = Field(default=None, min_length=1, max_length=100)


class CategoryIn(Strict):
    # API categories become config categories (bot.config.Category), so the same id rule.
    id: str = Field(pattern=ID_PATTERN, description="lower-case letters, digits and _, at most 32")
    name: CategoryName
    url: str = Field(default="", max_length=2000)
    percent: Whole = Field(ge=1, le=40, description="the welcome discount for picking it as a favourite")


class ProductIn(Strict):
    id: ProductId
    name: str = Field(min_length=1, max_length=300)
    category: str = Field(min_length=1, max_length=32)
    url: str = Field(default="", max_length=2000)
    price: Number | None = Field(default=None, ge=0)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", description="ISO 4217")
    in_stock: Flag = True
    available_on: date | None = Field(default=None, description="pre-order: the day it ships")


class StoreIn(Strict):
    id: Annotated[str, Field(min_length=1, max_length=64)]
    name: str = Field(min_length=1, max_length=200)
    address: str = Field(default="", max_length=500)
    latitude: Number = Field(ge=-90, le=90)
    longitude: Number = Field(ge=-180, le=180)
    radius_m: Number = Field(gt=0, le=50_000, description="the cart offer is sent within this distance")


def _unique_ids(items: list[Any]) -> list[Any]:
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item.id in seen:
            raise ValueError(f"id {item.id!r} appears twice (again at items.{index})")
        seen.add(item.id)
    return items


class CategoriesIn(Strict):
    items: list[CategoryIn] = Field(min_length=1, max_length=MAX_ITEMS)
    _unique = field_validator("items")(_unique_ids)


class ProductsIn(Strict):
    items: list[ProductIn] = Field(min_length=1, max_length=MAX_ITEMS)
    _unique = field_validator("items")(_unique_ids)


class StoresIn(Strict):
    items: list[StoreIn] = Field(min_length=1, max_length=MAX_ITEMS)
    _unique = field_validator("items")(_unique_ids)


class UpsertCounts(BaseModel):
    created: int
    updated: int


class StoreOut(BaseModel):
    id: str
    name: str
    address: str
    latitude: float
    longitude: float
    radius_m: float


class StoresOut(BaseModel):
    items: list[StoreOut]
