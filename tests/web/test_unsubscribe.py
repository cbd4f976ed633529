"""The List-Unsubscribe link of marketing e-mails: GET asks, POST (one-click) withdraws, forgeries change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.email import unsubscribe_token
from tests.conftest import API_KEY, make_settings, start_touchpoint, stop_touchpoint

SECRET = "unsubscribe-test-secret"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
async def tp(tmp_path, fake_platforms):
    settings = make_settings(
        fake_platforms.base_url,
        f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}",
        smtp_host="127.0.0.1",
        smtp_port=1,
        smtp_from="shop@example.com",
        email_unsubscribe_secret=SECRET,
    )
    touchpoint = await start_touchpoint(settings, fake_platforms)
    yield touchpoint
    await stop_touchpoint(touchpoint)


async def consents(tp) -> list[Any]:
    return await tp.query("SELECT purpose, granted, source FROM consent WHERE channel = 'email' ORDER BY id")


async def test_get_asks_post_withdraws_marketing_on_that_address(tp):
    body = {
        "external_id": "c-1",
        "first_name": "Eva",
        "email": "eva@example.com",
        "locale": "de",
        "consents": [{"purpose": "marketing", "channel": "email", "granted": True}],
    }
    async with tp.session.post(f"{tp.url}/api/v1/customers", json=body, headers=AUTH) as response:
        assert response.status == 201, await response.text()
    url = f"{tp.url}/unsubscribe/{unsubscribe_token('eva@example.com', SECRET)}"

    async with tp.session.get(url) as response:
        page = await response.text()
        assert response.status == 200 and 'lang="de"' in page and "<form method=\"post\">" in page
    assert [(c.purpose, bool(c.granted)) for c in await consents(tp)] == [("marketing", True)]  # a GET changes nothing

    async with tp.session.post(url, data="List-Unsubscribe=One-Click") as response:
        assert response.status == 200 and "keine Angebote" in await response.text()
    assert [(c.purpose, bool(c.granted), c.source) for c in await consents(tp)][-1] == ("marketing", False, "unsubscribe")


async def test_a_forged_token_changes_nothing(tp):
    forged = unsubscribe_token("eva@example.com", "another-secret")
    async with tp.session.post(f"{tp.url}/unsubscribe/{forged}") as response:
        assert response.status == 200 and "not valid" in await response.text()
    assert await consents(tp) == []


async def test_an_unsubscribe_during_a_pause_of_offers_is_kept_when_the_pause_ends(tp):
    from datetime import datetime, timedelta, timezone

    from bot import store
    from bot.appkeys import DB
    from bot.turn import ConsentChange, PauseMarketing

    body = {
        "external_id": "c-1",
        "email": "eva@example.com",
        "consents": [{"purpose": "marketing", "channel": "email", "granted": True}],
    }
    async with tp.session.post(f"{tp.url}/api/v1/customers", json=body, headers=AUTH) as response:
        assert response.status == 201, await response.text()
    [customer] = await tp.query("SELECT id FROM customer")
    now = datetime.now(timezone.utc)
    until = now + timedelta(days=30)
    pause = [ConsentChange("marketing", "email", False, "pause", "1"), PauseMarketing(until=until)]
    await tp.app[DB].write(
        lambda conn: store.apply_effects(conn, customer_id=customer.id, channel="email", address="eva@example.com", effects=pause, now=now)
    )

    url = f"{tp.url}/unsubscribe/{unsubscribe_token('eva@example.com', SECRET)}"
    async with tp.session.post(url, data="List-Unsubscribe=One-Click") as response:
        assert response.status == 200
    ended = await tp.app[DB].write(lambda conn: store.resume_marketing(conn, customer.id, until + timedelta(days=1)))
    assert ended == 0
    assert [(c.purpose, bool(c.granted), c.source) for c in await consents(tp)][-1] == ("marketing", False, "unsubscribe")
