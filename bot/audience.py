"""Who a campaign reaches: an audience filter turned into customer ids.

The database narrows by what it indexes (consent, channel, activity, locale);
favourite categories and the shop's free attributes are JSON and are checked
here, which keeps the filter the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import operator
from datetime import date, datetime, timedelta
from typing import Any, Callable, Iterator, Mapping

from sqlalchemy import and_, exists, func, select
from sqlalchemy.engine import Connection

from bot.models import ChannelIdentity, Consent, Conversation, Customer

customer_t = Customer.__table__
identity_t = ChannelIdentity.__table__
consent_t = Consent.__table__
conversation_t = Conversation.__table__

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "in": lambda value, options: value in options,
}


def _query(audience: Mapping[str, Any], now: datetime) -> Any:
    query = select(customer_t.c.id, customer_t.c.categories, customer_t.c.attributes).where(
        customer_t.c.erased_at.is_(None)
    )
    if audience.get("locale"):
        query = query.where(customer_t.c.locale == audience["locale"])
    channel = audience.get("channel")
    if channel:
        query = query.where(
            exists().where(
                identity_t.c.customer_id == customer_t.c.id,
                identity_t.c.channel == channel,
                identity_t.c.blocked_at.is_(None),
            )
        )
    else:
        # Someone with no channel at all cannot be reached (a chat customer merged into the
        # shop's by an account link leaves such an empty row): not part of any audience.
        query = query.where(exists().where(identity_t.c.customer_id == customer_t.c.id))
    purpose = audience.get("consent_purpose")
    if purpose:
        newest = (
            select(func.max(consent_t.c.id))
            .where(consent_t.c.purpose == purpose)
            .group_by(consent_t.c.customer_id, consent_t.c.channel)
        )
        granted = select(consent_t.c.customer_id).where(consent_t.c.id.in_(newest), consent_t.c.granted.is_(True))
        if channel:
            granted = granted.where(consent_t.c.channel == channel)
        query = query.where(customer_t.c.id.in_(granted))
    days = audience.get("active_within_days")
    if days:
        query = query.where(
            exists().where(
                and_(
                    conversation_t.c.customer_id == customer_t.c.id,
                    conversation_t.c.last_inbound_at > now - timedelta(days=int(days)),
                )
            )
        )
    return query.order_by(customer_t.c.id)


def _matches(row: Any, audience: Mapping[str, Any]) -> bool:
    favourites = set(row.categories or [])
    any_of = audience.get("categories_any") or []
    if any_of and not favourites.intersection(any_of):
        return False
    all_of = audience.get("categories_all") or []
    if all_of and not favourites.issuperset(all_of):
        return False
    attributes = row.attributes or {}
    for condition in audience.get("attributes") or []:
        if not _holds(attributes.get(condition["name"]), condition["op"], condition["value"]):
            return False
    return True


def _holds(value: Any, op: str, expected: Any) -> bool:
    if value is None:
        return op == "ne" and expected is not None
    if op == "in":
        return any(_same(value, option) for option in expected) if isinstance(expected, list) else False
    if op in ("eq", "ne"):
        return _same(value, expected) == (op == "eq")
    try:
        if isinstance(expected, str) and _looks_like_date(expected) and isinstance(value, str):
            value, expected = date.fromisoformat(value[:10]), date.fromisoformat(expected[:10])
        return bool(OPERATORS[op](value, expected))
    except (TypeError, ValueError):
        return False  # an attribute of another type never matches


def _same(value: Any, expected: Any) -> bool:
    """Equality that does not take True for 1 (Python does)."""
    return isinstance(value, bool) == isinstance(expected, bool) and value == expected


def _looks_like_date(text: str) -> bool:
    return len(text) >= 10 and text[4] == "-" and text[7] == "-"


def resolve(conn: Connection, audience: Mapping[str, Any], now: datetime, *, after_id: int = 0) -> Iterator[int]:
    """Matching customer ids in ascending order, starting after ``after_id`` (a campaign's cursor)."""
    query = _query(audience, now).where(customer_t.c.id > after_id)
    for row in conn.execute(query):
        if _matches(row, audience):
            yield row.id


def count(conn: Connection, audience: Mapping[str, Any], now: datetime) -> int:
    return sum(1 for _ in resolve(conn, audience, now))
