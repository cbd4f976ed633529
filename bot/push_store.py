"""SQL of the push side: push rows and their history, the facts a decision needs, links, orders.

Synchronous SQLAlchemy Core functions of a connection, like ``bot/store.py``,
run through ``Database.write``/``read``. Facts are loaded for a batch of
customers with a handful of statements, so a campaign of 100,000 recipients
costs a few hundred queries, not a few per recipient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence

from sqlalchemy import and_, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from bot.models import ChannelIdentity, Consent, Conversation, Customer, DiscountCode, OutboxMessage
from bot.models_shop import Campaign, Link, Push, PushEvent
from bot.store import _insert_ignore, as_utc

push_t = Push.__table__
event_t = PushEvent.__table__
link_t = Link.__table__
customer_t = Customer.__table__
identity_t = ChannelIdentity.__table__
consent_t = Consent.__table__
conversation_t = Conversation.__table__
outbox_t = OutboxMessage.__table__
code_t = DiscountCode.__table__

BATCH = 500
IN_FLIGHT_BATCH = 2000
CAMPAIGN_CANCELLED = "campaign_cancelled"
NO_FALLBACK = "no_fallback"  # a receipt timed out but no other channel is allowed: the push stays sent
OPEN = ("queued", "deferred")
IN_FLIGHT = ("sending", "sent")


# --------------------------------------------------------------------------- pushes


def create_pushes(conn: Connection, rows: Sequence[dict[str, Any]], now: datetime) -> list[tuple[int, bool]]:
    """Insert pushes (customer_id, touchpoint, dedup_key, variables, priority, transactional, campaign_id).

    Returns (push id, created) per row in order; an existing (customer,
    touchpoint, dedup_key) is not created again: the same alert at most once.
    An earlier copy that was *skipped* (no consent, cap, ...) never reached the
    customer, so it is queued again and counts as created; a campaign's
    recipients are decided once.
    """
    if not rows:
        return []
    values = [
        {
            "status": "queued",
            "tried": [],
            "due_at": now,
            "created_at": now,
            "campaign_id": None,
            **row,
        }
        for row in rows
    ]
    before = conn.execute(select(func.coalesce(func.max(push_t.c.id), 0))).scalar_one()
    conn.execute(_insert_ignore(conn, push_t, ["customer_id", "touchpoint", "dedup_key"]), values)
    out: list[tuple[int, bool]] = []
    for chunk in _chunks(values, BATCH):
        found = {
            (r.customer_id, r.dedup_key): r.id
            for r in conn.execute(
                select(push_t.c.id, push_t.c.customer_id, push_t.c.dedup_key).where(
                    push_t.c.touchpoint == chunk[0]["touchpoint"],
                    push_t.c.customer_id.in_([v["customer_id"] for v in chunk]),
                    push_t.c.dedup_key.in_({v["dedup_key"] for v in chunk}),
                )
            )
        }
        for v in chunk:
            push_id = found[(v["customer_id"], v["dedup_key"])]
            out.append((push_id, push_id > before))
    created = [{"push_id": pid, "status": "queued", "at": now} for pid, new in out if new]
    if created:
        conn.execute(event_t.insert(), created)
    return _requeue_skipped(conn, out, values, now)


def _requeue_skipped(
    conn: Connection, out: list[tuple[int, bool]], values: list[dict[str, Any]], now: datetime
) -> list[tuple[int, bool]]:
    """Queue again the existing pushes among ``out`` that were skipped (and are not a campaign's)."""
    existing = {pid for pid, new in out if not new}
    if not existing:
        return out
    skipped: set[int] = set()
    for chunk in _chunks(sorted(existing), BATCH):
        skipped.update(
            conn.execute(
                select(push_t.c.id).where(
                    push_t.c.id.in_(chunk), push_t.c.status == "skipped", push_t.c.campaign_id.is_(None)
                )
            ).scalars()
        )
    if not skipped:
        return out
    variables = {pid: v["variables"] for (pid, _), v in zip(out, values) if pid in skipped}
    requeued: set[int] = set()
    for pid, fresh in variables.items():
        # Still skipped (a second copy of the event may have queued it meanwhile on PostgreSQL).
        changed = conn.execute(
            update(push_t)
            .where(push_t.c.id == pid, push_t.c.status == "skipped")
            .values(
                status="queued", reason=None, channel=None, address=None, tried=[], outbox_id=None, sent_at=None,
                due_at=now, variables=fresh,
            )
        ).rowcount
        if changed:
            requeued.add(pid)
    if requeued:
        conn.execute(
            event_t.insert(),
            [{"push_id": pid, "status": "queued", "detail": "triggered again after a skip", "at": now} for pid in sorted(requeued)],
        )
    return [(pid, new or pid in requeued) for pid, new in out]


def record(
    conn: Connection,
    push_ids: Iterable[int] | int,
    status: str,
    now: datetime,
    *,
    reason: str | None = None,
    channel: str | None = None,
    detail: str | None = None,
    **values: Any,
) -> None:
    """Move pushes to ``status`` and append the step to their history."""
    ids = [push_ids] if isinstance(push_ids, int) else list(push_ids)
    if not ids:
        return
    changes: dict[str, Any] = {"status": status, "reason": reason, **values}
    if channel is not None:
        changes["channel"] = channel
    for chunk in _chunks(ids, BATCH):
        conn.execute(update(push_t).where(push_t.c.id.in_(chunk)).values(**changes))
    conn.execute(
        event_t.insert(),
        [{"push_id": i, "status": status, "reason": reason, "channel": channel, "detail": detail, "at": now} for i in ids],
    )


def due(conn: Connection, now: datetime, limit: int = BATCH) -> list[Any]:
    """Pushes to decide now, most important first.

    On PostgreSQL the rows stay locked until the deciding transaction commits, and a
    second decider skips them (SQLite has one writer at a time anyway).
    """
    query = (
        select(push_t)
        .where(push_t.c.status.in_(OPEN), push_t.c.due_at <= now)
        .order_by(push_t.c.priority.desc(), push_t.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query))


def cancel_campaign(conn: Connection, campaign_id: int, now: datetime) -> bool:
    """Cancel a campaign that has not finished and everything of it not yet with a platform.

    Its undecided pushes are skipped at once; its messages still waiting in the outbox
    (none of their parts sent) are withdrawn, and the follower then skips their pushes.
    A push that already reached a first channel and waits for its fallback stays sent there.
    """
    campaign_t = Campaign.__table__
    changed = conn.execute(
        update(campaign_t)
        .where(campaign_t.c.id == campaign_id, campaign_t.c.status.in_(("scheduled", "running", "enqueued")))
        .values(status="cancelled", finished_at=now)
    ).rowcount
    if not changed:
        return False
    open_pushes = list(
        conn.execute(
            select(push_t.c.id, push_t.c.channel, push_t.c.reason).where(
                push_t.c.campaign_id == campaign_id, push_t.c.status.in_(OPEN)
            )
        )
    )
    record(conn, [r.id for r in open_pushes if not probably_arrived(r)], "skipped", now, reason=CAMPAIGN_CANCELLED)
    for r in open_pushes:
        if probably_arrived(r):  # no fallback now
            record(conn, r.id, "sent", now, reason=CAMPAIGN_CANCELLED, channel=r.channel)
    sending = {
        r.outbox_id: r.id
        for r in conn.execute(
            select(push_t.c.id, push_t.c.outbox_id).where(push_t.c.campaign_id == campaign_id, push_t.c.status == "sending")
        )
    }
    withdrawn: list[int] = []
    for chunk in _chunks(sorted(i for i in sending if i is not None), BATCH):
        conn.execute(
            update(outbox_t)
            .where(outbox_t.c.id.in_(chunk), outbox_t.c.status == "pending", outbox_t.c.parts_sent == 0)
            .values(status="cancelled", last_error="campaign cancelled")
        )
        withdrawn += conn.execute(
            select(outbox_t.c.id).where(outbox_t.c.id.in_(chunk), outbox_t.c.status == "cancelled")
        ).scalars()
    # A sender holding one of them right now sends it anyway and sets its push to sent (left_after_all).
    record(conn, [sending[i] for i in withdrawn], "skipped", now, reason=CAMPAIGN_CANCELLED)
    return True


def left_after_all(conn: Connection, outbox_id: int, now: datetime) -> None:
    """A withdrawn message was already on the wire when its campaign was cancelled: its push is sent."""
    for push in conn.execute(
        select(push_t.c.id, push_t.c.channel).where(
            push_t.c.outbox_id == outbox_id, push_t.c.status.in_(("skipped", "sending"))
        )
    ):
        record(conn, push.id, "sent", now, channel=push.channel, detail="it left before the cancel reached it")


def probably_arrived(row: Any) -> bool:
    """A push back in the queue only because its receipt did not come in time: its copy most likely arrived."""
    return row.reason == "receipt_timeout"


def cancelled_campaigns(conn: Connection, campaign_ids: set[int]) -> set[int]:
    """Which of these campaigns were cancelled (their undecided pushes are skipped)."""
    if not campaign_ids:
        return set()
    campaign_t = Campaign.__table__
    return set(
        conn.execute(
            select(campaign_t.c.id).where(campaign_t.c.id.in_(sorted(campaign_ids)), campaign_t.c.status == "cancelled")
        ).scalars()
    )


def get(conn: Connection, push_id: int) -> Any | None:
    return conn.execute(select(push_t).where(push_t.c.id == push_id)).first()


def already_pushed(conn: Connection, customer_id: int, touchpoint: str, dedup_key: str) -> bool:
    """Whether this alert was already created for the customer and not skipped (the same alert goes at most once)."""
    return conn.execute(
        select(push_t.c.id).where(
            push_t.c.customer_id == customer_id,
            push_t.c.touchpoint == touchpoint,
            push_t.c.dedup_key == dedup_key,
            push_t.c.status != "skipped",
        )
    ).first() is not None


def external_id(conn: Connection, customer_id: int) -> str | None:
    return conn.execute(select(customer_t.c.external_id).where(customer_t.c.id == customer_id)).scalar()


def history(conn: Connection, push_id: int) -> list[Any]:
    return list(conn.execute(select(event_t).where(event_t.c.push_id == push_id).order_by(event_t.c.id)))


def in_flight(
    conn: Connection, *, receipt_channels: Sequence[str], timed_out_before: datetime, limit: int = IN_FLIGHT_BATCH
) -> list[Any]:
    """Pushes handed to the outbox that have news: left the outbox, got a receipt, or waited too long for one.

    A "sent" push without receipts to wait for (Telegram reports none) is
    final and never scanned again.
    """
    news = (
        ((push_t.c.status == "sending") & (outbox_t.c.status != "pending"))
        | (
            (push_t.c.status == "sent")
            & push_t.c.channel.in_(list(receipt_channels))
            & (
                outbox_t.c.delivery_status.in_(("delivered", "read", "failed"))
                | (
                    push_t.c.transactional.is_(False)
                    & (push_t.c.sent_at < timed_out_before)
                    # nowhere left to fall back to: it stays sent, its receipts still count
                    & (push_t.c.reason.is_(None) | push_t.c.reason.not_in((NO_FALLBACK, "partly_delivered", CAMPAIGN_CANCELLED)))
                )
            )
        )
        | ((push_t.c.status == "delivered") & (outbox_t.c.delivery_status == "read"))
    )
    return list(
        conn.execute(
            select(
                push_t.c.id,
                push_t.c.status,
                push_t.c.channel,
                push_t.c.transactional,
                push_t.c.sent_at,
                push_t.c.outbox_id,
                outbox_t.c.status.label("outbox_status"),
                outbox_t.c.delivery_status,
                outbox_t.c.last_error,
                outbox_t.c.parts_sent,
            )
            .join(outbox_t, outbox_t.c.id == push_t.c.outbox_id)
            .where(push_t.c.status.in_(("sending", "sent", "delivered")), news)
            .order_by(push_t.c.id)
            .limit(limit)
        )
    )


class Batch:
    """Status changes, history rows, outbox rows and links of many pushes, written with a few executemany calls.

    A campaign decides hundreds of pushes per transaction; one statement per
    push and per history row cost more than the decisions themselves.
    """

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._updates: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []
        self._outbox: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (outbox row, the push update to get its id)
        self.links: list[dict[str, Any]] = []

    def record(
        self,
        push_id: int,
        status: str,
        *,
        reason: str | None = None,
        channel: str | None = None,
        detail: str | None = None,
        **values: Any,
    ) -> dict[str, Any]:
        change: dict[str, Any] = {"_id": push_id, "status": status, "reason": reason, **values}
        if channel is not None:
            change["channel"] = channel
        self._updates.append(change)
        self._events.append({"push_id": push_id, "status": status, "reason": reason, "channel": channel, "detail": detail, "at": self.now})
        return change

    def set_due(self, push_id: int, due_at: datetime) -> None:
        self._updates.append({"_id": push_id, "due_at": due_at})

    def enqueue(self, change: dict[str, Any], *, channel: str, address: str, customer_id: int, message: Any, priority: int) -> None:
        """Queue a message; its outbox id lands in ``change`` (a ``record`` result) when flushed."""
        row = {
            "channel": channel,
            "address": address,
            "customer_id": customer_id,
            "payload": message.to_dict(),
            "status": "pending",
            "priority": priority,
            "attempts": 0,
            "parts_sent": 0,
            "created_at": self.now,
        }
        self._outbox.append((row, change))

    def flush(self, conn: Connection) -> None:
        if self._outbox:
            stmt = insert(outbox_t).returning(outbox_t.c.id, sort_by_parameter_order=True)
            ids = conn.execute(stmt, [row for row, _ in self._outbox]).scalars().all()
            for (_, change), outbox_id in zip(self._outbox, ids):
                change["outbox_id"] = outbox_id
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for change in self._updates:
            groups.setdefault(tuple(sorted(change)), []).append(change)
        for keys, changes in groups.items():
            # executemany: SET takes every other key of the dicts, WHERE the "_id".
            conn.execute(update(push_t).where(push_t.c.id == bindparam("_id")), changes)
        if self._events:
            conn.execute(event_t.insert(), self._events)
        if self.links:
            conn.execute(link_t.insert(), self.links)
        self._updates, self._events, self._outbox, self.links = [], [], [], []


# --------------------------------------------------------------------------- facts


@dataclass(slots=True)
class Identity:
    channel: str
    address: str
    blocked: bool
    last_inbound_at: datetime | None


@dataclass(slots=True)
class Facts:
    """What a decision about one customer needs; loaded in batches."""

    customer_id: int
    first_name: str | None
    locale: str | None
    timezone: str | None
    preferred_channel: str | None
    erased: bool
    categories: list[str] = field(default_factory=list)
    identities: list[Identity] = field(default_factory=list)
    # (purpose, channel) -> (granted, source) of the newest consent row
    consents: dict[tuple[str, str], tuple[bool, str]] = field(default_factory=dict)
    marketing_sent_at: list[datetime] = field(default_factory=list)


def load_facts(conn: Connection, customer_ids: Sequence[int], now: datetime) -> dict[int, Facts]:
    facts: dict[int, Facts] = {}
    for chunk in _chunks(sorted(set(customer_ids)), BATCH):
        for r in conn.execute(
            select(
                customer_t.c.id,
                customer_t.c.first_name,
                customer_t.c.locale,
                customer_t.c.timezone,
                customer_t.c.preferred_channel,
                customer_t.c.erased_at,
                customer_t.c.categories,
            ).where(customer_t.c.id.in_(chunk))
        ):
            facts[r.id] = Facts(
                customer_id=r.id,
                first_name=r.first_name,
                locale=r.locale,
                timezone=r.timezone,
                preferred_channel=r.preferred_channel,
                erased=r.erased_at is not None,
                categories=list(r.categories or []),
            )
        for r in conn.execute(
            select(
                identity_t.c.customer_id,
                identity_t.c.channel,
                identity_t.c.address,
                identity_t.c.blocked_at,
                conversation_t.c.last_inbound_at,
            )
            .select_from(
                identity_t.outerjoin(
                    conversation_t,
                    and_(conversation_t.c.channel == identity_t.c.channel, conversation_t.c.address == identity_t.c.address),
                )
            )
            .where(identity_t.c.customer_id.in_(chunk))
        ):
            if r.customer_id in facts:
                facts[r.customer_id].identities.append(
                    Identity(r.channel, r.address, r.blocked_at is not None, as_utc(r.last_inbound_at))
                )
        newest = (
            select(func.max(consent_t.c.id))
            .where(consent_t.c.customer_id.in_(chunk))
            .group_by(consent_t.c.customer_id, consent_t.c.purpose, consent_t.c.channel)
        )
        for r in conn.execute(
            select(consent_t.c.customer_id, consent_t.c.purpose, consent_t.c.channel, consent_t.c.granted, consent_t.c.source)
            .where(consent_t.c.id.in_(newest))
        ):
            if r.customer_id in facts:
                facts[r.customer_id].consents[(r.purpose, r.channel)] = (bool(r.granted), r.source)
        for r in conn.execute(
            select(push_t.c.customer_id, push_t.c.sent_at).where(
                push_t.c.customer_id.in_(chunk),
                push_t.c.transactional.is_(False),
                push_t.c.sent_at > now - timedelta(days=7),
                # Not a push that reached nobody; one waiting for its next channel still counts
                # (its first copy may well have arrived), except against itself (see PushService).
                push_t.c.status.not_in(("failed", "skipped")),
            )
        ):
            if r.customer_id in facts:
                facts[r.customer_id].marketing_sent_at.append(as_utc(r.sent_at))  # type: ignore[arg-type]
    return facts


def last_push_for(conn: Connection, customer_id: int, touchpoint: str, key_prefix: str, since: datetime) -> Any | None:
    """The newest push of a touchpoint whose dedup key starts with ``key_prefix`` since ``since``."""
    return conn.execute(
        select(push_t.c.id, push_t.c.created_at)
        .where(
            push_t.c.customer_id == customer_id,
            push_t.c.touchpoint == touchpoint,
            push_t.c.dedup_key.like(key_prefix + "%"),
            push_t.c.created_at > since,
            push_t.c.status != "skipped",
        )
        .order_by(push_t.c.id.desc())
        .limit(1)
    ).first()


# --------------------------------------------------------------------------- links and conversions


def add_links(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(link_t.insert(), list(rows))


def link_url(conn: Connection, token: str) -> str | None:
    return conn.execute(select(link_t.c.url).where(link_t.c.token == token)).scalar()


def click(conn: Connection, token: str, now: datetime) -> str | None:
    """Record a click on a tracked link; returns where to redirect, or None for an unknown token."""
    link = conn.execute(select(link_t.c.url, link_t.c.push_id).where(link_t.c.token == token)).first()
    if link is None:
        return None
    push = get(conn, link.push_id)
    if push is not None:
        if push.clicked_at is None:
            conn.execute(update(push_t).where(push_t.c.id == link.push_id).values(clicked_at=now))
        conn.execute(event_t.insert().values(push_id=link.push_id, status="clicked", channel=push.channel, at=now))
    return link.url


def attribute_order(
    conn: Connection, customer_id: int, code: str | None, push_id: int | None, now: datetime, window: timedelta
) -> int | None:
    """The push an order converts: named by the shop, or the push that issued its code, or the last click in the window."""
    candidate = None
    if push_id is not None:
        row = get(conn, push_id)
        candidate = row.id if row is not None and row.customer_id == customer_id else None
    if candidate is None and code:
        row = conn.execute(
            select(push_t.c.id)
            .where(push_t.c.customer_id == customer_id, push_t.c.variables["code"].as_string() == code)
            .order_by(push_t.c.id.desc())
            .limit(1)
        ).first()
        candidate = row.id if row is not None else None
    if candidate is None:
        row = conn.execute(
            select(push_t.c.id)
            .where(push_t.c.customer_id == customer_id, push_t.c.clicked_at > now - window)
            .order_by(push_t.c.clicked_at.desc())
            .limit(1)
        ).first()
        candidate = row.id if row is not None else None
    if candidate is not None:
        conn.execute(
            update(push_t).where(push_t.c.id == candidate, push_t.c.converted_at.is_(None)).values(converted_at=now)
        )
        conn.execute(event_t.insert().values(push_id=candidate, status="converted", at=now))
    if code:
        conn.execute(
            update(code_t)
            .where(code_t.c.customer_id == customer_id, code_t.c.code == code, code_t.c.redeemed_at.is_(None))
            .values(redeemed_at=now)
        )
    return candidate


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def set_due(conn: Connection, push_id: int, due_at: datetime) -> None:
    conn.execute(update(push_t).where(push_t.c.id == push_id).values(due_at=due_at))


def enqueue(
    conn: Connection, *, channel: str, address: str, customer_id: int, message: Any, priority: int, now: datetime
) -> int:
    """Put a push's message in the outbox; the id links the push to its send and receipts."""
    return conn.execute(
        outbox_t.insert()
        .values(
            channel=channel,
            address=address,
            customer_id=customer_id,
            payload=message.to_dict(),
            status="pending",
            priority=priority,
            attempts=0,
            parts_sent=0,
            created_at=now,
        )
        .returning(outbox_t.c.id)
    ).scalar_one()
