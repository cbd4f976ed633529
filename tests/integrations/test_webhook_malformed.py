"""Authentic-looking but malformed webhooks through the real server: refused or ignored, never a 500.

The adapters' own tests cover each rule; these show what a platform sees (the
HTTP status) and what the shop keeps (inbox rows, customers) when the body or
a header is odd, on the in-process backend.
"""

from __future__ import annotations

import asyncio
import copy
import json

import pytest

from tests.conftest import (
    TELEGRAM_SECRET,
    Touchpoint,
    fixture_json,
    make_settings,
    signed_headers,
    start_touchpoint,
    stop_touchpoint,
)


@pytest.fixture
async def app(tmp_path, fake_platforms):
    settings = make_settings(fake_platforms.base_url, f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}")
    tp = await start_touchpoint(settings, fake_platforms)
    yield tp
    await stop_touchpoint(tp)


async def raw_post(tp: Touchpoint, platform: str, body: bytes, header: bytes) -> int:
    """POST with one header line given as raw bytes (an HTTP client would refuse to send them)."""
    host, port = tp.server.host, tp.server.port
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        f"POST /webhooks/{platform} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    ).encode() + header + b"\r\n\r\n" + body
    writer.write(request)
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


async def post_json(tp: Touchpoint, platform: str, data: dict) -> int:
    body = json.dumps(data).encode()
    response = await tp.post_webhook(platform, body, signed_headers(platform, body))
    return response.status


@pytest.mark.parametrize(
    "platform, header",
    [
        ("telegram", b"X-Telegram-Bot-Api-Secret-Token: s3\xffcret"),
        ("telegram", b"X-Telegram-Bot-Api-Secret-Token: " + TELEGRAM_SECRET.encode() + b"\xff"),
        ("viber", b"X-Viber-Content-Signature: \xff\xfe"),
        ("whatsapp", b"X-Hub-Signature-256: sha256=\xff\xfe"),
    ],
)
async def test_undecodable_auth_header_is_refused_not_a_server_error(app: Touchpoint, platform, header):
    body = json.dumps(fixture_json(platform, "message_text.json" if platform == "viber" else "text_plain.json")).encode()
    assert await raw_post(app, platform, body, header) == (401 if platform == "telegram" else 403)
    assert await app.query("SELECT id FROM inbox") == []


async def test_one_malformed_whatsapp_message_does_not_cost_the_others(app: Touchpoint):
    data = fixture_json("whatsapp", "text_plain.json")
    value = data["entry"][0]["changes"][0]["value"]
    good = value["messages"][0]
    bad = [{**good, "id": None}, {**good, "id": {"x": 1}}, {**good, "id": "wamid.bad-from", "from": [1]}]
    second = {**copy.deepcopy(good), "id": "wamid.second"}
    value["messages"] = [*bad, good, second]
    assert await post_json(app, "whatsapp", data) == 200
    await app.idle()
    rows = await app.query("SELECT event_id, status FROM inbox ORDER BY id")
    assert [tuple(r) for r in rows] == [(good["id"], "done"), ("wamid.second", "done")]


@pytest.mark.parametrize("chat_id", [{"a": 1}, None, 3016.5, "5" * 5000, True, 2**63])
async def test_telegram_chat_id_that_is_not_an_int64_creates_nothing(app: Touchpoint, chat_id):
    data = fixture_json("telegram", "text_plain.json")
    data["message"]["chat"]["id"] = chat_id
    assert await post_json(app, "telegram", data) == 200
    await app.idle()
    assert await app.query("SELECT id FROM inbox") == []
    assert await app.query("SELECT id FROM channel_identity") == []


async def test_viber_message_without_token_is_not_stored_and_blocks_nothing(app: Touchpoint):
    first = fixture_json("viber", "message_text.json")
    first["message_token"] = None
    assert await post_json(app, "viber", first) == 200
    assert await app.query("SELECT id FROM inbox") == []
    later = fixture_json("viber", "message_text.json")
    assert await post_json(app, "viber", later) == 200
    await app.idle()
    rows = await app.query("SELECT event_id, status FROM inbox")
    assert [tuple(r) for r in rows] == [(f"message:{later['message_token']}", "done")]


async def test_wrongly_typed_text_is_ignored_at_once_and_the_next_message_is_answered(app: Touchpoint):
    odd = fixture_json("telegram", "text_plain.json")
    odd["message"]["text"] = 5
    assert await post_json(app, "telegram", odd) == 200
    normal = fixture_json("telegram", "start_command.json")
    assert await post_json(app, "telegram", normal) == 200
    await app.idle(timeout=5)
    rows = await app.query("SELECT event_id, status, attempts FROM inbox ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [(str(odd["update_id"]), "ignored"), (str(normal["update_id"]), "done")]
    assert all(r[2] <= 1 for r in rows)  # nothing retried
    assert app.fake.sent("telegram")  # the /start got its answer
