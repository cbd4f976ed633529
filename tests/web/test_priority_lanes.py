"""Replies never wait behind a campaign: they have their own outbox consumer, only the channel's rate is shared."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import text

from bot.appkeys import CONFIG, DB, PUSHES
from bot.config import QuietHours
from bot.pipeline import RateLimit
from tests.web.chat import PlatformUser
from tests.web.test_signup_e2e import eventually

RECIPIENTS = 120
RATE = 40.0  # Telegram sends per second in this test: the campaign alone needs 3 s


def seed(conn: Any, count: int) -> list[int]:
    now = datetime.now(timezone.utc)
    ids = []
    for n in range(count):
        customer_id = conn.execute(
            text("INSERT INTO customer (first_name, locale, created_at, updated_at) VALUES (:n, 'en', :t, :t) RETURNING id"),
            {"n": f"C{n}", "t": now},
        ).scalar_one()
        address = str(7_000_000 + n)
        conn.execute(
            text("INSERT INTO channel_identity (customer_id, channel, address, created_at) VALUES (:c, 'telegram', :a, :t)"),
            {"c": customer_id, "a": address, "t": now},
        )
        conn.execute(
            text(
                "INSERT INTO conversation (channel, address, customer_id, slots, offered, mode, misses, version, updated_at) "
                "VALUES ('telegram', :a, :c, '{}', '[]', 'bot', 0, 0, :t)"
            ),
            {"a": address, "c": customer_id, "t": now},
        )
        conn.execute(
            text(
                "INSERT INTO consent (customer_id, purpose, channel, granted, source, wording_version, created_at) "
                "VALUES (:c, 'marketing', 'telegram', true, 'signup', '1', :t)"
            ),
            {"c": customer_id, "t": now},
        )
        ids.append(customer_id)
    return ids


async def test_a_reply_is_sent_while_a_campaign_is_still_sending(touchpoint):
    tp = touchpoint
    tp.app[CONFIG].policy.quiet_hours = QuietHours(start="00:00", end="00:00")
    tp.pipeline.rate_limits = {"telegram": RateLimit(per_second=RATE, burst=1)}
    ids = await tp.app[DB].write(lambda conn: seed(conn, RECIPIENTS))
    await tp.app[PUSHES].submit("announcement", ids, {"message": "Winter sale"}, dedup_key="campaign:test")

    async def campaign_started() -> bool:
        return any("Winter sale" in (r.json.get("text") or "") for r in tp.fake.sent("telegram"))

    await eventually(campaign_started)
    customer = PlatformUser(tp, "telegram", address="5550100999")
    await customer.post(customer.text_body("/help"))

    async def replied() -> bool:
        return any(r.json.get("chat_id") == 5550100999 for r in tp.fake.sent("telegram"))

    await eventually(replied, timeout=5)
    campaign_sent = sum("Winter sale" in (r.json.get("text") or "") for r in tp.fake.sent("telegram"))
    assert campaign_sent < RECIPIENTS / 2, f"the reply waited for {campaign_sent} campaign messages"

    async def campaign_done() -> bool:
        return sum("Winter sale" in (r.json.get("text") or "") for r in tp.fake.sent("telegram")) == RECIPIENTS

    await eventually(campaign_done, timeout=15)
