"""Complaint rules shared by the complaint dialog and the Rasa action endpoint.

Pure functions of the shop's config and the customer's facts: no database,
no clock of their own (``now`` is passed in, so a replayed event decides as
it did the first time), no customer-facing text.
"""

from __future__ import annotations

import calendar
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Mapping

from bot.codes import new_code
from bot.config import ShopConfig
from bot.turn import IssueCode

log = logging.getLogger(__name__)

KINDS = ("discount_low", "coupon_failed", "delivery", "quality", "other")
LOYALTY_SOURCE = "loyalty"

# No 0/O and 1/I: customers read the number aloud or type it from a screenshot.
TICKET_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
TICKET_PREFIX = "C-"
TICKET_LENGTH = 6  # 32**6 ≈ 10**9 numbers; the unique index catches the rare clash


@dataclass(frozen=True, slots=True)
class FollowUp:
    """What the shop does after a complaint, by the rules in ``[complaints]``."""

    refund: bool  # a coupon that did not work opens a refund request on the ticket
    loyalty_percent: int | None  # a loyal customer is offered this much off one category
    loyalty_valid_days: int | None
    offer_person: bool = True  # every complaint offers "talk to a person"


def new_ticket_number() -> str:
    """A short, human-readable, unguessable ticket number such as "C-7KQ4M2"."""
    return TICKET_PREFIX + "".join(secrets.choice(TICKET_ALPHABET) for _ in range(TICKET_LENGTH))


def clean_order_number(text: str) -> str:
    """What a customer typed, without surrounding spaces and the "#" many put in front."""
    return text.strip().removeprefix("#").strip()


def valid_order_number(config: ShopConfig, text: str) -> bool:
    """Whether ``text`` is a whole order number by the shop's pattern (not merely contains one)."""
    return re.fullmatch(config.complaints.order_number_pattern, text) is not None


def is_loyal(
    config: ShopConfig, attributes: Mapping[str, Any], customer_created_at: datetime | None, now: datetime
) -> bool:
    """Loyal: at least ``loyalty_min_orders`` orders, or a customer for ``loyalty_min_months``.

    "Customer since" is the shop's ``customer_since`` attribute (an ISO date)
    and, when the shop did not send a usable one, the day Touchpoint first saw
    the customer. A threshold of 0 switches its rule off. Attribute values come
    from the shop's systems as they are: a bad one is ignored, never an error.
    """
    rules = config.complaints
    orders = _as_count(attributes.get("order_count"))
    if rules.loyalty_min_orders > 0 and orders is not None and orders >= rules.loyalty_min_orders:
        return True
    if rules.loyalty_min_months <= 0:
        return False
    since = _as_date(attributes.get("customer_since"))
    if since is None and customer_created_at is not None:
        since = customer_created_at.date()
    if since is None or since > now.date():  # a date in the future is not a usable one
        return False
    return add_months(since, rules.loyalty_min_months) <= now.date()


def follow_up(
    config: ShopConfig,
    kind: str,
    attributes: Mapping[str, Any],
    created_at: datetime | None,
    now: datetime,
) -> FollowUp:
    """The follow-up of a complaint of ``kind`` by this customer."""
    loyal = is_loyal(config, attributes, created_at, now)
    return FollowUp(
        refund=kind == "coupon_failed",
        loyalty_percent=config.complaints.loyalty_percent if loyal else None,
        loyalty_valid_days=config.complaints.loyalty_valid_days if loyal else None,
        offer_person=True,
    )


def loyalty_code(config: ShopConfig, category_id: str, now: datetime, *, reference: str | None = None) -> IssueCode:
    """The loyalty discount on ``category_id``; ``reference`` (the ticket) makes it once per ticket."""
    rules = config.complaints
    return IssueCode(
        code=new_code(),
        category=category_id,
        percent=min(rules.loyalty_percent, config.discounts.max_percent),
        expires_at=now + timedelta(days=rules.loyalty_valid_days),
        source=LOYALTY_SOURCE,
        reference=reference,
    )


def add_months(day: date, months: int) -> date:
    """``day`` plus calendar months; the 31st becomes the month's last day (Jan 31 + 1 → Feb 28)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _as_count(value: Any) -> int | None:
    if isinstance(value, bool):  # True is an int in Python, but not an order count
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if value is not None:
        log.info("complaints.bad_attribute order_count=%r", value)
    return None


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return datetime.fromisoformat(value.strip()).date()
        except ValueError:
            pass
    if value is not None:
        log.info("complaints.bad_attribute customer_since=%r", value)
    return None
