"""SMS against the fake gateway (a real aiohttp server on 127.0.0.1), inbound webhooks, and a whole chat by SMS."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from bot.app import create_app
from bot.events import Kind
from bot.messages import Button, Outbound, Place
from bot.web import webhooks
from integrations.base import WebhookError
from integrations.fakes import sign_jwt, sms_inbound
from integrations.sms import SmsAdapter, SmsGateway, phone_number, valid_jwt
from tests.conftest import Touchpoint, make_settings

TOKEN = base64.b64encode(b"api-key:api-secret").decode()
SECRET = "signature-secret-0123456789abcdef"
ALICE = "+447700900001"


@pytest.fixture
async def sms(fake, session):
    adapter = SmsAdapter(SmsGateway(url=fake.sms_gateway_url), TOKEN, "ExampleShop", SECRET, timeout=0.5)
    await adapter.start(session)
    yield adapter
    await adapter.close()


# --- sending ------------------------------------------------------------------------


async def test_the_body_follows_the_mapping_and_the_gateway_id_comes_back(fake, sms):
    result = await sms.send(ALICE, Outbound("Your order 1024 has shipped."))
    assert result.status == "sent" and result.parts_sent == 1
    [request] = fake.sent("sms")
    assert request.json == {
        "message_type": "text",
        "channel": "sms",
        "to": "447700900001",
        "from": "ExampleShop",
        "text": "Your order 1024 has shipped.",
    }
    assert request.headers["Authorization"] == f"Basic {TOKEN}"
    assert result.platform_message_id and len(result.platform_message_id) == 36  # the gateway's message_uuid


async def test_buttons_become_numbered_choices(fake, sms):
    out = Outbound("¿Desea recibir ofertas?", (Button("yes:marketing", "Sí"), Button("no:marketing", "No")))
    await sms.send(ALICE, out)
    assert fake.sent("sms")[0].json["text"] == "¿Desea recibir ofertas?\n\n1. Sí\n2. No"


async def test_a_place_is_sent_as_lines_with_a_map_link(fake, sms):
    await sms.send(ALICE, Outbound("Sie sind in der Nähe:", place=Place(52.52, 13.405, "Example Shop Mitte", "Rosenthaler Str. 1")))
    text = fake.sent("sms")[0].json["text"]
    assert text.startswith("Sie sind in der Nähe:\n\nExample Shop Mitte\nRosenthaler Str. 1\nhttps://www.openstreetmap.org/?mlat=52.52&mlon=13.405")


async def test_a_long_text_is_split_on_words_and_a_retry_resumes_after_the_accepted_part(fake, sms):
    words = [f"word{i:04d}" for i in range(260)]  # 2,339 characters
    fake.fail_next("sms", "500", after=1)
    first = await sms.send(ALICE, Outbound(" ".join(words)))
    assert (first.status, first.parts_sent) == ("retry", 1)
    second = await sms.send(ALICE, Outbound(" ".join(words)), start_part=first.parts_sent)
    assert (second.status, second.parts_sent) == ("sent", 3)
    texts = [r.json["text"] for r in fake.sent("sms")]
    assert len(texts) == 3 and all(len(t) <= 1000 for t in texts)
    assert " ".join(texts).split() == words  # every word once, in order, none cut


@pytest.mark.parametrize(
    "kind,status,retry_after,scope",
    [("429", "retry", 1.0, "channel"), ("500", "retry", None, "chat"), ("timeout", "retry", None, "chat"), ("blocked", "blocked", None, "chat")],
)
async def test_gateway_failures_map_to_what_the_sender_does(fake, sms, kind, status, retry_after, scope):
    fake.timeout_delay = 2.0
    fake.fail_next("sms", kind)
    result = await sms.send(ALICE, Outbound("Hello"))
    assert (result.status, result.retry_after, result.scope) == (status, retry_after, scope)
    assert fake.sent("sms") == []


async def test_a_refused_request_fails_for_good_and_names_the_reason(fake, sms):
    fake.answer_next("sms", 422, {"type": "https://developer.vonage.com/api-errors/messages#1020", "title": "Invalid params", "detail": "to is invalid"})
    result = await sms.send(ALICE, Outbound("Hello"))
    assert result.status == "failed"
    assert result.error == "HTTP 422: Invalid params - to is invalid"


async def test_wrong_credentials_fail(fake, session):
    adapter = SmsAdapter(SmsGateway(url=fake.sms_gateway_url), "", "ExampleShop", SECRET)
    await adapter.start(session)
    result = await adapter.send(ALICE, Outbound("Hello"))
    assert result.status == "failed" and result.error.startswith("HTTP 401")


async def test_addresses_in_other_spellings_are_normalised_and_non_numbers_refused(fake, sms):
    assert (await sms.send("+44 7700-900 001", Outbound("Hi"))).status == "sent"
    assert fake.sent("sms")[0].json["to"] == "447700900001"
    assert (await sms.send("ExampleShop", Outbound("Hi"))).status == "failed"
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "raw,number",
    [("447700900001", "+447700900001"), ("+1 (555) 010-0123", "+15550100123"), ("0049 30 1234567", "+49301234567"),
     ("VONAGE", None), ("0301234567", None), ("+12", None), (447700900001, None), ("+4477009000011234567", None)],
)
def test_phone_numbers(raw, number):
    assert phone_number(raw) == number


async def test_another_gateway_is_a_matter_of_mapping(fake, session):
    gateway = SmsGateway(
        url=fake.sms_gateway_url,
        auth_header="X-Api-Key",
        auth_value="{token}",
        body={"recipients": ["{to}"], "originator": "{from}", "body": "{text}", "meta": {"priority": 1}},
        message_id="data.messages.0.id",
        error_code="errors.0.code",
        blocked_codes=["25"],
    )
    adapter = SmsAdapter(gateway, "key-123", "Shop", SECRET)
    await adapter.start(session)
    fake.answer_next("sms", 201, {"data": {"messages": [{"id": 987654}]}})
    result = await adapter.send(ALICE, Outbound("Hi {name}"))  # braces in the text are never parsed
    assert (result.status, result.platform_message_id) == ("sent", "987654")
    request = fake.requests[-1]
    assert request.json == {"recipients": ["+447700900001"], "originator": "Shop", "body": "Hi {name}", "meta": {"priority": 1}}
    assert request.headers["X-Api-Key"] == "key-123"
    fake.answer_next("sms", 422, {"errors": [{"code": 25, "description": "recipient opted out"}]})
    assert (await adapter.send(ALICE, Outbound("Hi"))).status == "blocked"


def test_a_mapping_with_an_unknown_placeholder_is_refused():
    with pytest.raises(ValidationError, match="phone"):
        SmsGateway(body={"to": "{phone}", "text": "{text}"})
    with pytest.raises(ValidationError):
        SmsGateway(auth_value="Bearer {secret}")
    with pytest.raises(ValidationError):
        SmsGateway(max_length=20)


# --- inbound ------------------------------------------------------------------------


def test_a_signed_webhook_verifies_and_a_forged_one_does_not(sms):
    body, headers = sms_inbound(SECRET, "447700900001", "2")
    assert sms.verify(headers, body)
    assert not sms.verify(headers, body.replace(b'"2"', b'"3"'))  # payload_hash no longer matches
    assert not sms.verify({**headers, "Authorization": f"Bearer {sign_jwt('wrong-secret', body)}"}, body)
    assert not sms.verify({"Content-Type": "application/json"}, body)
    assert not sms.verify({**headers, "Authorization": headers["Authorization"].replace("Bearer ", "Basic ")}, body)
    assert not sms.verify({**headers, "Authorization": "Bearer \udcff.x.y"}, body)  # undecodable header bytes


def test_an_expired_or_unsigned_token_is_refused():
    body = b'{"text": "2"}'
    assert valid_jwt(sign_jwt(SECRET, body), SECRET, body)
    assert not valid_jwt(sign_jwt(SECRET, body, exp=1), SECRET, body)

    def unsigned(header: dict) -> str:
        def part(raw: bytes) -> str:
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        claims = {"payload_hash": hashlib.sha256(body).hexdigest()}
        signing_input = part(orjson.dumps(header)) + "." + part(orjson.dumps(claims))
        signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{part(signature)}"

    assert valid_jwt(unsigned({"alg": "HS256"}), SECRET, body)
    assert not valid_jwt(unsigned({"alg": "none"}), SECRET, body)
    assert not valid_jwt("a.b", SECRET, body)


def test_a_shared_secret_header_works_for_gateways_without_signatures(fake):
    adapter = SmsAdapter(SmsGateway(webhook_auth="header", webhook_header="X-Webhook-Secret"), TOKEN, "Shop", SECRET)
    assert adapter.verify({"X-Webhook-Secret": SECRET}, b"{}")
    assert not adapter.verify({"X-Webhook-Secret": SECRET + "x"}, b"{}")
    assert not SmsAdapter(SmsGateway(webhook_auth="header"), TOKEN, "Shop", "").verify({"Authorization": ""}, b"{}")


def test_a_reply_by_number_becomes_a_text_event(sms):
    body, _ = sms_inbound(SECRET, "447700900001", "2", message_id="aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")
    [item] = sms.split(orjson.loads(body))
    assert (item.event_id, item.address) == ("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", ALICE)
    event = sms.parse(item.body)
    assert (event.channel, event.kind, event.text, event.address) == ("sms", Kind.TEXT, "2", ALICE)
    assert event.received_at.tzinfo is not None


def test_delivery_reports_become_receipts_and_a_barred_number_is_unreachable(sms):
    body, _ = sms_inbound(SECRET, "447700900001", "", message_id="m-1", status="delivered")
    [item] = sms.split(orjson.loads(body))
    assert (item.event_id, item.address) == ("m-1:delivered", ALICE)
    receipt = sms.parse(item.body).receipt
    assert (receipt.platform_message_id, receipt.status, receipt.unreachable) == ("m-1", "delivered", False)
    rejected = {**orjson.loads(body), "status": "rejected", "error": {"type": "https://developer.vonage.com/api-errors/messages#1050", "title": "Number barred"}}
    receipt = sms.parse(sms.split(rejected)[0].body).receipt
    assert (receipt.status, receipt.error_code, receipt.unreachable) == ("failed", "1050", True)
    assert sms.split({**orjson.loads(body), "status": "something-new"}) == []


@pytest.mark.parametrize(
    "data",
    [
        [{"text": "2"}],
        {"from": "447700900001", "text": "2"},  # no message id
        {"message_uuid": "m-2", "from": "VONAGE", "text": "2"},  # no number to answer
        {"message_uuid": {"nested": 1}, "from": "447700900001", "text": "2"},
    ],
)
def test_a_malformed_body_is_refused_cleanly(sms, data):
    with pytest.raises(WebhookError):
        sms.split(data)


def test_an_odd_body_never_raises_from_parse(sms):
    assert sms.parse(b"not json") is None
    assert sms.parse(b'{"message_uuid": "m", "from": "447700900001", "text": 2}') is None


# --- a whole conversation by SMS, through the real webhook handler and pipeline --------


async def test_a_customer_answers_by_number_over_sms(tmp_path, fake, session):
    settings = make_settings(fake.base_url, f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}")
    adapter = SmsAdapter(SmsGateway(url=fake.sms_gateway_url), TOKEN, "ExampleShop", SECRET)
    app = create_app(settings, adapters={"sms": adapter})
    app.router.add_post("/webhooks/{channel:sms}", webhooks.handle_webhook)  # the route the app will register
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    tp = Touchpoint(server=server, session=session, fake=fake, settings=settings)

    async def text(message: str, headers: dict | None = None) -> list[str]:
        before = len(fake.sent("sms"))
        body, signed = sms_inbound(SECRET, "447700900001", message)
        async with session.post(f"{tp.url}/webhooks/sms", data=body, headers=headers or signed) as response:
            assert response.status == 200
        await tp.idle()
        return [r.json["text"] for r in fake.sent("sms")[before:]]

    try:
        forged, _ = sms_inbound("not-the-secret", "447700900001", "Hi")
        async with session.post(f"{tp.url}/webhooks/sms", data=forged, headers={"Authorization": f"Bearer {sign_jwt('x', forged)}", "Content-Type": "application/json"}) as response:
            assert response.status == 403
        malformed = b'{"from": "447700900001", "text": "Hi"}'
        async with session.post(f"{tp.url}/webhooks/sms", data=malformed, headers={"Authorization": f"Bearer {sign_jwt(SECRET, malformed)}", "Content-Type": "application/json"}) as response:
            assert response.status == 200  # authentic but unusable: answered, stored nowhere
        assert await tp.query("SELECT id FROM inbox") == []

        greeting = await text("Hi")
        assert greeting and greeting[-1].endswith("\n\n1. Continue\n2. Change language")
        languages = await text("2")
        choices = dict(line.split(". ", 1)[::-1] for line in languages[-1].splitlines() if line[:1].isdigit())
        assert {"English", "Deutsch", "Español"} <= set(choices)
        german = await text(choices["Deutsch"])
        assert german[-1].endswith("\n\n1. Ja\n2. Nein")  # the first consent question, now in German
        assert all(len(r.json["text"]) <= 1000 for r in fake.sent("sms"))
    finally:
        await server.close()
