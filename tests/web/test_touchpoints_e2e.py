"""Proactive touchpoints end to end: the shop's API calls in, messages out on the fake platforms.

Customers sign up in the chat (signed webhooks), the shop knows them by its
own id, and every answer is read off the wire of the fake platform APIs or
from ``GET /api/v1/pushes/{id}``. Quiet hours are switched off here (the
tests run at any time of day); tests/test_push_service.py covers them with a
fixed clock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sqlalchemy import text

from bot.appkeys import CONFIG, DB
from bot.config import QuietHours
from bot.i18n import I18n
from tests.conftest import API_KEY, Touchpoint
from tests.web.chat import PlatformUser
from tests.web.test_signup_e2e import eventually, sign_up

I18N = I18n.load()
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SNEAKER = {"id": "sku-42", "name": "Trail Runner 2", "category": "shoes", "url": "https://shop.example/p/sku-42", "price": 89.9, "in_stock": False}
MITTE = {"id": "berlin-mitte", "name": "Berlin Mitte", "address": "Rosenthaler Str. 1", "latitude": 52.5290, "longitude": 13.4010, "radius_m": 300}


@pytest.fixture
def tp(touchpoint: Touchpoint) -> Touchpoint:
    touchpoint.app[CONFIG].policy.quiet_hours = QuietHours(start="00:00", end="00:00")
    return touchpoint


async def api(tp: Touchpoint, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    async with tp.session.request(method, f"{tp.url}{path}", json=body, headers={**AUTH, **headers}) as response:
        data = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, data


async def customer(tp: Touchpoint, platform: str, external_id: str, *, marketing: bool = True, address: str | None = None) -> PlatformUser:
    """A customer who signed up in the chat (marketing and location as asked) and whom the shop knows as ``external_id``."""
    user = PlatformUser(tp, platform, **({"address": address} if address else {}))
    answers = {p.id: (marketing if p.id == "marketing" else p.id in ("location", "surveys")) for p in tp.app[CONFIG].consent_purposes}
    await sign_up(tp, user, answers)
    await tp.idle()
    [row] = await tp.query("SELECT customer_id FROM channel_identity WHERE channel = :c AND address = :a", c=platform, a=user.address)

    def link(conn: Any) -> None:
        conn.execute(text("UPDATE customer SET external_id = :e WHERE id = :i"), {"e": external_id, "i": row.customer_id})

    await tp.app[DB].write(link)
    return user


async def push_status(tp: Touchpoint, push_id: int) -> dict[str, Any]:
    status, body = await api(tp, "GET", f"/api/v1/pushes/{push_id}")
    assert status == 200, body
    return body


async def settled(tp: Touchpoint, push_id: int, *statuses: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = await push_status(tp, push_id)
        return body if body["status"] in statuses else None

    return await eventually(check, timeout=10)


async def catalog(tp: Touchpoint) -> None:
    status, body = await api(tp, "POST", "/api/v1/catalog/products", {"items": [SNEAKER]})
    assert status == 200, body
    status, body = await api(tp, "POST", "/api/v1/catalog/stores", {"items": [MITTE]})
    assert status == 200, body


def sent_to(tp: Touchpoint, platform: str, address: str) -> list[Any]:
    from tests.web.chat import recipient

    return [r for r in tp.fake.sent(platform) if recipient(r) == address]


# --------------------------------------------------------------------------- back in stock


async def test_back_in_stock_reaches_the_subscriber_with_a_tracked_link_and_counts_the_conversion(tp):
    alice = await customer(tp, "telegram", "c-alice")
    bob = await customer(tp, "viber", "c-bob", marketing=False)
    await catalog(tp)
    for who in ("c-alice", "c-bob"):
        status, body = await api(tp, "POST", "/api/v1/events", {"type": "product.subscribed", "customer_id": who, "product_id": "sku-42"})
        assert status == 202, body
    before = len(sent_to(tp, "telegram", alice.address))

    status, body = await api(tp, "POST", "/api/v1/events", {"type": "product.back_in_stock", "product_id": "sku-42"})
    assert status == 202, body
    pushes = {p["customer_id"]: p["push_id"] for p in body["pushes"]}
    assert len(pushes) == 2

    alice_push = await settled(tp, pushes["c-alice"], "sent")
    assert alice_push["channel"] == "telegram"
    assert [h["status"] for h in alice_push["history"]] == ["queued", "sending", "sent"]
    [message] = sent_to(tp, "telegram", alice.address)[before:]
    assert "Trail Runner 2" in message.json["text"] and "back in stock" in message.json["text"]
    assert "https://shop.example/p/sku-42" not in message.json["text"]  # the link is tracked
    link = message.json["text"].split(f"{tp.settings.public_url}/l/")[1].split()[0]

    # Bob said no to marketing: he gets nothing, and the shop can read why.
    bob_push = await settled(tp, pushes["c-bob"], "skipped")
    assert bob_push["reason"] == "no_consent"
    assert not [r for r in sent_to(tp, "viber", bob.address) if "Trail Runner" in str(r.json)]

    async with tp.session.get(f"{tp.url}/l/{link}", allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Location"] == "https://shop.example/p/sku-42"
    status, body = await api(tp, "POST", "/api/v1/events", {"type": "order.placed", "customer_id": "c-alice", "order_id": "o-1", "total": 89.9})
    assert status == 202 and body["converted_push_id"] == alice_push["id"], body

    status, stats = await api(tp, "GET", "/api/v1/stats?touchpoint=back_in_stock")
    assert status == 200
    assert (stats["targeted"], stats["sent"], stats["clicked"], stats["converted"]) == (2, 1, 1, 1)
    assert stats["skipped_by_reason"] == {"no_consent": 1}

    # The same product alert goes out at most once; Bob's, which never reached him, is decided again.
    status, body = await api(tp, "POST", "/api/v1/events", {"type": "product.back_in_stock", "product_id": "sku-42"})
    assert {p["customer_id"]: p["duplicate"] for p in body["pushes"]} == {"c-alice": True, "c-bob": False}
    await tp.idle()
    assert len(sent_to(tp, "telegram", alice.address)) == before + 1
    bob_push = await settled(tp, pushes["c-bob"], "skipped")
    assert [h["status"] for h in bob_push["history"]] == ["queued", "skipped", "queued", "skipped"]
    status, stats = await api(tp, "GET", "/api/v1/stats?touchpoint=back_in_stock")
    assert (stats["targeted"], stats["skipped_by_reason"]) == (2, {"no_consent": 1})


async def test_unknown_event_types_and_references_are_rejected_with_the_field_named(tp):
    status, body = await api(tp, "POST", "/api/v1/events", {"type": "product.exploded", "product_id": "x"})
    assert status == 422 and "product.back_in_stock" in str(body)
    status, body = await api(tp, "POST", "/api/v1/events", {"type": "product.back_in_stock", "product_id": "nope"})
    assert status == 422 and body["fields"][0]["field"] == "product_id"
    status, body = await api(tp, "POST", "/api/v1/events", {"type": "cart.updated", "customer_id": "c-x", "items": [{"product_id": "a", "quantity": 0}]})
    assert status == 422 and any(f["field"].endswith("items.0.quantity") for f in body["fields"])
    assert (await tp.query("SELECT count(*) AS n FROM push"))[0].n == 0


# --------------------------------------------------------------------------- cart near a store


async def test_cart_offer_inside_a_stores_radius_once_per_cooldown(tp):
    alice = await customer(tp, "telegram", "c-alice")
    await catalog(tp)
    status, body = await api(tp, "POST", "/api/v1/events", {"type": "cart.updated", "customer_id": "c-alice", "items": [{"product_id": "sku-42", "quantity": 1}]})
    assert status == 202 and body["pushes"] == [] and body["reason"] == "no_location"

    far = {"type": "customer.location", "customer_id": "c-alice", "latitude": 52.5200, "longitude": 13.3000}  # ~7 km away
    status, body = await api(tp, "POST", "/api/v1/events", far)
    assert body["pushes"] == [] and body["reason"] == "not_near_a_store"

    before = len(sent_to(tp, "telegram", alice.address))
    near = {**far, "latitude": 52.5291, "longitude": 13.4012}  # ~20 m from the store
    status, body = await api(tp, "POST", "/api/v1/events", near)
    assert status == 202 and len(body["pushes"]) == 1, body
    await settled(tp, body["pushes"][0]["push_id"], "sent")
    text_call, pin = sent_to(tp, "telegram", alice.address)[before:]
    assert "Berlin Mitte" in text_call.json["text"] and "Rosenthaler Str. 1" in text_call.json["text"]
    assert pin.method == "sendLocation" and pin.json["latitude"] == MITTE["latitude"]
    [code] = await tp.query("SELECT code, percent, source FROM discount_code WHERE source = 'cart_offer'")
    assert code.code in text_call.json["text"] and code.percent == 10

    status, body = await api(tp, "POST", "/api/v1/events", near)
    assert body["pushes"] == [] and body["reason"] == "store_offer_cooldown"


# --------------------------------------------------------------------------- WhatsApp's window, receipts


async def test_whatsapp_outside_the_window_gets_the_template_and_receipts_update_the_push(tp):
    wa = await customer(tp, "whatsapp", "c-wa")
    await catalog(tp)
    await api(tp, "POST", "/api/v1/events", {"type": "product.subscribed", "customer_id": "c-wa", "product_id": "sku-42"})

    def age(conn: Any) -> None:
        conn.execute(text("UPDATE conversation SET last_inbound_at = '2020-01-01 00:00:00.000000' WHERE channel = 'whatsapp'"))

    await tp.app[DB].write(age)
    before = len(sent_to(tp, "whatsapp", wa.address))
    status, body = await api(tp, "POST", "/api/v1/events", {"type": "product.back_in_stock", "product_id": "sku-42"})
    push = await settled(tp, body["pushes"][0]["push_id"], "sent")
    assert "template" in push["history"][1]["detail"]
    [call] = sent_to(tp, "whatsapp", wa.address)[before:]
    assert call.json["type"] == "template" and call.json["template"]["name"] == "back_in_stock"

    [row] = await tp.query("SELECT platform_message_id FROM outbox WHERE id = (SELECT outbox_id FROM push WHERE id = :p)", p=push["id"])
    for state in ("delivered", "read"):
        await wa.post(receipt(wa, row.platform_message_id, state))
        await settled(tp, push["id"], state)


def receipt(user: PlatformUser, wamid: str, state: str) -> dict[str, Any]:
    body = user.undeliverable_status_body(wamid)
    status = body["entry"][0]["changes"][0]["value"]["statuses"][0]
    status["status"] = state
    status["id"] = wamid
    status.pop("errors", None)
    status["timestamp"] = str(int(time.time()))
    return body


# --------------------------------------------------------------------------- dry run


async def test_dry_run_explains_without_sending_or_counting(tp):
    await customer(tp, "telegram", "c-alice")
    await customer(tp, "viber", "c-bob", marketing=False)
    await catalog(tp)
    status, body = await api(tp, "POST", "/api/v1/touchpoints/dry-run", {"customer_id": "c-alice", "push": {"touchpoint": "announcement"}})
    assert status == 200 and body["would_send"] and body["channel"] == "telegram" and body["form"] == "text", body
    for empty in (None, "", "  "):  # as the push itself would be: nothing worth a message
        push = {"touchpoint": "announcement", "variables": {"message": empty}}
        status, body = await api(tp, "POST", "/api/v1/touchpoints/dry-run", {"customer_id": "c-alice", "push": push})
        assert status == 200 and (body["would_send"], body["reason"]) == (False, "empty_message"), body
    status, body = await api(tp, "POST", "/api/v1/touchpoints/dry-run", {"customer_id": "c-bob", "push": {"touchpoint": "announcement"}})
    assert not body["would_send"] and body["reason"] == "no_consent"
    assert body["held_back"] == [{"channel": "viber", "reason": "no_consent"}]
    event = {"type": "product.back_in_stock", "product_id": "sku-42"}
    status, body = await api(tp, "POST", "/api/v1/touchpoints/dry-run", {"customer_id": "c-alice", "event": event})
    assert status == 200 and not body["would_send"] and body["reason"] == "not_interested_in_product"
    assert (await tp.query("SELECT count(*) AS n FROM push"))[0].n == 0


async def test_a_location_shared_in_the_chat_with_consent_brings_the_store_offer(tp):
    alice = await customer(tp, "telegram", "c-alice")  # location consent given at sign-up
    await catalog(tp)
    await api(tp, "POST", "/api/v1/events", {"type": "cart.updated", "customer_id": "c-alice", "items": [{"product_id": "sku-42"}]})
    body = alice._telegram("location.json")
    body["update_id"] = 930_000_001
    message = body["message"]
    message.update(message_id=990_001, date=int(time.time()), location={"latitude": 52.5291, "longitude": 13.4012})
    message.update(alice._telegram_people())
    replies = await alice.send(body)
    assert replies[0].text == I18N.text("en", "engine.location_thanks")

    async def offer() -> Any:
        calls = sent_to(tp, "telegram", alice.address)
        return [c for c in calls if c.method == "sendLocation"]

    [pin] = await eventually(offer)
    assert pin.json["latitude"] == MITTE["latitude"]
    [row] = await tp.query("SELECT source FROM customer_location")
    assert row.source == "chat"


@pytest.mark.parametrize("platform", ["telegram", "whatsapp"])
async def test_opening_an_account_link_binds_the_chat_to_the_shops_customer(tp, platform):
    status, _ = await api(tp, "POST", "/api/v1/customers", {"external_id": "c-anna", "first_name": "Anna", "locale": "de"})
    assert status == 201
    status, link = await api(tp, "POST", "/api/v1/customers/c-anna/link-tokens")
    assert status == 201
    user = PlatformUser(tp, platform, address="5550100777" if platform == "telegram" else "15550100777", language_code="de")
    if platform == "telegram":
        await user.start(payload=link["token"])
    else:
        await user.say(f"Hallo! Bitte verknüpfen Sie mein Kundenkonto. Code: {link['token']}")
    await user.press(I18N.text("de", "signup.continue"))
    await user.press(I18N.text("de", "buttons.yes"))  # marketing
    status, profile = await api(tp, "GET", "/api/v1/customers/c-anna")
    assert status == 200
    assert {(i["channel"], i["address"]) for i in profile["identities"]} >= {(platform, user.address)}
    assert any(c["purpose"] == "marketing" and c["channel"] == platform and c["granted"] for c in profile["consents"])
    # The token works once.
    [row] = await tp.query("SELECT used_at FROM account_link")
    assert row.used_at is not None
    # The chat's own customer row, emptied by the merge, is nobody's audience.
    status, preview = await api(tp, "POST", "/api/v1/campaigns/preview", {"audience": {}})
    assert (status, preview) == (200, {"count": 1})


async def test_dry_run_says_when_the_same_alert_was_already_sent(tp):
    await customer(tp, "telegram", "c-alice")
    await catalog(tp)
    await api(tp, "POST", "/api/v1/events", {"type": "product.subscribed", "customer_id": "c-alice", "product_id": "sku-42"})
    event = {"type": "product.back_in_stock", "product_id": "sku-42"}
    _, before = await api(tp, "POST", "/api/v1/touchpoints/dry-run", {"customer_id": "c-alice", "event": event})
    assert before["would_send"] and before["touchpoint"] == "back_in_stock"
    await api(tp, "POST", "/api/v1/events", event)
    _, after = await api(tp, "POST", "/api/v1/touchpoints/dry-run", {"customer_id": "c-alice", "event": event})
    assert not after["would_send"] and after["reason"] == "already_sent"


async def test_dry_run_knows_an_orders_survey_goes_once_and_refuses_another_customers_event(tp):
    await customer(tp, "telegram", "c-alice")
    delivered = {"type": "order.delivered", "customer_id": "c-alice", "order_id": "o-7"}
    _, before = await api(tp, "POST", "/api/v1/touchpoints/dry-run", {"customer_id": "c-alice", "event": delivered})
    assert before["touchpoint"] == "order_feedback" and before["would_send"], before
    status, body = await api(tp, "POST", "/api/v1/events", delivered)
    assert status == 202 and len(body["pushes"]) == 1, body
    _, after = await api(tp, "POST", "/api/v1/touchpoints/dry-run", {"customer_id": "c-alice", "event": delivered})
    assert (after["would_send"], after["reason"]) == (False, "already_sent")

    await customer(tp, "viber", "c-bob")
    status, body = await api(tp, "POST", "/api/v1/touchpoints/dry-run", {"customer_id": "c-bob", "event": delivered})
    assert status == 422 and body["fields"][0]["field"] == "event.customer_id" and "c-alice" in body["fields"][0]["message"], body


async def test_a_cart_with_a_product_the_catalog_does_not_hold_is_refused_naming_the_item(tp):
    await customer(tp, "telegram", "c-alice")
    await catalog(tp)
    cart = {"type": "cart.updated", "customer_id": "c-alice", "items": [{"product_id": "sku-42"}, {"product_id": "sku-404"}]}
    status, body = await api(tp, "POST", "/api/v1/events", cart)
    assert status == 422 and body["fields"][0]["field"] == "items.1.product_id" and "sku-404" in body["error"], body
    status, body = await api(tp, "POST", "/api/v1/touchpoints/dry-run", {"customer_id": "c-alice", "event": cart})
    assert status == 422 and body["fields"][0]["field"] == "event.items.1.product_id", body
    assert await tp.query("SELECT customer_id FROM cart") == []


async def test_an_order_reported_for_another_customer_triggers_nothing_for_either(tp):
    alice = await customer(tp, "telegram", "c-alice")
    bob = await customer(tp, "viber", "c-bob")
    status, body = await api(tp, "POST", "/api/v1/events", {"type": "order.placed", "customer_id": "c-alice", "order_id": "o-9", "total": 10})
    assert status == 202, body
    before_bob = len(sent_to(tp, "viber", bob.address))
    for kind in ("order.delivered", "order.placed"):
        status, body = await api(tp, "POST", "/api/v1/events", {"type": kind, "customer_id": "c-bob", "order_id": "o-9"})
        assert status == 422 and body["fields"][0]["field"] == "order_id" and "another customer" in body["error"], body
    for kind in ("order.delivered", "order.placed"):
        wrong = {"type": kind, "customer_id": "c-bob", "order_id": "o-9"}
        status, body = await api(tp, "POST", "/api/v1/touchpoints/dry-run", {"customer_id": "c-bob", "event": wrong})
        assert status == 422 and body["fields"][0]["field"] == "event.order_id", body

    # The owner's survey still comes, once.
    status, body = await api(tp, "POST", "/api/v1/events", {"type": "order.delivered", "customer_id": "c-alice", "order_id": "o-9"})
    assert status == 202 and len(body["pushes"]) == 1, body
    await settled(tp, body["pushes"][0]["push_id"], "sent")

    async def survey() -> Any:
        return [r for r in sent_to(tp, "telegram", alice.address) if "o-9" in str(r.json)]

    assert await eventually(survey)
    await tp.idle()
    assert len(sent_to(tp, "viber", bob.address)) == before_bob

    # Two deliveries of one new order for two customers at once: exactly one is accepted.
    for n in range(5):
        answers = await asyncio.gather(*(
            api(tp, "POST", "/api/v1/events", {"type": "order.delivered", "customer_id": who, "order_id": f"race-{n}"})
            for who in ("c-alice", "c-bob")
        ))
        assert sorted(status for status, _ in answers) == [202, 422], answers
