"""Campaigns on a real database: who the audience filter picks, when a campaign starts, its progress,
and a restart in the middle of enqueueing that loses nobody and messages nobody twice.

The app runs without background workers (see tests/test_push_service.py); the
test starts campaigns with ``run_due``, decides pushes with ``dispatch_due``
and sends the outbox to the fake platforms itself. Quiet hours are off: the
campaign path takes the wall clock, and the tests must pass at any hour.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import bot.campaigns
from bot.campaigns import Campaigns
from bot.db import Database
from bot.i18n import I18n
from bot.pushes import PushService
from bot.state.memory import MemoryBackend
from tests.test_push_service import (  # noqa: F401 - fixtures
    QUIET_OFF,
    Env,
    EnvFactory,
    Person,
    database,
    make_env,
    migrated_sqlite,
    text_of,
)


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def env(make_env: EnvFactory) -> Env:  # noqa: F811 - the fixture imported above
    return await make_env(QUIET_OFF)


async def sent_campaign(env: Env) -> None:
    """Decide the campaign's pushes now and send them, as the workers would."""
    await env.pushes.dispatch_due(now())
    await env.flush()
    await env.pushes.reconcile(now())


async def recipients(env: Env, campaign_id: int) -> list[int]:
    rows = await env.sql("SELECT customer_id FROM push WHERE campaign_id = :c ORDER BY customer_id", c=campaign_id)
    return [r.customer_id for r in rows]


# ----------------------------------------------------------------------------- the audience


@pytest.fixture
async def shoppers(env: Env) -> dict[str, Person]:
    today = now()
    people = {
        "ada": await env.customer(
            ["telegram"], categories=["shoes", "sports"], inbound={"telegram": today - timedelta(days=2)},
            attributes={"order_count": 7, "customer_since": "2022-03-01", "tier": "gold"},
        ),
        "ben": await env.customer(
            ["whatsapp"], categories=["shoes"], locale="de", inbound={"whatsapp": today - timedelta(days=20)},
            attributes={"order_count": 1, "customer_since": "2025-05-01T10:00:00"},
        ),
        "cleo": await env.customer(
            ["viber"], consents={}, categories=["sports", "shoes"], inbound={"viber": today - timedelta(days=1)},
        ),
        "dev": await env.customer(["telegram"], categories=["books"], attributes={"order_count": 12, "tier": "silver"}),
        "erik": await env.customer(["telegram"], categories=["shoes"], locale="es"),  # blocked us on Telegram
        "fay": await env.customer(["telegram"], categories=["shoes", "sports"], attributes={"order_count": 9}),  # erased
    }
    await env.execute("UPDATE channel_identity SET blocked_at = created_at WHERE customer_id = :c", c=people["erik"].id)
    await env.execute("UPDATE customer SET erased_at = created_at WHERE id = :c", c=people["fay"].id)
    return people


@pytest.mark.parametrize(
    "audience, expected",
    [
        ({}, {"ada", "ben", "cleo", "dev", "erik"}),
        ({"categories_any": ["shoes"]}, {"ada", "ben", "cleo", "erik"}),
        ({"categories_any": ["books", "sports"]}, {"ada", "cleo", "dev"}),
        ({"categories_all": ["shoes", "sports"]}, {"ada", "cleo"}),
        ({"consent_purpose": "marketing"}, {"ada", "ben", "dev", "erik"}),
        ({"consent_purpose": "marketing", "channel": "telegram"}, {"ada", "dev"}),
        ({"channel": "whatsapp"}, {"ben"}),
        ({"locale": "de"}, {"ben"}),
        ({"active_within_days": 7}, {"ada", "cleo"}),
        ({"active_within_days": 30}, {"ada", "ben", "cleo"}),
        ({"attributes": [{"name": "order_count", "op": "gte", "value": 7}]}, {"ada", "dev"}),
        ({"attributes": [{"name": "order_count", "op": "lt", "value": 7}]}, {"ben"}),
        ({"attributes": [{"name": "customer_since", "op": "lt", "value": "2024-01-01"}]}, {"ada"}),
        ({"attributes": [{"name": "customer_since", "op": "gte", "value": "2025-05-01"}]}, {"ben"}),
        ({"attributes": [{"name": "tier", "op": "in", "value": ["gold", "silver"]}]}, {"ada", "dev"}),
        ({"attributes": [{"name": "tier", "op": "eq", "value": "gold"}, {"name": "order_count", "op": "gt", "value": 5}]}, {"ada"}),
        (
            {"categories_any": ["shoes"], "consent_purpose": "marketing", "active_within_days": 30,
             "attributes": [{"name": "order_count", "op": "gte", "value": 1}]},
            {"ada", "ben"},
        ),
    ],
)
async def test_the_preview_counts_exactly_whom_the_campaign_reaches(env: Env, shoppers, audience, expected):
    by_id = {c.id: name for name, c in shoppers.items()}
    assert await env.campaigns.preview(audience) == len(expected)
    campaign_id = await env.campaigns.create("spring", "announcement", audience, {"message": "Spring is here"}, None)
    await env.campaigns.run_due()
    assert {by_id[c] for c in await recipients(env, campaign_id)} == expected


async def test_a_campaign_reaches_the_customers_the_rules_allow_and_says_why_not_the_others(env: Env, shoppers):
    audience = {"categories_any": ["shoes"]}
    campaign_id = await env.campaigns.create("shoes", "announcement", audience, {"message": "New trainers are in"}, None)
    await env.campaigns.run_due()
    await sent_campaign(env)
    assert [text_of(r) for r in env.sent_to("telegram", shoppers["ada"].address["telegram"])] == ["New trainers are in"]
    assert env.fake.sent("whatsapp") == env.fake.sent("viber") == []
    status = await env.campaigns.status(campaign_id)
    # Ben's WhatsApp window closed 20 days ago and the touchpoint has no template; Cleo never consented;
    # Erik blocked us.
    assert status["by_status"] == {"sent": 1, "skipped": 3}
    reasons = await env.sql("SELECT customer_id, reason FROM push WHERE campaign_id = :c AND status = 'skipped'", c=campaign_id)
    assert {r.customer_id: r.reason for r in reasons} == {
        shoppers["ben"].id: "whatsapp_window_closed",
        shoppers["cleo"].id: "no_consent",
        shoppers["erik"].id: "blocked",
    }


# ----------------------------------------------------------------------------- when it starts, and its progress


async def test_a_scheduled_campaign_does_not_start_before_its_time(env: Env):
    people = [await env.customer(["telegram"]) for _ in range(3)]
    at = now() + timedelta(hours=2)
    later = await env.campaigns.create("later", "announcement", {}, {"message": "Tonight only"}, at)
    assert await env.campaigns.run_due(now()) == 0
    assert await env.campaigns.run_due(at - timedelta(seconds=1)) == 0
    status = await env.campaigns.status(later)
    assert (status["status"], status["targeted"], status["by_status"]) == ("scheduled", 0, {})
    assert await recipients(env, later) == []

    soon = await env.campaigns.create("now", "announcement", {}, {"message": "Right now"}, None)
    assert await env.campaigns.run_due() == 1
    assert (await env.campaigns.status(soon))["status"] == "enqueued"
    assert (await env.campaigns.status(later))["status"] == "scheduled"

    assert await env.campaigns.run_due(at) == 1
    assert await recipients(env, later) == [p.id for p in people]


async def test_progress_while_a_campaign_runs(env: Env):
    people = [await env.customer(["telegram"]) for _ in range(4)]
    people.append(await env.customer(["telegram"], consents={}))
    campaign_id = await env.campaigns.create("progress", "announcement", {}, {"message": "Hello"}, None)
    created = await env.campaigns.status(campaign_id)
    assert (created["name"], created["touchpoint"], created["status"], created["targeted"]) == ("progress", "announcement", "scheduled", 0)

    await env.campaigns.run_due()
    enqueued = await env.campaigns.status(campaign_id)
    assert (enqueued["status"], enqueued["targeted"], enqueued["by_status"]) == ("enqueued", 5, {"queued": 5})

    await env.pushes.dispatch_due(now())
    sending = await env.campaigns.status(campaign_id)
    assert (sending["status"], sending["pending"], sending["by_status"]) == ("enqueued", 4, {"sending": 4, "skipped": 1})
    await env.flush()
    await env.pushes.reconcile(now())
    finished = await env.campaigns.status(campaign_id)
    assert (finished["status"], finished["pending"], finished["by_status"]) == ("finished", 0, {"sent": 4, "skipped": 1})
    assert len(env.fake.sent("telegram")) == 4


async def test_a_cancelled_campaign_sends_nothing(env: Env):
    await env.customer(["telegram"])
    campaign_id = await env.campaigns.create("oops", "announcement", {}, {"message": "Wrong price"}, now() + timedelta(minutes=5))
    assert await env.campaigns.cancel(campaign_id)
    assert await env.campaigns.run_due(now() + timedelta(hours=1)) == 0
    assert (await env.campaigns.status(campaign_id))["status"] == "cancelled"
    assert await recipients(env, campaign_id) == []


async def test_a_campaign_cancelled_after_its_recipients_were_enqueued_sends_to_nobody_not_yet_sent(env: Env):
    people = [await env.customer(["telegram"]) for _ in range(3)]
    campaign_id = await env.campaigns.create("oops", "announcement", {}, {"message": "Wrong price"}, None)
    await env.campaigns.run_due()
    assert await recipients(env, campaign_id) == [p.id for p in people]
    assert await env.campaigns.cancel(campaign_id)
    await env.pushes.dispatch_due(now())
    await env.flush()
    assert env.fake.sent("telegram") == []
    status = await env.campaigns.status(campaign_id)
    assert (status["status"], status["pending"], status["by_status"]) == ("cancelled", 0, {"skipped": 3})
    rows = await env.sql("SELECT DISTINCT reason FROM push WHERE campaign_id = :c", c=campaign_id)
    assert [r.reason for r in rows] == ["campaign_cancelled"]
    assert not await env.campaigns.cancel(campaign_id)  # once


async def test_a_cancel_withdraws_what_still_waits_in_the_outbox_and_skips_deferred_pushes_at_once(env: Env):
    people = [await env.customer(["telegram"]) for _ in range(3)]
    campaign_id = await env.campaigns.create("oops", "announcement", {}, {"message": "Wrong price"}, None)
    await env.campaigns.run_due()
    await env.pushes.dispatch_due(now())  # decided: all three wait in the outbox for the rate limit
    # One waits for the morning instead (deferred: no outbox message yet).
    await env.execute("DELETE FROM outbox WHERE id = (SELECT outbox_id FROM push WHERE customer_id = :c)", c=people[2].id)
    await env.execute("UPDATE push SET status = 'deferred', outbox_id = NULL, sent_at = NULL, due_at = :later"
                      " WHERE customer_id = :c", later=now() + timedelta(hours=8), c=people[2].id)
    await env.execute("UPDATE outbox SET status = 'sent' WHERE id = (SELECT outbox_id FROM push WHERE customer_id = :c)",
                      c=people[0].id)  # one already left
    assert await env.campaigns.cancel(campaign_id)

    status = await env.campaigns.status(campaign_id)
    assert (status["status"], status["by_status"]) == ("cancelled", {"sending": 1, "skipped": 2})
    await env.flush()
    assert env.fake.sent("telegram") == []  # nothing more leaves
    await env.pushes.reconcile(now())
    status = await env.campaigns.status(campaign_id)
    assert (status["pending"], status["by_status"]) == (0, {"sent": 1, "skipped": 2})
    rows = await env.sql("SELECT customer_id, reason FROM push WHERE status = 'skipped' ORDER BY customer_id")
    assert [(r.customer_id, r.reason) for r in rows] == [(people[1].id, "campaign_cancelled"), (people[2].id, "campaign_cancelled")]


async def test_a_message_waiting_for_the_chats_rate_limit_is_not_sent_after_a_cancel(env: Env):
    # Telegram allows one message a second per chat: the campaign's waits behind an earlier one.
    bea = await env.customer(["telegram"])
    await env.pushes.submit("announcement", [bea.id], {"message": "Welcome back"}, now=now())
    campaign_id = await env.campaigns.create("oops", "announcement", {}, {"message": "Wrong price"}, None)
    await env.campaigns.run_due()
    await env.pushes.dispatch_due(now())
    sending = asyncio.create_task(env.flush())
    await env.fake.wait_for(1, "telegram")  # the first left; the campaign's waits for its slot
    assert await env.campaigns.cancel(campaign_id)
    await sending
    assert [text_of(m) for m in env.sent_to("telegram", bea.address["telegram"])] == ["Welcome back"]
    status = await env.campaigns.status(campaign_id)
    assert (status["status"], status["pending"], status["by_status"]) == ("cancelled", 0, {"skipped": 1})


async def test_a_message_on_the_wire_when_its_campaign_is_cancelled_is_recorded_as_sent(env: Env, monkeypatch):
    # The sender re-checks each waiting message, but one already handed to the platform goes.
    anna = await env.customer(["telegram"])
    campaign_id = await env.campaigns.create("oops", "announcement", {}, {"message": "Wrong price"}, None)
    await env.campaigns.run_due()
    await env.pushes.dispatch_due(now())
    adapter = env.pipeline.adapters["telegram"]
    original = adapter.send

    async def send_while_cancelled(*args: Any, **kwargs: Any) -> Any:
        assert await env.campaigns.cancel(campaign_id)  # lands while the request is in flight
        return await original(*args, **kwargs)

    monkeypatch.setattr(adapter, "send", send_while_cancelled)
    await env.flush()
    assert len(env.sent_to("telegram", anna.address["telegram"])) == 1
    await env.pushes.reconcile(now())
    status = await env.campaigns.status(campaign_id)
    assert (status["status"], status["by_status"]) == ("cancelled", {"sent": 1})
    [row] = await env.sql("SELECT status FROM outbox")
    assert row.status == "sent"


# ----------------------------------------------------------------------------- a restart in the middle


class PowerCut(Exception):
    pass


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("moment", ["before_the_chunk", "before_the_cursor"])
async def test_a_restart_mid_campaign_loses_nobody_and_messages_nobody_twice(env: Env, monkeypatch, moment):
    """The process dies while enqueueing the third chunk of three; a new process finishes the campaign.

    ``before_the_cursor``: the chunk's pushes were written, the cursor was not moved past them.
    """
    monkeypatch.setattr(bot.campaigns, "CHUNK", 3)
    audience_ = [await env.customer(["telegram"], categories=["shoes"]) for _ in range(8)]
    await env.customer(["telegram"], categories=["books"])  # not in the audience
    campaign_id = await env.campaigns.create("restart", "announcement", {"categories_any": ["shoes"]}, {"message": "Shoe sale"}, None)

    real_submit = env.pushes.submit
    calls = 0

    async def dying_submit(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3 and moment == "before_the_chunk":
            raise PowerCut
        made = await real_submit(*args, **kwargs)
        if calls == 2 and moment == "before_the_cursor":
            raise PowerCut
        return made

    monkeypatch.setattr(env.pushes, "submit", dying_submit)
    with pytest.raises(PowerCut):
        await env.campaigns.run_due()
    interrupted = await env.campaigns.status(campaign_id)
    assert interrupted["status"] == "running"
    assert len(await recipients(env, campaign_id)) == 6

    # A new process on the same database: its own connection, state backend and services.
    db = Database(env.url)
    await db.start()
    try:
        pushes = PushService(
            db, env.config, I18n.load(), public_url="https://touchpoint.example",
            enabled_channels=list(env.pipeline.adapters), wake_sender=env.pipeline.wake_sender,
        )
        campaigns = Campaigns(db, pushes, MemoryBackend().locks)
        assert await campaigns.run_due() == 1
        assert await recipients(env, campaign_id) == [c.id for c in audience_]
        done = await campaigns.status(campaign_id)
        assert (done["status"], done["targeted"], done["by_status"]) == ("enqueued", 8, {"queued": 8})
        assert await campaigns.run_due() == 0  # finished: a further restart does nothing

        await pushes.dispatch_due(now())
        await env.flush()
        await pushes.reconcile(now())
    finally:
        await db.close()
    per_chat = {c.address["telegram"]: len(env.sent_to("telegram", c.address["telegram"])) for c in audience_}
    assert set(per_chat.values()) == {1}
    assert len(env.fake.sent("telegram")) == 8
    assert (await env.campaigns.status(campaign_id))["by_status"] == {"sent": 8}
