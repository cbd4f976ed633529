"""Pushes at their edges, with a fixed clock (see tests/test_push_service.py for the set-up):
which links are tracked, a message cut off halfway, who counts as clicking, two deciders
at once, and audience conditions that must not take True for 1.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.db import Database
from bot.i18n import I18n
from bot.pushes import PushService
from bot.state.memory import MemoryBackend

from tests.test_push_service import (  # noqa: F401 - fixtures
    EXTRA,
    NOON,
    Env,
    EnvFactory,
    database,
    make_env,
    migrated_sqlite,
    text_of,
    tracked_token,
)


@pytest.fixture
async def env(make_env: EnvFactory) -> Env:  # noqa: F811 - the fixture imported above
    return await make_env(EXTRA)


async def test_only_the_shops_links_are_tracked_not_text_that_looks_like_a_link(env: Env):
    # A customer named like a URL must not turn into a redirect on the shop's own domain.
    mallory = await env.customer(["telegram"], first_name="https://evil.example/login")
    await env.submit("back_in_stock", [mallory], NOON, product="https://evil.example/x", url="https://shop.example/p/sku-42")
    await env.step(NOON)
    [message] = env.sent_to("telegram", mallory.address["telegram"])
    assert "https://evil.example/login" in text_of(message) and "https://evil.example/x" in text_of(message)
    assert "https://shop.example/p/sku-42" not in text_of(message)
    links = await env.sql("SELECT url FROM link")
    assert [link.url for link in links] == ["https://shop.example/p/sku-42"]
    tracked_token(message)  # exactly one tracked link in the text


async def test_a_message_cut_off_after_its_first_part_does_not_start_again_on_another_channel(env: Env):
    nina = await env.customer(["telegram", "viber"], preferred="telegram")
    long_text = " ".join(["Autumn collection"] * 400)  # about 7,000 characters: two Telegram messages
    env.fake.fail_next("telegram", "blocked", after=1)  # she blocks the bot after the first part
    [push_id] = await env.submit("announcement", [nina], NOON, message=long_text)
    await env.step(NOON)

    assert len(env.sent_to("telegram", nina.address["telegram"])) == 1
    assert env.sent_to("viber", nina.address["viber"]) == []  # the whole text again would repeat the first half
    push = await env.push(push_id)
    assert (push.status, push.row.reason, push.row.channel) == ("sent", "partly_delivered", "telegram")
    await env.step(NOON.replace(hour=18))  # and not later either, when receipts would have timed out
    assert env.sent_to("viber", nina.address["viber"]) == []


async def test_a_link_preview_fetch_or_a_head_request_is_not_a_click(env: Env):
    olga = await env.customer(["telegram"])
    [push_id] = await env.submit("back_in_stock", [olga], NOON, product="Trail Runner 2", url="https://shop.example/p/sku-42")
    await env.step(NOON)
    [message] = env.sent_to("telegram", olga.address["telegram"])
    link = f"{env.tp.url}/l/{tracked_token(message)}"

    async with env.tp.session.head(link, allow_redirects=False) as response:
        assert response.status == 405
    preview = {"User-Agent": "TelegramBot (like TwitterBot)"}
    async with env.tp.session.get(link, headers=preview, allow_redirects=False) as response:
        assert (response.status, response.headers["Location"]) == (302, "https://shop.example/p/sku-42")
    assert (await env.push(push_id)).row.clicked_at is None

    browser = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"}
    async with env.tp.session.get(link, headers=browser, allow_redirects=False) as response:
        assert response.status == 302
    assert (await env.push(push_id)).row.clicked_at is not None


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
async def test_two_processes_deciding_at_once_queue_each_message_once(env: Env):
    """Two processes on one database, sharing the state backend's lock (Redis in production)."""
    people = [await env.customer(["telegram"]) for _ in range(60)]
    await env.submit("announcement", people, NOON, message="Winter sale")
    shared = MemoryBackend().locks
    env.pushes.locks = shared
    other_db = Database(env.url)
    await other_db.start()
    try:
        other = PushService(
            other_db, env.config, I18n.load(), public_url="https://touchpoint.example",
            enabled_channels=list(env.pipeline.adapters), wake_sender=env.pipeline.wake_sender, locks=shared,
        )
        await asyncio.gather(env.pushes.dispatch_due(NOON), other.dispatch_due(NOON), env.pushes.dispatch_due(NOON))
    finally:
        await other_db.close()
    rows = await env.sql("SELECT address, count(*) AS n FROM outbox GROUP BY address")
    assert len(rows) == 60 and {row.n for row in rows} == {1}
    await env.flush()
    for person in people:
        assert [text_of(r) for r in env.sent_to("telegram", person.address["telegram"])] == ["Winter sale"]


async def test_an_attribute_condition_does_not_take_true_for_one(env: Env):
    await env.customer(["telegram"], attributes={"vip": True, "orders": 1})
    await env.customer(["telegram"], attributes={"vip": 1, "orders": True})
    assert await env.campaigns.preview({"attributes": [{"name": "vip", "op": "eq", "value": True}]}) == 1
    assert await env.campaigns.preview({"attributes": [{"name": "vip", "op": "eq", "value": 1}]}) == 1
    assert await env.campaigns.preview({"attributes": [{"name": "orders", "op": "in", "value": [1, 2]}]}) == 1
    assert await env.campaigns.preview({"attributes": [{"name": "vip", "op": "ne", "value": True}]}) == 1


async def test_an_alert_that_was_skipped_goes_out_when_it_comes_again_and_one_that_went_out_does_not(env: Env):
    # She had not agreed to offers when the product first came back; later she did.
    petra = await env.customer(["telegram"], consents={})
    alert = {"product": "Trail Runner 2", "url": "https://shop.example/p/sku-42"}
    [(first, created)] = await env.pushes.submit("back_in_stock", [petra.id], alert, dedup_key="product:sku-42", now=NOON)
    await env.step(NOON)
    assert created and ((await env.push(first)).status, (await env.push(first)).row.reason) == ("skipped", "no_consent")

    await env.execute(
        "INSERT INTO consent (customer_id, purpose, channel, granted, source, wording_version, created_at)"
        " VALUES (:c, 'marketing', 'telegram', 1, 'chat', '1', :at)",
        c=petra.id, at=NOON,
    )
    later = NOON.replace(hour=14)
    [(again, created)] = await env.pushes.submit("back_in_stock", [petra.id], alert, dedup_key="product:sku-42", now=later)
    assert (again, created) == (first, True)  # the same push, queued again: its history tells both stories
    await env.step(later)
    assert len(env.sent_to("telegram", petra.address["telegram"])) == 1
    push = await env.push(first)
    assert push.status == "sent"
    assert [h[:2] for h in push.history][:3] == [("queued", None), ("skipped", "no_consent"), ("queued", None)]

    [(third, created)] = await env.pushes.submit("back_in_stock", [petra.id], alert, dedup_key="product:sku-42", now=later)
    assert (third, created) == (first, False)  # it reached her: never twice
    await env.step(later)
    assert len(env.sent_to("telegram", petra.address["telegram"])) == 1


async def test_a_push_moving_to_its_next_channel_does_not_count_against_its_own_cap(env: Env):
    # One offer today already; the second fails on Telegram and must still reach Viber (2 a day).
    rosa = await env.customer(["telegram", "viber"], preferred="telegram")
    await env.submit("announcement", [rosa], NOON.replace(hour=10), message="first")
    await env.step(NOON.replace(hour=10))
    env.fake.fail_next("telegram", "blocked")
    [second] = await env.submit("announcement", [rosa], NOON, message="second")
    await env.step(NOON)
    push = await env.push(second)
    assert (push.status, push.row.channel) == ("sent", "viber"), push.history
    assert [text_of(m) for m in env.sent_to("viber", rosa.address["viber"])] == ["second"]


async def test_yes_and_no_variables_read_as_words_in_the_customers_language(env: Env):
    jonas = await env.customer(["telegram"], locale="de")
    await env.pushes.submit("announcement", [jonas.id], {"message": True}, now=NOON)
    await env.pushes.submit("announcement", [jonas.id], {"message": False}, now=NOON)
    await env.step(NOON)
    texts = [text_of(m) for m in env.sent_to("telegram", jonas.address["telegram"])]
    assert sorted(texts) == ["Ja", "Nein"]


async def test_a_message_that_comes_out_empty_is_skipped_and_does_not_use_up_the_cap(env: Env):
    ida = await env.customer(["telegram"])
    [(empty, _)] = await env.pushes.submit("announcement", [ida.id], {"message": None}, now=NOON)
    [(blank, _)] = await env.pushes.submit("announcement", [ida.id], {"message": ""}, now=NOON)
    await env.step(NOON)
    for push_id in (empty, blank):
        push = await env.push(push_id)
        assert (push.status, push.row.reason) == ("skipped", "empty_message")
    assert env.sent_to("telegram", ida.address["telegram"]) == []
    for text in ("one", "two"):  # today's two marketing messages are still free
        await env.pushes.submit("announcement", [ida.id], {"message": text}, now=NOON)
    await env.step(NOON)
    assert sorted(text_of(m) for m in env.sent_to("telegram", ida.address["telegram"])) == ["one", "two"]
