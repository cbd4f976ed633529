"""Conversion statistics per touchpoint or campaign, computed from the pushes themselves.

A push's final status says how far it got (sent < delivered < read), its
reason says why it did not go, ``clicked_at``/``converted_at`` say what it led
to, and a consent withdrawal on the same channel within a week after it counts
as an opt-out caused by it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.engine import Connection

from bot.models import Consent
from bot.store import as_utc
from bot.models_shop import Push

push_t = Push.__table__
consent_t = Consent.__table__
OPT_OUT_SOURCES = ("stop", "privacy", "platform", "pause", "erasure", "unsubscribe")
OPT_OUT_WINDOW = timedelta(days=7)


def stats(conn: Connection, *, touchpoint: str | None = None, campaign_id: int | None = None) -> dict[str, Any]:
    where = []
    if touchpoint:
        where.append(push_t.c.touchpoint == touchpoint)
    if campaign_id is not None:
        where.append(push_t.c.campaign_id == campaign_id)
    opted_out_exists = exists().where(
        consent_t.c.customer_id == push_t.c.customer_id,
        consent_t.c.channel == push_t.c.channel,
        consent_t.c.granted.is_(False),
        consent_t.c.source.in_(OPT_OUT_SOURCES),
        consent_t.c.created_at > push_t.c.sent_at,
    )
    totals = conn.execute(
        select(
            func.count().label("targeted"),
            func.sum(case((push_t.c.status.in_(("sent", "delivered", "read")), 1), else_=0)).label("sent"),
            func.sum(case((push_t.c.status.in_(("delivered", "read")), 1), else_=0)).label("delivered"),
            func.sum(case((push_t.c.status == "read", 1), else_=0)).label("read"),
            func.sum(case((push_t.c.clicked_at.is_not(None), 1), else_=0)).label("clicked"),
            func.sum(case((push_t.c.converted_at.is_not(None), 1), else_=0)).label("converted"),
            func.sum(case((push_t.c.status.in_(("queued", "deferred", "sending")), 1), else_=0)).label("pending"),
        ).where(*where)
    ).one()
    # Opted out *because of* the push: the first withdrawal on its channel within a week after it.
    # The window is checked here, since date arithmetic in SQL differs between SQLite and PostgreSQL.
    first_withdrawal = (
        select(func.min(consent_t.c.created_at))
        .where(
            consent_t.c.customer_id == push_t.c.customer_id,
            consent_t.c.channel == push_t.c.channel,
            consent_t.c.granted.is_(False),
            consent_t.c.source.in_(OPT_OUT_SOURCES),
            consent_t.c.created_at > push_t.c.sent_at,
        )
        .scalar_subquery()
    )
    opted_out = sum(
        1
        for row in conn.execute(
            select(push_t.c.sent_at, first_withdrawal.label("withdrawn_at")).where(
                push_t.c.status.in_(("sent", "delivered", "read")), opted_out_exists, *where
            )
        )
        if as_utc(row.withdrawn_at) - as_utc(row.sent_at) <= OPT_OUT_WINDOW  # type: ignore[operator]
    )
    reasons: dict[str, dict[str, int]] = {"skipped": {}, "failed": {}, "deferred": {}}
    for row in conn.execute(
        select(push_t.c.status, push_t.c.reason, func.count().label("n"))
        .where(push_t.c.status.in_(tuple(reasons)), *where)
        .group_by(push_t.c.status, push_t.c.reason)
    ):
        reasons[row.status][row.reason or "unknown"] = row.n
    return {
        "touchpoint": touchpoint,
        "campaign_id": campaign_id,
        "targeted": totals.targeted or 0,
        "pending": totals.pending or 0,
        "skipped": sum(reasons["skipped"].values()),
        "skipped_by_reason": reasons["skipped"],
        "deferred_by_reason": reasons["deferred"],
        "failed": sum(reasons["failed"].values()),
        "failed_by_reason": reasons["failed"],
        "sent": totals.sent or 0,
        "delivered": totals.delivered or 0,
        "read": totals.read or 0,
        "clicked": totals.clicked or 0,
        "converted": totals.converted or 0,
        "opted_out": opted_out,
    }
