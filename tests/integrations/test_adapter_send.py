"""send() through the real client libraries against the fake platforms on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from adapter_support import TG_SECRET, WA_TOKEN

from bot.events import Inbound, Kind
from bot.messages import Button, Outbound, SendResult

ADDRESS = {"telegram": "5550100201", "viber": "tR9vQm2XbL8sKp4fWc1uJg==", "whatsapp": "15550100201"}
LONG_TEXT = " ".join(f"word{i}" for i in range(1500))  # 12,389 characters: 4 parts, 2 on Viber


async def test_telegram_start_calls_get_me(fake, live):
    assert [r.method for r in fake.requests] == ["getMe"]
    assert live["telegram"].bot.username == "ExampleShopBot"


async def test_telegram_send_records_the_rendered_call(fake, live):
    out = Outbound("Hello Alice", (Button("yes", "Yes"), Button("no", "No")))
    result = await live["telegram"].send(ADDRESS["telegram"], out)
    assert result == SendResult("sent", platform_message_id="1", parts_sent=1)
    [call] = fake.sent("telegram")
    assert call.method == "sendMessage"
    assert call.json == {
        "chat_id": 5550100201,
        "text": "Hello Alice",
        "reply_markup": {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}, {"text": "No", "callback_data": "no"}]]},
    }


async def test_viber_send_records_the_rendered_call(fake, live):
    result = await live["viber"].send(ADDRESS["viber"], Outbound("Hello Alice", (Button("yes", "Yes"),)))
    assert result.status == "sent" and int(result.platform_message_id) > 2**53
    [call] = fake.sent("viber")
    assert call.headers["X-Viber-Auth-Token"] == live["viber"].token
    expected = {k: v for k, v in live["viber"].render(ADDRESS["viber"], Outbound("Hello Alice", (Button("yes", "Yes"),)))[0].items() if k != "method"}
    assert call.json == expected
    assert call.json["keyboard"]["Buttons"][0]["ActionBody"] == "btn:yes"


async def test_whatsapp_send_records_the_rendered_call(fake, live):
    result = await live["whatsapp"].send(ADDRESS["whatsapp"], Outbound("Hello Alice"))
    assert result.status == "sent" and result.platform_message_id.startswith("wamid.fake")
    [call] = fake.sent("whatsapp")
    assert call.headers["Authorization"] == f"Bearer {WA_TOKEN}"
    assert call.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15550100201",
        "type": "text",
        "text": {"body": "Hello Alice", "preview_url": False},
    }


@pytest.mark.parametrize(
    "platform, kind, expected",
    [
        ("telegram", "429", SendResult("retry", retry_after=1.0)),
        ("telegram", "500", SendResult("retry")),
        ("telegram", "blocked", SendResult("blocked")),
        ("telegram", "timeout", SendResult("retry")),
        ("viber", "429", SendResult("retry", retry_after=60.0, scope="chat")),
        ("viber", "500", SendResult("retry")),
        ("viber", "blocked", SendResult("blocked")),
        ("viber", "timeout", SendResult("retry")),
        ("whatsapp", "429", SendResult("retry", scope="channel")),
        ("whatsapp", "500", SendResult("retry")),
        ("whatsapp", "blocked", SendResult("blocked")),
        ("whatsapp", "timeout", SendResult("retry")),
    ],
)
async def test_failures_map_to_send_results(fake, live, platform, kind, expected):
    fake.fail_next(platform, kind)
    result = await live[platform].send(ADDRESS[platform], Outbound("Hi"))
    assert (result.status, result.retry_after, result.scope, result.parts_sent) == (
        expected.status,
        expected.retry_after,
        expected.scope,
        0,
    )
    assert result.error
    assert fake.sent(platform) == []
    # The next attempt goes through: the failure was only for one call.
    assert (await live[platform].send(ADDRESS[platform], Outbound("Hi"))).status == "sent"


@pytest.mark.parametrize(
    "platform, status, body, expected",
    [
        ("telegram", 403, {"ok": False, "error_code": 403, "description": "Forbidden: user is deactivated"}, "blocked"),
        ("telegram", 403, {"ok": False, "error_code": 403, "description": "Forbidden: bot can't initiate conversation with a user"}, "blocked"),
        ("telegram", 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}, "failed"),
        ("viber", 200, {"status": 5, "status_message": "receiverNotRegistered"}, "blocked"),
        ("viber", 200, {"status": 3, "status_message": "badData"}, "failed"),
        ("viber", 429, {}, "retry"),
        ("whatsapp", 400, {"error": {"code": 131047, "message": "Re-engagement message"}}, "failed"),
        ("whatsapp", 400, {"error": {"code": 100, "message": "Invalid parameter"}}, "failed"),
        ("whatsapp", 503, {"error": {"code": 2, "message": "Service temporarily unavailable"}}, "retry"),
    ],
)
async def test_other_platform_errors(fake, live, platform, status, body, expected):
    fake.answer_next(platform, status, body)
    result = await live[platform].send(ADDRESS[platform], Outbound("Hi"))
    assert result.status == expected


async def test_whatsapp_pair_rate_limit_slows_one_chat_and_throughput_the_channel(fake, live):
    fake.answer_next("whatsapp", 400, {"error": {"code": 131056, "message": "pair rate limit"}})
    assert (await live["whatsapp"].send(ADDRESS["whatsapp"], Outbound("Hi"))).scope == "chat"
    fake.answer_next("whatsapp", 400, {"error": {"code": 130429, "message": "Rate limit hit"}})
    assert (await live["whatsapp"].send(ADDRESS["whatsapp"], Outbound("Hi"))).scope == "channel"


@pytest.mark.parametrize("platform, parts", [("telegram", 4), ("viber", 2), ("whatsapp", 4)])
async def test_long_text_is_sent_in_order_in_several_parts(fake, live, platform, parts):
    result = await live[platform].send(ADDRESS[platform], Outbound(LONG_TEXT))
    assert (result.status, result.parts_sent) == ("sent", parts)
    sent = fake.sent(platform)
    texts = [c.json["text"]["body"] if platform == "whatsapp" else c.json["text"] for c in sent]
    assert " ".join(texts) == LONG_TEXT


@pytest.mark.parametrize("platform", ["telegram", "viber", "whatsapp"])
async def test_a_retry_resumes_after_the_parts_already_accepted(fake, live, platform):
    adapter = live[platform]
    fake.fail_next(platform, "500", after=1)
    first = await adapter.send(ADDRESS[platform], Outbound(LONG_TEXT))
    assert (first.status, first.parts_sent) == ("retry", 1)
    second = await adapter.send(ADDRESS[platform], Outbound(LONG_TEXT), start_part=first.parts_sent)
    assert (second.status, second.parts_sent) == ("sent", len(adapter.render(ADDRESS[platform], Outbound(LONG_TEXT))))
    rendered = adapter.render(ADDRESS[platform], Outbound(LONG_TEXT))
    assert [c.json for c in fake.sent(platform)] == [{k: v for k, v in p.items() if k != "method"} for p in rendered]


async def test_start_part_past_the_end_sends_nothing(fake, live):
    result = await live["viber"].send(ADDRESS["viber"], Outbound("Hi"), start_part=1)
    assert (result.status, result.parts_sent) == ("sent", 1)
    assert fake.sent("viber") == []


async def test_telegram_sends_concurrently(fake, live):
    results = await asyncio.gather(*(live["telegram"].send(str(5550100000 + i), Outbound(f"n{i}")) for i in range(100)))
    assert {r.status for r in results} == {"sent"}
    await fake.wait_for(100, "telegram")


async def test_telegram_acknowledges_button_presses(fake, live):
    press = Inbound(channel="telegram", address="5550100201", event_id="1", kind=Kind.BUTTON, payload="yes", reply_token="4382910001234567001")
    await live["telegram"].acknowledge(press)
    [call] = [r for r in fake.requests if r.method == "answerCallbackQuery"]
    assert call.json == {"callback_query_id": "4382910001234567001"}


async def test_telegram_acknowledge_swallows_errors(fake, live):
    fake.answer_next("telegram", 400, {"ok": False, "error_code": 400, "description": "Bad Request: query is too old"}, method="answerCallbackQuery")
    press = Inbound(channel="telegram", address="1", event_id="1", kind=Kind.BUTTON, payload="x", reply_token="old")
    await live["telegram"].acknowledge(press)  # no exception
    text = Inbound(channel="telegram", address="1", event_id="2", kind=Kind.TEXT, text="hi")
    await live["telegram"].acknowledge(text)
    assert [r.method for r in fake.requests].count("answerCallbackQuery") == 1


async def test_telegram_register_webhook(fake, live):
    line = await live["telegram"].register_webhook("https://bot.example.org/webhooks/telegram")
    [call] = [r for r in fake.requests if r.method == "setWebhook"]
    assert call.json == {
        "url": "https://bot.example.org/webhooks/telegram",
        "secret_token": TG_SECRET,
        "allowed_updates": ["message", "edited_message", "callback_query", "my_chat_member"],
        "max_connections": 40,
    }
    assert "https://bot.example.org/webhooks/telegram" in line and TG_SECRET not in line


async def test_viber_register_webhook(fake, live):
    line = await live["viber"].register_webhook("https://bot.example.org/webhooks/viber")
    [call] = [r for r in fake.requests if r.method == "set_webhook"]
    assert call.json == {
        "url": "https://bot.example.org/webhooks/viber",
        "event_types": ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"],
        "send_name": True,
    }
    assert "https://bot.example.org/webhooks/viber" in line


async def test_viber_register_webhook_failure_is_a_clear_error(fake, live):
    fake.answer_next("viber", 200, {"status": 1, "status_message": "Result[HttpRequest[POST / HTTP/1.1]] is not valid"}, method="set_webhook")
    with pytest.raises(RuntimeError, match="set_webhook failed"):
        await live["viber"].register_webhook("https://bot.example.org/webhooks/viber")


async def test_whatsapp_register_webhook_only_explains(fake, live):
    line = await live["whatsapp"].register_webhook("https://bot.example.org/webhooks/whatsapp")
    # the operator copies both values into Meta's dashboard
    assert "callback URL:  https://bot.example.org/webhooks/whatsapp" in line
    assert f"verify token:  {live['whatsapp'].verify_token}" in line
    assert [r for r in fake.requests if r.platform == "whatsapp"] == []


async def test_whatsapp_without_a_token_is_refused_by_the_fake(fake, live):
    live["whatsapp"].access_token = ""
    result = await live["whatsapp"].send(ADDRESS["whatsapp"], Outbound("Hi"))
    assert result.status == "failed" and "190" in result.error


async def test_after_start_commands_for_another_bot_are_ignored(live):
    adapter = live["telegram"]
    update = {
        "update_id": 930000001,
        "message": {
            "message_id": 1,
            "from": {"id": 5550100202, "is_bot": False, "first_name": "Олена"},
            "chat": {"id": -1001555010020, "type": "supergroup", "title": "Support"},
            "date": 1794993645,
            "text": "/help@OtherShopBot",
            "entities": [{"offset": 0, "length": 18, "type": "bot_command"}],
        },
    }
    [item] = adapter.split(update)
    assert adapter.parse(item.body) is None
    update["message"]["text"] = "/help@exampleshopbot"  # our own name, any case
    update["message"]["entities"][0]["length"] = 20
    [item] = adapter.split(update)
    assert adapter.parse(item.body).command == "help"
