"""SQL of the shop API: customers by the shop's id, account links, the catalog, idempotent answers.

Like ``bot/store.py``: synchronous SQLAlchemy Core functions of a connection,
run through ``Database.write`` / ``Database.read``. Nothing here knows HTTP.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Sequence

from sqlalchemy import delete, exists, func, insert, null, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot import store
from bot.models import ChannelIdentity, Consent, Conversation, Customer, DiscountCode, MessageLog, OutboxMessage, Ticket
from bot.models_shop import AccountLink, CustomerLocation, IdempotentRequest, Product, ShopCategory, Store
from bot.store import as_utc, utc

customer_t = Customer.__table__
identity_t = ChannelIdentity.__table__
conversation_t = Conversation.__table__
consent_t = Consent.__table__
code_t = DiscountCode.__table__
ticket_t = Ticket.__table__
log_t = MessageLog.__table__
outbox_t = OutboxMessage.__table__
location_t = CustomerLocation.__table__
link_t = AccountLink.__table__
idem_t = IdempotentRequest.__table__
category_t = ShopCategory.__table__
product_t = Product.__table__
shop_store_t = Store.__table__

CONSENT_SOURCE = "shop_api"
# The channels whose address is the customer's contact detail rather than a platform user id.
CONTACT_CHANNELS = {"email": "email", "sms": "phone"}


def _insert(conn: Connection, table: Any) -> Any:
    """The dialect's INSERT, which has ON CONFLICT."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise RuntimeError(f"unsupported database dialect {dialect}")


# --- customers -------------------------------------------------------------------------


class AddressTaken(Exception):
    """Another customer already has this e-mail address or phone number."""

    def __init__(self, field: str, owner: str | None) -> None:
        super().__init__(field)
        self.field = field
        self.owner = owner


@dataclass(frozen=True, slots=True)
class NewConsent:
    purpose: str
    channel: str
    granted: bool
    wording_version: str


def upsert_customer(
    conn: Connection, values: dict[str, Any], consents: Sequence[NewConsent], now: datetime
) -> tuple[int, bool]:
    """Create or update the customer ``values["external_id"]``; returns (id, created).

    ``values`` holds only the fields the shop sent: others keep their value.
    ``attributes`` are merged (a None value removes the key). ``email`` and
    ``phone`` also keep the customer's "email" and "sms" identities in step.
    Raises ``AddressTaken`` (the transaction must then be rolled back).
    """
    now = utc(now)
    external_id = values["external_id"]
    fields = {k: v for k, v in values.items() if k not in ("external_id", "attributes")}
    row = conn.execute(
        select(customer_t.c.id, customer_t.c.attributes).where(customer_t.c.external_id == external_id)
    ).first()
    created = False
    if row is None:
        new = {
            "external_id": external_id,
            "attributes": _merged({}, values.get("attributes") or {}) or null(),
            "created_at": now,
            "updated_at": now,
            **fields,
        }
        customer_id = conn.execute(
            _insert(conn, customer_t)
            .on_conflict_do_nothing(index_elements=["external_id"])
            .values(new)
            .returning(customer_t.c.id)
        ).scalar_one_or_none()
        created = customer_id is not None
        if not created:  # created by a concurrent request since the select
            row = conn.execute(
                select(customer_t.c.id, customer_t.c.attributes).where(customer_t.c.external_id == external_id)
            ).one()
    if row is not None:
        customer_id = row.id
        changes = dict(fields)
        if values.get("attributes"):
            changes["attributes"] = _merged(row.attributes or {}, values["attributes"]) or null()
        conn.execute(update(customer_t).where(customer_t.c.id == customer_id).values(updated_at=now, **changes))
    for channel, field in CONTACT_CHANNELS.items():
        if field in values:
            _sync_contact_identity(conn, customer_id, channel, field, values[field], now)
    record_consents(conn, customer_id, consents, now)
    return customer_id, created


def _merged(current: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    merged = {**current, **given}
    return {k: v for k, v in merged.items() if v is not None}


def _sync_contact_identity(
    conn: Connection, customer_id: int, channel: str, field: str, address: str | None, now: datetime
) -> None:
    """Keep one identity (and its conversation) on ``channel`` at ``address``; None removes it."""
    mine = conn.execute(
        select(identity_t.c.id, identity_t.c.address)
        .where(identity_t.c.customer_id == customer_id, identity_t.c.channel == channel)
        .order_by(identity_t.c.id)
    ).all()
    keep = None
    if address is not None:
        holder = conn.execute(
            select(identity_t.c.customer_id, customer_t.c.external_id)
            .join(customer_t, customer_t.c.id == identity_t.c.customer_id)
            .where(identity_t.c.channel == channel, identity_t.c.address == address)
        ).first()
        if holder is not None and holder.customer_id != customer_id:
            raise AddressTaken(field, holder.external_id)
        keep = next((r for r in mine if r.address == address), None)
        if keep is None and mine:  # a changed address: the identity moves, with its conversation
            keep = mine[0]
            conn.execute(update(identity_t).where(identity_t.c.id == keep.id).values(address=address, blocked_at=None))
            conn.execute(
                update(conversation_t)
                .where(conversation_t.c.channel == channel, conversation_t.c.address == keep.address)
                .values(address=address, updated_at=now)
            )
        elif keep is None:
            _add_identity(conn, customer_id, channel, address, now)
    for row in mine:
        if keep is None or row.id != keep.id:
            conn.execute(
                delete(conversation_t).where(
                    conversation_t.c.channel == channel, conversation_t.c.address == row.address
                )
            )
            conn.execute(delete(identity_t).where(identity_t.c.id == row.id))


def _add_identity(conn: Connection, customer_id: int, channel: str, address: str, now: datetime) -> None:
    # Every identity has a conversation (store.create_identity relies on it when a reply comes in).
    conn.execute(
        insert(identity_t).values(
            customer_id=customer_id,
            channel=channel,
            address=address,
            display_name=None,
            language_code=None,
            deep_link=None,
            blocked_at=None,
            created_at=now,
        )
    )
    conn.execute(
        insert(conversation_t).values(
            channel=channel,
            address=address,
            customer_id=customer_id,
            dialog=None,
            step=None,
            slots={},
            offered=[],
            locale=None,
            mode="bot",
            misses=0,
            version=0,
            last_inbound_at=None,
            updated_at=now,
        )
    )


def record_consents(conn: Connection, customer_id: int, consents: Sequence[NewConsent], now: datetime) -> int:
    """Append the consents that differ from the current ones (a repeated upsert adds nothing); returns how many."""
    current = {(c.purpose, c.channel): c for c in store.current_consents(conn, customer_id)}
    paused = store.paused_consents(conn, customer_id)
    rows = [
        {
            "customer_id": customer_id,
            "purpose": c.purpose,
            "channel": c.channel,
            "granted": c.granted,
            "source": CONSENT_SOURCE,
            "wording_version": c.wording_version,
            "created_at": utc(now),
        }
        for c in consents
        if (old := current.get((c.purpose, c.channel))) is None
        or old.granted != c.granted
        or old.wording_version != c.wording_version
        or (not c.granted and (c.purpose, c.channel) in paused)  # a withdrawal outlasts the pause
    ]
    if rows:
        conn.execute(insert(consent_t), rows)
    return len(rows)


def customer_profile(conn: Connection, external_id: str) -> dict[str, Any] | None:
    """The customer as ``CustomerOut``; None when unknown or erased."""
    row = conn.execute(
        select(customer_t).where(customer_t.c.external_id == external_id, customer_t.c.erased_at.is_(None))
    ).first()
    if row is None:
        return None
    identities = conn.execute(
        select(identity_t.c.channel, identity_t.c.address, identity_t.c.blocked_at)
        .where(identity_t.c.customer_id == row.id)
        .order_by(identity_t.c.id)
    )
    return {
        "id": row.id,
        "external_id": row.external_id,
        "first_name": row.first_name,
        "email": row.email,
        "phone": row.phone,
        "locale": row.locale,
        "timezone": row.timezone,
        "preferred_channel": row.preferred_channel,
        "categories": list(row.categories or []),
        "attributes": dict(row.attributes or {}),
        "identities": [
            {"channel": i.channel, "address": i.address, "blocked": i.blocked_at is not None} for i in identities
        ],
        "consents": [
            {
                "purpose": c.purpose,
                "channel": c.channel,
                "granted": c.granted,
                "updated_at": c.updated_at,
                "wording_version": c.wording_version,
            }
            for c in store.current_consents(conn, row.id)
        ],
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
    }


# --- account links ---------------------------------------------------------------------

LINK_PREFIX = "link_"
LINK_DAYS = 7
# "link_" and 32 URL-safe characters: fits Telegram's start parameter (64 of A-Za-z0-9_-).
_TOKEN_IN_TEXT = re.compile(r"(?<![A-Za-z0-9_-])(link_[A-Za-z0-9_-]{32})(?![A-Za-z0-9_-])")


def new_link_token() -> str:
    return LINK_PREFIX + secrets.token_urlsafe(24)


def token_in_text(text: str | None) -> str | None:
    """The link token inside a message (WhatsApp sends the prefilled text as the first message)."""
    match = _TOKEN_IN_TEXT.search(text or "")
    return match.group(1) if match else None


def create_link_token(
    conn: Connection, external_id: str, now: datetime, days: int = LINK_DAYS
) -> dict[str, Any] | None:
    """A new token for the customer: {token, expires_at, locale}; None when unknown or erased."""
    row = conn.execute(
        select(customer_t.c.id, customer_t.c.locale).where(
            customer_t.c.external_id == external_id, customer_t.c.erased_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    now = utc(now)
    token, expires_at = new_link_token(), now + timedelta(days=days)
    conn.execute(
        insert(link_t).values(token=token, customer_id=row.id, expires_at=expires_at, used_at=None, created_at=now)
    )
    return {"token": token, "expires_at": expires_at, "locale": row.locale}


def bind_link_token(conn: Connection, token: str, channel: str, address: str, now: datetime) -> int | None:
    """Move the identity (channel, address) to the token's shop customer; returns that customer's id.

    The identity's conversation moves with it. When the identity belonged to
    a chat-only customer (no shop id) that has nothing else left, what the
    chat collected moves too: the consent log rows (re-pointed, so their order
    stays), codes, tickets, the message log, the last location, and the
    favourite categories, locale and first name where the shop customer has
    none. That customer row is left empty. An unknown, expired or used token,
    an unknown identity, or one that belongs to another shop customer changes
    nothing and gives None.
    """
    now = utc(now)
    link = conn.execute(
        select(link_t.c.customer_id).where(
            link_t.c.token == token, link_t.c.used_at.is_(None), link_t.c.expires_at > now
        )
    ).first()
    if link is None:
        return None
    target = conn.execute(
        select(customer_t).where(customer_t.c.id == link.customer_id, customer_t.c.erased_at.is_(None))
    ).first()
    identity = conn.execute(
        select(identity_t.c.id, identity_t.c.customer_id, customer_t.c.external_id)
        .join(customer_t, customer_t.c.id == identity_t.c.customer_id)
        .where(identity_t.c.channel == channel, identity_t.c.address == address)
    ).first()
    if target is None or identity is None:
        return None
    if identity.customer_id != target.id:
        if identity.external_id is not None:  # never take an identity from another shop customer
            return None
        _move_identity(conn, identity.id, identity.customer_id, target, channel, address, now)
    conn.execute(update(link_t).where(link_t.c.token == token).values(used_at=now))
    return int(target.id)


def _move_identity(
    conn: Connection, identity_id: int, old_id: int, target: Any, channel: str, address: str, now: datetime
) -> None:
    conn.execute(update(identity_t).where(identity_t.c.id == identity_id).values(customer_id=target.id))
    conn.execute(
        update(conversation_t)
        .where(conversation_t.c.channel == channel, conversation_t.c.address == address)
        .values(customer_id=target.id, updated_at=now)
    )
    others = conn.execute(
        select(func.count()).select_from(identity_t).where(identity_t.c.customer_id == old_id)
    ).scalar_one()
    if others:  # the chat customer still talks to us elsewhere: only this channel's consents move
        conn.execute(
            update(consent_t)
            .where(consent_t.c.customer_id == old_id, consent_t.c.channel == channel)
            .values(customer_id=target.id)
        )
        return
    _merge_chat_customer(conn, old_id, target, now)


def _merge_chat_customer(conn: Connection, old_id: int, target: Any, now: datetime) -> None:
    old = conn.execute(select(customer_t).where(customer_t.c.id == old_id)).one()
    for table in (consent_t, ticket_t, log_t, outbox_t):
        conn.execute(update(table).where(table.c.customer_id == old_id).values(customer_id=target.id))
    # Codes once-only per (source, reference) stay behind when the shop customer already has that one.
    same = code_t.alias("same")
    conn.execute(
        update(code_t)
        .where(
            code_t.c.customer_id == old_id,
            ~exists().where(
                same.c.customer_id == target.id,
                same.c.source == code_t.c.source,
                same.c.reference == code_t.c.reference,
            ),
        )
        .values(customer_id=target.id)
    )
    if conn.execute(select(location_t.c.customer_id).where(location_t.c.customer_id == target.id)).first() is None:
        conn.execute(update(location_t).where(location_t.c.customer_id == old_id).values(customer_id=target.id))
    paused = [t for t in (as_utc(old.marketing_paused_until), as_utc(target.marketing_paused_until)) if t is not None]
    conn.execute(
        update(customer_t)
        .where(customer_t.c.id == target.id)
        .values(
            categories=target.categories or old.categories or null(),
            locale=target.locale or old.locale,
            first_name=target.first_name or old.first_name,
            marketing_paused_until=max(paused) if paused else None,
            updated_at=now,
        )
    )
    conn.execute(
        update(customer_t)
        .where(customer_t.c.id == old_id)
        .values(
            first_name=None,
            locale=None,
            categories=null(),
            attributes=null(),
            marketing_paused_until=None,
            updated_at=now,
        )
    )


# --- catalog ------------------------------------------------------------------------------


def _upsert_by_id(conn: Connection, table: Any, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """Insert or replace rows by their ``id``; returns (created, updated)."""
    ids = [r["id"] for r in rows]
    existing = set(conn.execute(select(table.c.id).where(table.c.id.in_(ids))).scalars())
    stmt = _insert(conn, table)
    columns = [c for c in rows[0] if c != "id"]
    stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={c: stmt.excluded[c] for c in columns})
    conn.execute(stmt, list(rows))
    return len(ids) - len(existing), len(existing)


def upsert_categories(conn: Connection, items: Sequence[dict[str, Any]], now: datetime) -> tuple[int, int]:
    rows = [
        {"id": i["id"], "name": i["name"], "url": i.get("url", ""), "percent": i["percent"], "updated_at": utc(now)}
        for i in items
    ]
    return _upsert_by_id(conn, category_t, rows)


def upsert_products(conn: Connection, items: Sequence[dict[str, Any]], now: datetime) -> tuple[int, int]:
    rows = [
        {
            "id": i["id"],
            "name": i["name"],
            "category": i["category"],
            "url": i.get("url", ""),
            "price": i.get("price"),
            "currency": i.get("currency", "EUR"),
            "in_stock": i.get("in_stock", True),
            "available_on": _iso(i.get("available_on")),
            "updated_at": utc(now),
        }
        for i in items
    ]
    return _upsert_by_id(conn, product_t, rows)


def _iso(value: date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, date) else value


def upsert_stores(conn: Connection, items: Sequence[dict[str, Any]], now: datetime) -> tuple[int, int]:
    rows = [
        {
            "id": i["id"],
            "name": i["name"],
            "address": i.get("address", ""),
            "latitude": i["latitude"],
            "longitude": i["longitude"],
            "radius_m": i["radius_m"],
            "updated_at": utc(now),
        }
        for i in items
    ]
    return _upsert_by_id(conn, shop_store_t, rows)


def list_stores(conn: Connection) -> list[dict[str, Any]]:
    columns = [shop_store_t.c[name] for name in ("id", "name", "address", "latitude", "longitude", "radius_m")]
    return [dict(r._mapping) for r in conn.execute(select(*columns).order_by(shop_store_t.c.id))]


def load_categories(conn: Connection) -> list[dict[str, Any]]:
    """The categories the shop sent over the API, as ``bot.config.Category`` fields, oldest first."""
    result = conn.execute(
        select(category_t.c.id, category_t.c.name, category_t.c.url, category_t.c.percent).order_by(
            category_t.c.updated_at, category_t.c.id
        )
    )
    return [{"id": r.id, "name": dict(r.name), "url": r.url, "percent": r.percent} for r in result]


# --- idempotent requests ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    fingerprint: str
    status: int
    body: bytes


def find_answer(conn: Connection, key: str, since: datetime) -> StoredAnswer | None:
    """The stored first answer for ``key``, unless it is older than ``since``."""
    row = conn.execute(
        select(idem_t.c.fingerprint, idem_t.c.status, idem_t.c.body).where(
            idem_t.c.key == key, idem_t.c.created_at >= utc(since)
        )
    ).first()
    return None if row is None else StoredAnswer(row.fingerprint, row.status, bytes(row.body))


def save_answer(
    conn: Connection, key: str, answer: StoredAnswer, now: datetime, forget_before: datetime | None = None
) -> None:
    """Store the first answer for ``key`` (replacing an expired one); optionally drop all answers older than ``forget_before``."""
    if forget_before is not None:
        conn.execute(delete(idem_t).where(idem_t.c.created_at < utc(forget_before)))
    conn.execute(delete(idem_t).where(idem_t.c.key == key))
    conn.execute(
        insert(idem_t).values(
            key=key, fingerprint=answer.fingerprint, status=answer.status, body=answer.body, created_at=utc(now)
        )
    )
