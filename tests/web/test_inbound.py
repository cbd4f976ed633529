"""The inbound path through real HTTP: authentication, every fixture, dedup, limits, health."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import (
    API_KEY,
    FIXTURES,
    WHATSAPP_VERIFY,
    Touchpoint,
    fixture_bytes,
    signed_headers,
)

PLATFORMS = ("telegram", "viber", "whatsapp")
# Bodies that are receipts, edits or block events: stored or ignored, never answered.
SILENT = {
    ("telegram", "edited_message.json"),
    ("telegram", "my_chat_member_blocked.json"),
    ("telegram", "my_chat_member_unblocked.json"),
    ("viber", "webhook_check.json"),
    ("viber", "delivered.json"),
    ("viber", "seen.json"),
    ("viber", "failed.json"),
    ("viber", "unsubscribed.json"),
    ("whatsapp", "status_sent.json"),
    ("whatsapp", "status_delivered.json"),
    ("whatsapp", "status_read.json"),
    ("whatsapp", "status_failed_131026.json"),
    ("whatsapp", "status_failed_131047.json"),
}


def all_fixtures() -> list[tuple[str, str]]:
    return [(p, f.name) for p in PLATFORMS for f in sorted((FIXTURES / p).glob("*.json"))]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_wrong_or_missing_signature_is_rejected_and_changes_nothing(touchpoint: Touchpoint, platform: str) -> None:
    body = fixture_bytes(platform, "text_plain.json" if platform != "viber" else "message_text.json")
    good = signed_headers(platform, body)
    bad = dict(good)
    for key in list(bad):
        if key != "Content-Type":
            bad[key] = "sha256=" + "0" * 64 if platform == "whatsapp" else "wrong"
    missing = {"Content-Type": "application/json"}
    for headers in (bad, missing):
        response = await touchpoint.post_webhook(platform, body, headers)
        assert response.status in (401, 403)
    if platform != "telegram":  # Telegram signs nothing; its proof is the secret header alone
        # a signature over other bytes (re-serialised JSON) fails
        tampered = json.dumps(json.loads(body)).encode()
        response = await touchpoint.post_webhook(platform, tampered, good)
        assert response.status in (401, 403)
    await asyncio.sleep(0.1)
    assert await touchpoint.query("SELECT id FROM inbox") == []
    assert touchpoint.fake.sent() == []


@pytest.mark.parametrize("platform,name", all_fixtures())
async def test_every_fixture_is_accepted_and_handled_without_error(touchpoint: Touchpoint, platform: str, name: str) -> None:
    response = await touchpoint.post_fixture(platform, name)
    assert response.status == 200
    await touchpoint.idle()
    failed = await touchpoint.query("SELECT event_id, error FROM inbox WHERE status NOT IN ('done', 'ignored')")
    assert failed == []
    if (platform, name) in SILENT:
        assert touchpoint.fake.sent(platform) == []
    # the server keeps serving
    async with touchpoint.session.get(f"{touchpoint.url}/healthz") as health:
        assert health.status == 200


@pytest.mark.parametrize("platform,name", [("telegram", "text_plain.json"), ("viber", "message_text.json"), ("whatsapp", "text_plain.json")])
async def test_redelivered_webhook_is_answered_200_and_processed_once(touchpoint: Touchpoint, platform: str, name: str) -> None:
    first = await touchpoint.post_fixture(platform, name)
    await touchpoint.idle()
    replies = len(touchpoint.fake.sent(platform))
    assert replies >= 1
    for _ in range(3):
        again = await touchpoint.post_fixture(platform, name)
        assert again.status == first.status == 200
    await touchpoint.idle()
    assert len(touchpoint.fake.sent(platform)) == replies
    rows = await touchpoint.query("SELECT count(*) AS n FROM inbox")
    assert rows[0].n == 1


async def test_unconfigured_channel_answers_404(tmp_path, fake_platforms) -> None:
    from tests.conftest import make_settings, start_touchpoint, stop_touchpoint

    settings = make_settings(
        fake_platforms.base_url, f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}", viber_auth_token="", whatsapp_access_token=""
    )
    tp = await start_touchpoint(settings, fake_platforms)
    try:
        for platform in ("viber", "whatsapp"):
            response = await tp.post_webhook(platform, b"{}")
            assert response.status == 404
        async with tp.session.get(f"{tp.url}/webhooks/whatsapp") as response:
            assert response.status == 404
        response = await tp.post_fixture("telegram", "text_plain.json")
        assert response.status == 200
    finally:
        await stop_touchpoint(tp)


async def test_oversized_body_is_rejected_with_413(touchpoint: Touchpoint) -> None:
    body = b'{"update_id": 1, "pad": "' + b"x" * (touchpoint.settings.touchpoint_max_body_bytes + 10) + b'"}'
    response = await touchpoint.post_webhook("telegram", body)
    assert response.status == 413
    assert await touchpoint.query("SELECT id FROM inbox") == []
    assert (await touchpoint.post_fixture("telegram", "text_plain.json")).status == 200


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_authentic_but_unusable_bodies_get_200_and_change_nothing(touchpoint: Touchpoint, platform: str) -> None:
    for body in (b"{not json", b"[]", b'"text"', b"{}", b'{"entry": "x", "update_id": "abc", "event": 5}'):
        response = await touchpoint.post_webhook(platform, body)
        assert response.status == 200, body
    body = fixture_bytes(platform, "text_plain.json" if platform != "viber" else "message_text.json")
    headers = signed_headers(platform, body)
    headers["Content-Type"] = "text/plain"
    assert (await touchpoint.post_webhook(platform, body, headers)).status == 200
    await asyncio.sleep(0.1)
    assert await touchpoint.query("SELECT id FROM inbox") == []
    assert touchpoint.fake.sent() == []


async def test_whatsapp_verify_handshake(touchpoint: Touchpoint) -> None:
    url = f"{touchpoint.url}/webhooks/whatsapp"
    params = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": WHATSAPP_VERIFY}
    async with touchpoint.session.get(url, params=params) as response:
        assert response.status == 200
        assert await response.text() == "1158201444"
    async with touchpoint.session.get(url, params={**params, "hub.verify_token": "nope"}) as response:
        assert response.status == 403


async def test_health_and_readiness(touchpoint: Touchpoint, backend_name: str) -> None:
    async with touchpoint.session.get(f"{touchpoint.url}/healthz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"
    async with touchpoint.session.get(f"{touchpoint.url}/readyz") as response:
        body = await response.json()
        assert response.status == 200
        assert body["database"] == "ok"
        assert body["redis"] == ("ok" if backend_name == "redis" else "not configured")
    async with touchpoint.session.get(f"{touchpoint.url}/metrics") as response:
        assert response.status == 200
        assert "touchpoint_inbox_accepted_total" in await response.text()


async def test_customer_lookup_requires_a_key_and_reports_consents(touchpoint: Touchpoint) -> None:
    url = f"{touchpoint.url}/api/v1/customers/lookup"
    params = {"channel": "telegram", "address": "5550100201"}
    async with touchpoint.session.get(url, params=params) as response:
        assert response.status == 401
    async with touchpoint.session.get(url, params=params, headers={"Authorization": "Bearer wrong"}) as response:
        assert response.status == 401
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with touchpoint.session.get(url, params=params, headers=auth) as response:
        assert response.status == 404
    async with touchpoint.session.get(url, params={"channel": "fax", "address": "1"}, headers=auth) as response:
        assert response.status == 400
        assert "channel" in (await response.json())["error"]
    await touchpoint.post_fixture("telegram", "start_command.json")
    await touchpoint.idle()
    async with touchpoint.session.get(url, params=params, headers=auth) as response:
        assert response.status == 200
        body = await response.json()
    assert body["name"] == "Alice"
    assert body["locale"] == "en"
    assert body["consents"] == []


async def test_scaled_mode_postgres_and_redis(tmp_path, fake_platforms, postgres_url, redis_url) -> None:
    """The same server on PostgreSQL (asyncpg) and Redis: stored, deduplicated, answered, readable."""
    from bot.app import migrate
    from tests.conftest import make_settings, start_touchpoint, stop_touchpoint
    from tests.test_pipeline import fresh_postgres_database

    url = await fresh_postgres_database(postgres_url)
    await migrate(url)
    tp = await start_touchpoint(make_settings(fake_platforms.base_url, url, redis_url), fake_platforms)
    try:
        for _ in range(2):
            assert (await tp.post_fixture("telegram", "start_command.json")).status == 200
        await tp.idle()
        replies = fake_platforms.sent("telegram")
        assert len(replies) == 1 and "Alice" in replies[0].json["text"]
        async with tp.session.get(f"{tp.url}/readyz") as response:
            assert (await response.json()) == {"status": "ok", "database": "ok", "redis": "ok"}
        async with tp.session.get(
            f"{tp.url}/api/v1/customers/lookup",
            params={"channel": "telegram", "address": "5550100201"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as response:
            assert response.status == 200
            assert (await response.json())["name"] == "Alice"
    finally:
        await stop_touchpoint(tp)


async def test_openapi_describes_the_shop_api_without_a_key(touchpoint: Touchpoint) -> None:
    async with touchpoint.session.get(f"{touchpoint.url}/api/v1/openapi.json") as response:
        assert response.status == 200
        spec = await response.json()
    assert spec["openapi"].startswith("3.")
    lookup = spec["paths"]["/customers/lookup"]["get"]
    assert {p["name"] for p in lookup["parameters"]} == {"channel", "address"}
    assert set(lookup["responses"]) == {"200", "400", "401", "404"}


async def test_undecodable_authorization_header_is_a_401_not_a_crash(touchpoint: Touchpoint) -> None:
    import socket

    host, port = touchpoint.server.host, touchpoint.server.port
    request = (
        b"GET /api/v1/customers/lookup?channel=telegram&address=1 HTTP/1.1\r\n"
        b"Host: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n"
    )
    loop = asyncio.get_running_loop()

    def roundtrip() -> bytes:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(request)
            return sock.recv(200)

    answer = await loop.run_in_executor(None, roundtrip)
    assert answer.startswith(b"HTTP/1.1 401")


async def test_readiness_fails_when_the_sqlite_file_is_gone(touchpoint: Touchpoint) -> None:
    import os

    from bot.appkeys import DB

    path = touchpoint.app[DB].sync_engine.url.database
    os.rename(path, path + ".moved")
    try:
        async with touchpoint.session.get(f"{touchpoint.url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["database"] == "unreachable"
    finally:
        os.rename(path + ".moved", path)
    async with touchpoint.session.get(f"{touchpoint.url}/readyz") as response:
        assert response.status == 200
