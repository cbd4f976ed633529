"""E-mail and SMS on the push path, end to end: the shop upserts a customer and pushes; the mail
arrives at a local SMTP server (aiosmtpd), the SMS at the fake gateway.

The app runs with its workers, as ``serve`` does. Quiet hours are switched off
(the tests run at any hour); tests/test_push_service.py covers them with a fixed clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest

from bot.appkeys import CONFIG
from bot.config import QuietHours
from integrations.email import address_from_token
from integrations.fakes import FakePlatforms
from tests.conftest import (
    API_KEY,
    Touchpoint,
    make_settings,
    start_touchpoint,
    stop_touchpoint,
)
from tests.integrations.test_email import Mailbox, parts, smtp_server
from tests.web.test_signup_e2e import eventually

AUTH = {"Authorization": f"Bearer {API_KEY}"}
UNSUBSCRIBE_SECRET = "push-e2e-unsubscribe-secret"
SMS_TOKEN = "a2V5OnNlY3JldA=="  # base64 of "key:secret", as the gateway's Basic auth wants it
PRODUCT = {"product": "Trail Runner 2", "url": "https://shop.example/p/sku-42"}


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
async def tp(tmp_path, fake_platforms: FakePlatforms, mailbox: Mailbox) -> AsyncIterator[Touchpoint]:
    async with smtp_server(mailbox) as port:
        settings = make_settings(
            fake_platforms.base_url,
            f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}",
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_from="shop@shop.example",
            smtp_from_name="Example Shop",
            smtp_starttls=False,
            email_unsubscribe_secret=UNSUBSCRIBE_SECRET,
            sms_gateway_url=fake_platforms.sms_gateway_url,
            sms_gateway_token=SMS_TOKEN,
            sms_from="ExampleShop",
        )
        touchpoint = await start_touchpoint(settings, fake_platforms)
        touchpoint.app[CONFIG].policy.quiet_hours = QuietHours(start="00:00", end="00:00")
        try:
            yield touchpoint
        finally:
            await stop_touchpoint(touchpoint)


async def api(tp: Touchpoint, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with tp.session.request(method, f"{tp.url}{path}", json=body, headers=AUTH) as response:
        return response.status, await response.json()


async def upsert(tp: Touchpoint, external_id: str, **fields: Any) -> dict[str, Any]:
    status, body = await api(tp, "POST", "/api/v1/customers", {"external_id": external_id, **fields})
    assert status in (200, 201), body
    return body


async def push(tp: Touchpoint, external_id: str, touchpoint: str = "back_in_stock", **variables: Any) -> int:
    status, body = await api(
        tp, "POST", "/api/v1/pushes", {"touchpoint": touchpoint, "customer_ids": [external_id], "variables": variables}
    )
    assert status == 202, body
    [push_id] = body["push_ids"]
    return push_id


async def settled(tp: Touchpoint, push_id: int, *statuses: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status, body = await api(tp, "GET", f"/api/v1/pushes/{push_id}")
        assert status == 200, body
        return body if body["status"] in statuses else None

    return await eventually(check, timeout=10)


def consent(channel: str, purpose: str = "marketing") -> dict[str, Any]:
    return {"purpose": purpose, "channel": channel, "granted": True}


async def test_a_push_by_email_has_a_localized_subject_both_parts_and_list_unsubscribe(tp: Touchpoint, mailbox: Mailbox):
    await upsert(
        tp, "c-greta", first_name="Greta", email="greta@example.com", phone="+4915550100123", locale="de",
        preferred_channel="email", consents=[consent("email")],
    )
    push_id = await push(tp, "c-greta", **PRODUCT)
    sent = await settled(tp, push_id, "sent")
    assert sent["channel"] == "email"
    assert [h["status"] for h in sent["history"]] == ["queued", "sending", "sent"]

    [(mail_from, recipients, message)] = mailbox.received
    assert (mail_from, recipients) == ("shop@shop.example", ["greta@example.com"])
    assert message["Subject"] == "Trail Runner 2 ist wieder da"
    assert message["From"].addresses[0].display_name == "Example Shop"
    text, html = parts(message)
    assert "Gute Nachrichten, Greta! Trail Runner 2 ist wieder da:" in text
    assert "https://shop.example/p/sku-42" not in text  # the link is tracked
    assert f"{tp.settings.public_url}/l/" in text and f'href="{tp.settings.public_url}/l/' in html
    token = unsubscribe_token_of(message)
    assert address_from_token(token, UNSUBSCRIBE_SECRET) == "greta@example.com"
    assert tp.fake.sent("sms") == []  # no SMS consent, and e-mail worked anyway


def unsubscribe_token_of(message: EmailMessage) -> str:
    header = message["List-Unsubscribe"]
    assert header, "marketing mail needs a List-Unsubscribe header"
    [uri] = [u.strip().strip("<>") for u in header.split(",")]
    return uri.rsplit("/unsubscribe/", 1)[1]


async def test_a_push_by_sms_reaches_the_gateway(tp: Touchpoint, mailbox: Mailbox):
    await upsert(
        tp, "c-hugo", first_name="Hugo", email="hugo@example.com", phone="+4915550100124", locale="en",
        preferred_channel="sms", consents=[consent("sms"), consent("email")],
    )
    push_id = await push(tp, "c-hugo", **PRODUCT)
    sent = await settled(tp, push_id, "sent")
    assert sent["channel"] == "sms"
    [call] = tp.fake.sent("sms")
    assert (call.json["to"], call.json["from"], call.json["channel"]) == ("4915550100124", "ExampleShop", "sms")
    assert call.json["text"].startswith("Good news, Hugo! Trail Runner 2 is back in stock: ")
    assert f"{tp.settings.public_url}/l/" in call.json["text"]
    assert mailbox.received == []


async def test_an_email_refused_for_good_falls_back_to_sms(tp: Touchpoint, mailbox: Mailbox):
    mailbox.data_reply = "554 5.7.1 Message rejected as spam"
    await upsert(
        tp, "c-ines", first_name="Ines", email="ines@example.com", phone="+4915550100125", locale="es",
        preferred_channel="email", consents=[consent("email"), consent("sms")],
    )
    push_id = await push(tp, "c-ines", **PRODUCT)
    sent = await settled(tp, push_id, "sent")
    assert sent["channel"] == "sms"
    assert [(h["status"], h["reason"], h["channel"]) for h in sent["history"]] == [
        ("queued", None, None),
        ("sending", None, "email"),
        ("queued", "email_failed", None),
        ("sending", None, "sms"),
        ("sent", None, "sms"),
    ]
    assert "554" in sent["history"][2]["detail"]
    assert mailbox.received == []
    [call] = tp.fake.sent("sms")
    assert call.json["to"] == "4915550100125"
    assert call.json["text"].startswith("¡Buenas noticias, Ines! Trail Runner 2 vuelve a estar disponible: ")


async def test_without_consent_on_either_channel_nothing_goes_and_the_push_says_why(tp: Touchpoint, mailbox: Mailbox):
    await upsert(tp, "c-jan", email="jan@example.com", phone="+4915550100126", preferred_channel="email")
    push_id = await push(tp, "c-jan", **PRODUCT)
    skipped = await settled(tp, push_id, "skipped")
    assert skipped["reason"] == "no_consent"
    assert mailbox.received == [] and tp.fake.sent("sms") == []


async def test_one_click_unsubscribe_stops_marketing_mail_and_counts_as_an_opt_out(tp: Touchpoint, mailbox: Mailbox):
    await upsert(tp, "c-kai", first_name="Kai", email="kai@example.com", preferred_channel="email", consents=[consent("email")])
    first = await push(tp, "c-kai", **PRODUCT)
    await settled(tp, first, "sent")
    [(_, _, message)] = mailbox.received
    token = unsubscribe_token_of(message)

    # What a mail client does with List-Unsubscribe-Post: one POST, no page shown to anybody.
    async with tp.session.post(f"{tp.url}/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}) as response:
        assert response.status == 200

    second = await push(tp, "c-kai", touchpoint="announcement", message="One more offer")
    skipped = await settled(tp, second, "skipped")
    assert skipped["reason"] == "stopped"
    assert len(mailbox.received) == 1
    status, stats = await api(tp, "GET", "/api/v1/stats?touchpoint=back_in_stock")
    assert status == 200
    assert (stats["sent"], stats["opted_out"]) == (1, 1)
