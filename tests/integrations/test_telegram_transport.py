"""PTB's Bot over our aiohttp transport, against the fake Telegram API on 127.0.0.1.

What must hold: calls arrive as Telegram expects them (form fields, multipart
uploads), and every failure reaches PTB as the exception PTB itself would
raise, so the adapter's SendResult mapping is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import aiohttp
import pytest
from adapter_support import TG_SECRET, TG_TOKEN
from telegram import Bot
from telegram.error import InvalidToken, NetworkError, RetryAfter, TimedOut

from bot.messages import Button, Outbound, SendResult
from integrations.fakes import FakePlatforms
from integrations.telegram import TelegramAdapter
from integrations.telegram_http import AiohttpRequest

CHAT = "5550100201"


def _free_port() -> int:
    """A port nobody listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def shared():
    """The app's shared session; a default header shows which session carried a call."""
    async with aiohttp.ClientSession(headers={"X-Shared-Session": "yes"}) as client:
        yield client


@pytest.fixture
async def telegram(fake, shared):
    adapter = TelegramAdapter(TG_TOKEN, TG_SECRET, fake.env()["TELEGRAM_API_URL"], timeout=2.0)
    await adapter.start(shared)
    yield adapter
    await adapter.close()


async def test_send_message_with_inline_keyboard_arrives_as_form_fields(fake, telegram):
    out = Outbound("Your order 1024 is ready 📦", (Button("pickup", "Pick up"), Button("deliver", "Deliver to me")))
    result = await telegram.send(CHAT, out)
    assert result == SendResult("sent", platform_message_id="1", parts_sent=1)
    [call] = fake.sent("telegram")
    assert call.json == {
        "chat_id": 5550100201,
        "text": "Your order 1024 is ready 📦",
        "reply_markup": {
            "inline_keyboard": [
                [{"text": "Pick up", "callback_data": "pickup"}, {"text": "Deliver to me", "callback_data": "deliver"}]
            ]
        },
    }
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.headers["User-Agent"].startswith("python-telegram-bot")
    assert call.headers["X-Shared-Session"] == "yes"  # sent through the app's session


async def test_file_upload_is_multipart(shared):
    uploads: dict[str, tuple[str, bytes]] = {}

    def keep_uploads(call):  # the server closes uploaded files once the handler returns
        for name, field in call.json.items():
            if hasattr(field, "file"):
                uploads[name] = (field.filename, field.file.read())

    fake = FakePlatforms(on_request=keep_uploads)
    await fake.start(port=0)
    adapter = TelegramAdapter(TG_TOKEN, TG_SECRET, fake.env()["TELEGRAM_API_URL"], timeout=2.0)
    await adapter.start(shared)
    message = {"message_id": 7, "date": 1794993245, "chat": {"id": 5550100201, "type": "private"},
               "document": {"file_id": "doc-1", "file_unique_id": "u-doc-1"}}  # fmt: skip
    fake.answer_next("telegram", 200, {"ok": True, "result": message}, method="sendDocument")
    try:
        sent = await adapter.bot.send_document(CHAT, b"%PDF-1.4 invoice", filename="invoice-1024.pdf", caption="Invoice")
    finally:
        await adapter.close()
        await fake.stop()
    assert sent.document.file_id == "doc-1"
    call = fake.requests[-1]
    assert call.method == "sendDocument"
    assert call.headers["Content-Type"].startswith("multipart/form-data")
    assert (call.json["chat_id"], call.json["caption"]) == (5550100201, "Invoice")
    assert uploads == {"document": ("invoice-1024.pdf", b"%PDF-1.4 invoice")}


async def test_429_is_ptb_retry_after_and_a_retry_with_its_delay(fake, telegram):
    fake.fail_next("telegram", "429")
    with pytest.raises(RetryAfter):
        await telegram.bot.send_message(CHAT, "Hi")
    fake.fail_next("telegram", "429")
    result = await telegram.send(CHAT, Outbound("Hi"))
    assert (result.status, result.retry_after) == ("retry", 1.0)
    assert fake.sent("telegram") == []


async def test_403_blocked_is_blocked(fake, telegram):
    fake.fail_next("telegram", "blocked")
    result = await telegram.send(CHAT, Outbound("Hi"))
    assert (result.status, result.error) == ("blocked", "Forbidden: bot was blocked by the user")


async def test_500_is_a_retry(fake, telegram):
    fake.fail_next("telegram", "500")
    result = await telegram.send(CHAT, Outbound("Hi"))
    assert (result.status, result.error) == ("retry", "Internal Server Error")
    assert (await telegram.send(CHAT, Outbound("Hi"))).status == "sent"


async def test_a_stalled_api_times_out_in_the_transport(fake, shared):
    fake.timeout_delay = 2.0
    adapter = TelegramAdapter(TG_TOKEN, TG_SECRET, fake.env()["TELEGRAM_API_URL"], timeout=0.2)
    await adapter.start(shared)
    adapter.timeout = 5.0  # loosen the adapter's own safety net: only the transport may stop the call
    fake.fail_next("telegram", "timeout")
    began = time.monotonic()
    result = await adapter.send(CHAT, Outbound("Hi"))
    assert (result.status, result.error) == ("retry", "Timed out")  # PTB's TimedOut, not our safety net
    assert time.monotonic() - began < 1.0
    await adapter.close()


async def test_a_timeout_passed_to_one_call_overrides_the_default(fake, shared):
    fake.timeout_delay = 2.0
    request = AiohttpRequest(timeout=5.0)
    request.use_session(shared)
    async with Bot(TG_TOKEN, base_url=f"{fake.env()['TELEGRAM_API_URL']}/bot", request=request) as bot:
        fake.fail_next("telegram", "timeout")
        began = time.monotonic()
        with pytest.raises(TimedOut):
            await bot.send_message(CHAT, "Hi", read_timeout=0.2)
        assert time.monotonic() - began < 1.0


async def test_connection_refused_is_a_network_error_and_a_retry(shared):
    adapter = TelegramAdapter(TG_TOKEN, TG_SECRET, f"http://127.0.0.1:{_free_port()}/telegram", timeout=2.0)
    await adapter.start(shared)
    with pytest.raises(NetworkError) as raised:
        await adapter.bot.send_message(CHAT, "Hi")
    assert not isinstance(raised.value, TimedOut)
    assert "ClientConnectorError" in raised.value.message
    result = await adapter.send(CHAT, Outbound("Hi"))
    assert result.status == "retry" and "ClientConnectorError" in result.error
    await adapter.close()


async def test_start_with_the_api_down_warns_and_sends_once_it_is_back(shared, caplog):
    port = _free_port()
    adapter = TelegramAdapter(TG_TOKEN, TG_SECRET, f"http://127.0.0.1:{port}/telegram", timeout=2.0)
    with caplog.at_level(logging.WARNING, logger="integrations.telegram"):
        await adapter.start(shared)  # must not raise
    assert "telegram.get_me_failed" in caplog.text
    assert (await adapter.send(CHAT, Outbound("Hi"))).status == "retry"

    fake = FakePlatforms()
    await fake.start(port=port)
    try:
        assert (await adapter.send(CHAT, Outbound("Hi"))).status == "sent"
        assert [c.json["text"] for c in fake.sent("telegram")] == ["Hi"]
    finally:
        await adapter.close()
        await fake.stop()


async def test_a_rejected_token_still_stops_start(fake, shared):
    fake.answer_next("telegram", 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}, method="getMe")
    adapter = TelegramAdapter(TG_TOKEN, TG_SECRET, fake.env()["TELEGRAM_API_URL"])
    with pytest.raises(InvalidToken):
        await adapter.start(shared)
    await adapter.close()


async def test_close_leaves_the_shared_session_open(fake, shared, telegram):
    await telegram.close()
    assert not shared.closed
    async with shared.post(f"{fake.env()['TELEGRAM_API_URL']}/bot{TG_TOKEN}/getMe") as response:
        assert response.status == 200  # the app can keep using it


async def test_without_a_shared_session_it_opens_and_closes_its_own(fake):
    request = AiohttpRequest(timeout=2.0, connection_limit=4)
    bot = Bot(TG_TOKEN, base_url=f"{fake.env()['TELEGRAM_API_URL']}/bot", request=request)
    async with bot:
        sent = await asyncio.gather(*(bot.send_message(CHAT, f"n{i}") for i in range(10)))
        assert sorted(m.message_id for m in sent) == list(range(1, 11))
        assert "X-Shared-Session" not in fake.requests[-1].headers
    with pytest.raises(NetworkError):  # shut down: nothing goes out until initialized again
        await bot.send_message(CHAT, "after shutdown")
    async with bot:
        assert (await bot.send_message(CHAT, "again")).text == "again"
