"""Campaigns: one touchpoint to an audience, now or at a time, enqueued in resumable chunks.

Recipients are enqueued in customer-id order; the campaign's ``cursor`` is the
last id enqueued, and every push has the dedup key ``campaign:<id>``. So a
restart continues after the cursor, and a chunk enqueued twice (a crash
between the pushes and the cursor update, or two processes) creates nothing
twice. Sending then goes through the ordinary push path: consent, caps,
quiet hours, channel choice, rate limits.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from itertools import islice
from typing import Any, Mapping

from sqlalchemy import func, select, update

from bot import audience as audiences
from bot import push_store
from bot.db import Database
from bot.models_shop import Campaign, Push
from bot.pushes import PushService
from bot.state.base import Locks
from bot.store import as_utc

log = logging.getLogger("touchpoint.campaigns")

campaign_t = Campaign.__table__
push_t = Push.__table__
CHUNK = 5000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Campaigns:
    def __init__(self, db: Database, pushes: PushService, locks: Locks) -> None:
        self.db = db
        self.pushes = pushes
        self.locks = locks
        self._wake = asyncio.Event()
        self._stopping = False

    async def create(
        self, name: str, touchpoint: str, audience: Mapping[str, Any], variables: Mapping[str, Any], send_at: datetime | None
    ) -> int:
        now = utcnow()
        values = {
            "name": name,
            "touchpoint": touchpoint,
            "audience": dict(audience),
            "variables": dict(variables),
            "status": "scheduled",
            # SQLite keeps wall-clock fields and drops the zone: store UTC.
            "scheduled_at": send_at.astimezone(timezone.utc) if send_at else now,
            "cursor": 0,
            "targeted": 0,
            "created_at": now,
        }
        return await self.db.write(lambda conn: conn.execute(campaign_t.insert().values(**values).returning(campaign_t.c.id)).scalar_one())

    async def preview(self, audience: Mapping[str, Any]) -> int:
        now = utcnow()
        return await self.db.read(lambda conn: audiences.count(conn, audience, now))

    async def cancel(self, campaign_id: int) -> bool:
        """Stop a campaign that has not finished; False when there is nothing left to stop.

        Its pushes not yet decided, and its messages still waiting in the outbox, are
        skipped (``campaign_cancelled``); one already handed to a platform cannot be called back.
        """
        return await self.db.write(lambda conn: push_store.cancel_campaign(conn, campaign_id, utcnow()))

    async def run(self, interval: float = 5.0) -> None:
        """Start campaigns when their time comes, and resume those a restart interrupted."""
        while not self._stopping:
            self._wake.clear()
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - retried on the next round
                log.exception("campaigns.loop_failed")
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except asyncio.TimeoutError:
                pass

    def wake(self) -> None:
        """A campaign to send now was created: start without waiting for the next round."""
        self._wake.set()

    def stop(self) -> None:
        """End ``run`` after the current round, even if a library swallowed the task's cancellation."""
        self._stopping = True
        self._wake.set()

    async def run_due(self, now: datetime | None = None) -> int:
        """Enqueue every campaign whose time has come (and resume interrupted ones)."""
        now = now or utcnow()
        due = await self.db.read(
            lambda conn: [
                r.id
                for r in conn.execute(
                    select(campaign_t.c.id).where(
                        campaign_t.c.status.in_(("scheduled", "running")), campaign_t.c.scheduled_at <= now
                    )
                )
            ]
        )
        for campaign_id in due:
            async with self.locks.hold(f"campaign:{campaign_id}", ttl=120.0):
                await self.enqueue(campaign_id)
        return len(due)

    async def enqueue(self, campaign_id: int) -> int:
        """Resolve the audience after the cursor and create the pushes chunk by chunk; returns how many."""
        row = await self.db.read(lambda conn: conn.execute(select(campaign_t).where(campaign_t.c.id == campaign_id)).first())
        if row is None or row.status not in ("scheduled", "running"):
            return 0
        started = await self.db.write(
            lambda conn: conn.execute(
                update(campaign_t)
                .where(campaign_t.c.id == campaign_id, campaign_t.c.status.in_(("scheduled", "running")))
                .values(status="running")
            ).rowcount
        )
        if not started:
            return 0  # cancelled since it was read
        now = utcnow()
        ids = await self.db.read(lambda conn: list(audiences.resolve(conn, row.audience, now, after_id=row.cursor)))
        total = 0
        chunks = iter(ids)
        while chunk := list(islice(chunks, CHUNK)):
            if await self._cancelled(campaign_id):
                log.info("campaign.cancelled id=%s after %d recipients", campaign_id, total)
                return total
            await self.pushes.submit(
                row.touchpoint, chunk, row.variables, dedup_key=f"campaign:{campaign_id}", campaign_id=campaign_id
            )
            total += len(chunk)
            last = chunk[-1]
            await self.db.write(
                lambda conn, last=last, n=len(chunk): conn.execute(
                    update(campaign_t)
                    .where(campaign_t.c.id == campaign_id)
                    .values(cursor=last, targeted=campaign_t.c.targeted + n)
                )
            )
        await self.db.write(
            lambda conn: conn.execute(
                update(campaign_t)
                .where(campaign_t.c.id == campaign_id, campaign_t.c.status == "running")
                .values(status="enqueued", finished_at=utcnow())
            )
        )
        log.info("campaign.enqueued id=%s recipients=%d", campaign_id, total)
        return total

    async def _cancelled(self, campaign_id: int) -> bool:
        status = await self.db.read(
            lambda conn: conn.execute(select(campaign_t.c.status).where(campaign_t.c.id == campaign_id)).scalar()
        )
        return status == "cancelled"

    async def status(self, campaign_id: int) -> dict[str, Any] | None:
        def query(conn: Any) -> dict[str, Any] | None:
            row = conn.execute(select(campaign_t).where(campaign_t.c.id == campaign_id)).first()
            if row is None:
                return None
            counts = {
                r.status: r.n
                for r in conn.execute(
                    select(push_t.c.status, func.count().label("n"))
                    .where(push_t.c.campaign_id == campaign_id)
                    .group_by(push_t.c.status)
                )
            }
            pending = sum(counts.get(s, 0) for s in ("queued", "deferred", "sending"))
            status = row.status
            if status == "enqueued" and pending == 0:
                status = "finished"  # every recipient decided and handed over (receipts may still come)
            return {
                "id": row.id,
                "name": row.name,
                "touchpoint": row.touchpoint,
                "status": status,
                "pending": pending,
                "scheduled_at": as_utc(row.scheduled_at).isoformat() if row.scheduled_at else None,
                "targeted": row.targeted,
                "by_status": counts,
            }

        return await self.db.read(query)
