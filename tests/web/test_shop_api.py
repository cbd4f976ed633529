"""The shop API's customer, account-link and catalog endpoints and its description, through real HTTP."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import select

from bot import shop_store, store
from bot.app import migrate
from bot.appkeys import CONFIG, DB
from bot.config import Links, LocalText, load_config
from bot.db import Database
from bot.models import utcnow
from bot.turn import IssueCode
from tests.conftest import API_KEY, Touchpoint, make_settings, start_touchpoint, stop_touchpoint
from tests.test_pipeline import fresh_postgres_database
from tests.web.chat import PlatformUser

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
ANNA = {
    "external_id": "C-1001",
    "first_name": "Anna",
    "email": "anna@example.com",
    "phone": "+491701234567",
    "locale": "de",
    "timezone": "Europe/Berlin",
    "preferred_channel": "email",
    "attributes": {"order_count": 3, "customer_since": "2023-04-01", "tier": "gold"},
    "consents": [
        {"purpose": "marketing", "channel": "email", "granted": True},
        {"purpose": "marketing", "channel": "sms", "granted": False},
    ],
}


@pytest.fixture
def backend_name() -> str:
    """These endpoints do not depend on the state backend; test_idempotency runs both."""
    return "memory"


@pytest.fixture
async def shop(touchpoint: Touchpoint) -> Touchpoint:
    """The running app, on SQLite with the migrations applied (the shop tables come with 0003)."""
    return touchpoint


async def call(
    tp: Touchpoint,
    method: str,
    path: str,
    body: Any = None,
    *,
    data: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    key: str | None = API_KEY,
) -> tuple[int, Any, Any]:
    """One request to the API: (status, JSON answer, response headers)."""
    sent = {"Content-Type": "application/json"} if body is not None or data is not None else {}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    sent.update(headers or {})
    payload = json.dumps(body) if body is not None else data
    async with tp.session.request(method, f"{tp.url}{path}", data=payload, headers=sent) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None), response.headers


def fields_of(answer: dict[str, Any]) -> list[str]:
    return [f["field"] for f in answer.get("fields", [])]


# --- customers ---------------------------------------------------------------------------


async def test_a_customer_is_created_then_updated_and_read_back(shop: Touchpoint) -> None:
    status, created, _ = await call(shop, "POST", "/api/v1/customers", ANNA)
    assert status == 201
    assert created["external_id"] == "C-1001"
    assert (created["first_name"], created["email"], created["phone"]) == ("Anna", "anna@example.com", "+491701234567")
    assert (created["locale"], created["timezone"], created["preferred_channel"]) == ("de", "Europe/Berlin", "email")
    assert created["attributes"] == {"order_count": 3, "customer_since": "2023-04-01", "tier": "gold"}
    assert created["identities"] == [
        {"channel": "email", "address": "anna@example.com", "blocked": False},
        {"channel": "sms", "address": "+491701234567", "blocked": False},
    ]
    consents = {(c["purpose"], c["channel"]): (c["granted"], c["wording_version"]) for c in created["consents"]}
    assert consents == {("marketing", "email"): (True, "1"), ("marketing", "sms"): (False, "1")}
    assert created["categories"] == []

    # Left-out fields stay; attributes merge, a null attribute is removed.
    status, updated, _ = await call(
        shop,
        "POST",
        "/api/v1/customers",
        {"external_id": "C-1001", "first_name": "Anna-Maria", "attributes": {"order_count": 6, "tier": None}},
    )
    assert status == 200
    assert updated["id"] == created["id"]
    assert updated["first_name"] == "Anna-Maria"
    assert updated["email"] == "anna@example.com" and updated["locale"] == "de"
    assert updated["attributes"] == {"order_count": 6, "customer_since": "2023-04-01"}
    assert updated["consents"] == created["consents"]

    status, read, _ = await call(shop, "GET", "/api/v1/customers/C-1001")
    assert status == 200 and read == updated
    rows = await shop.query("SELECT source FROM consent WHERE customer_id = :id", id=created["id"])
    assert [r.source for r in rows] == ["shop_api", "shop_api"]


async def test_repeating_an_upsert_records_consent_only_when_it_changes(shop: Touchpoint) -> None:
    await call(shop, "POST", "/api/v1/customers", ANNA)
    await call(shop, "POST", "/api/v1/customers", ANNA)
    changed = {"external_id": "C-1001", "consents": [{"purpose": "marketing", "channel": "sms", "granted": True}]}
    status, answer, _ = await call(shop, "POST", "/api/v1/customers", changed)
    assert status == 200
    rows = await shop.query("SELECT channel, granted FROM consent ORDER BY id")
    assert [(r.channel, bool(r.granted)) for r in rows] == [("email", True), ("sms", False), ("sms", True)]
    assert {(c["channel"], c["granted"]) for c in answer["consents"]} == {("email", True), ("sms", True)}


async def test_a_new_email_moves_the_email_channel_and_a_cleared_phone_removes_sms(shop: Touchpoint) -> None:
    await call(shop, "POST", "/api/v1/customers", ANNA)
    status, answer, _ = await call(
        shop, "POST", "/api/v1/customers", {"external_id": "C-1001", "email": "anna.new@example.com", "phone": None}
    )
    assert status == 200
    assert answer["email"] == "anna.new@example.com" and answer["phone"] is None
    assert answer["identities"] == [{"channel": "email", "address": "anna.new@example.com", "blocked": False}]
    conversations = await shop.query("SELECT channel, address FROM conversation ORDER BY id")
    assert [(r.channel, r.address) for r in conversations] == [("email", "anna.new@example.com")]
    # the new address is what the lookup by channel finds
    status, found, _ = await call(shop, "GET", "/api/v1/customers/lookup?channel=email&address=anna.new@example.com")
    assert status == 200 and found["id"] == answer["id"]
    status, _, _ = await call(shop, "GET", "/api/v1/customers/lookup?channel=email&address=anna@example.com")
    assert status == 404


async def test_an_email_of_another_customer_is_a_conflict_that_changes_nothing(shop: Touchpoint) -> None:
    await call(shop, "POST", "/api/v1/customers", ANNA)
    status, answer, _ = await call(
        shop, "POST", "/api/v1/customers", {"external_id": "C-2002", "first_name": "Ben", "email": "anna@example.com"}
    )
    assert status == 409
    assert fields_of(answer) == ["email"] and "C-1001" in answer["fields"][0]["message"]
    assert [r.external_id for r in await shop.query("SELECT external_id FROM customer")] == ["C-1001"]


@pytest.mark.parametrize(
    "change,field",
    [
        ({"external_id": None}, "external_id"),
        ({"external_id": ""}, "external_id"),
        ({"first_name": 42}, "first_name"),
        ({"emial": "anna@example.com"}, "emial"),
        ({"email": "anna(at)example.com"}, "email"),
        ({"phone": "0170 1234567"}, "phone"),
        ({"phone": "+49 170 1234567"}, "phone"),
        ({"locale": "fr"}, "locale"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"preferred_channel": "fax"}, "preferred_channel"),
        ({"attributes": {"order_count": -1}}, "attributes.order_count"),
        ({"attributes": {"order_count": "many"}}, "attributes.order_count"),
        ({"attributes": {"customer_since": "last spring"}}, "attributes.customer_since"),
        ({"attributes": {"nested": {"a": 1}}}, "attributes.nested"),
        ({"consents": [{"purpose": "marketing", "channel": "fax", "granted": True}]}, "consents.0.channel"),
        ({"consents": [{"purpose": "marketing", "channel": "sms"}]}, "consents.0.granted"),
        ({"consents": [{"purpose": "newsletter", "channel": "email", "granted": True}]}, "consents.0.purpose"),
        ({"consents": [{"purpose": "marketing", "channel": "sms", "granted": True}] * 2}, "consents"),
        # A messenger's consent is the customer's answer in that chat, never the shop's checkbox.
        ({"consents": [{"purpose": "marketing", "channel": "telegram", "granted": True}]}, "consents.0.granted"),
        ({"consents": [{"purpose": "marketing", "channel": "whatsapp", "granted": True}]}, "consents.0.granted"),
        ({"consents": [{"purpose": "marketing", "channel": "email", "granted": "yes"}]}, "consents.0.granted"),
        ({"consents": [{"purpose": "marketing", "channel": "email", "granted": 1}]}, "consents.0.granted"),
    ],
)
async def test_an_invalid_customer_is_refused_naming_the_field(
    shop: Touchpoint, change: dict[str, Any], field: str
) -> None:
    body = {**ANNA, **change}
    if change.get("external_id") is None and "external_id" in change:
        del body["external_id"]  # missing altogether
    status, answer, _ = await call(shop, "POST", "/api/v1/customers", body)
    assert status == 422, answer
    assert answer["error"] == "invalid request"
    assert field in fields_of(answer)
    assert await shop.query("SELECT id FROM customer") == []
    assert await shop.query("SELECT id FROM consent") == []


@pytest.mark.parametrize(
    "data,content_type,status,words",
    [
        ('{"external_id": "C-1", ', "application/json", 400, "malformed JSON"),
        ("[1, 2]", "application/json", 400, "JSON object"),
        ("null", "application/json", 400, "JSON object"),
        (b'{"external_id": "\xc3\x28"}', "application/json", 400, "UTF-8"),
        ('{"external_id": "C-1"}', "text/plain", 415, "Content-Type: application/json"),
        ("external_id=C-1", "application/x-www-form-urlencoded", 415, "JSON"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_refused(
    shop: Touchpoint, data: str | bytes, content_type: str, status: int, words: str
) -> None:
    got, answer, _ = await call(shop, "POST", "/api/v1/customers", data=data, headers={"Content-Type": content_type})
    assert got == status
    assert words in answer["error"]
    assert await shop.query("SELECT id FROM customer") == []


@pytest.mark.parametrize("key", [None, "wrong-key", ""])
@pytest.mark.parametrize(
    "method,path",
    [("POST", "/api/v1/customers"), ("GET", "/api/v1/customers/C-1001"), ("GET", "/api/v1/catalog/stores")],
)
async def test_without_a_valid_api_key_nothing_is_read_or_written(
    shop: Touchpoint, key: str | None, method: str, path: str
) -> None:
    status, answer, headers = await call(shop, method, path, ANNA if method == "POST" else None, key=key)
    assert status == 401
    assert "API key" in answer["error"] and headers["WWW-Authenticate"] == "Bearer"
    assert await shop.query("SELECT id FROM customer") == []


async def test_an_unknown_or_erased_customer_is_not_found(shop: Touchpoint) -> None:
    status, answer, _ = await call(shop, "GET", "/api/v1/customers/C-404")
    assert status == 404 and "C-404" in answer["error"]
    _, anna, _ = await call(shop, "POST", "/api/v1/customers", ANNA)
    await shop.app[DB].write(lambda conn: store.erase_customer(conn, anna["id"], NOW))
    status, _, _ = await call(shop, "GET", "/api/v1/customers/C-1001")
    assert status == 404
    status, _, _ = await call(shop, "POST", "/api/v1/customers/C-1001/link-tokens")
    assert status == 404


# --- account links ---------------------------------------------------------------------


def configure_links(tp: Touchpoint, **values: Any) -> None:
    tp.app[CONFIG].links = Links(**values)


async def test_a_link_token_comes_with_a_deep_link_per_configured_channel(shop: Touchpoint) -> None:
    configure_links(
        shop,
        telegram_bot_username="ExampleShopBot",
        viber_chat_uri="exampleshop",
        whatsapp_number="+49 30 1234567",
        whatsapp_text=load_config(None).links.whatsapp_text,
    )
    await call(shop, "POST", "/api/v1/customers", ANNA)
    status, answer, _ = await call(shop, "POST", "/api/v1/customers/C-1001/link-tokens")
    assert status == 201
    token = answer["token"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", token)
    expires = datetime.fromisoformat(answer["expires_at"])
    assert timedelta(days=7) - timedelta(minutes=1) < expires - datetime.now(timezone.utc) <= timedelta(days=7)
    links = answer["links"]
    assert links["telegram"] == f"https://t.me/ExampleShopBot?start={token}"
    assert links["viber"] == f"viber://pa?chatURI=exampleshop&context={token}"
    whatsapp = urlsplit(links["whatsapp"])
    assert (whatsapp.scheme, whatsapp.netloc, whatsapp.path) == ("https", "wa.me", "/49301234567")
    prefilled = parse_qs(whatsapp.query)["text"][0]
    assert "Kundenkonto" in prefilled  # Anna's locale is German
    assert shop_store.token_in_text(prefilled) == token

    # a second token is another one; each is stored for Anna
    _, second, _ = await call(shop, "POST", "/api/v1/customers/C-1001/link-tokens")
    assert second["token"] != token
    assert len(await shop.query("SELECT token FROM account_link")) == 2


async def test_links_are_given_only_for_channels_with_a_setting(shop: Touchpoint) -> None:
    await call(shop, "POST", "/api/v1/customers", {"external_id": "C-7"})
    _, answer, _ = await call(shop, "POST", "/api/v1/customers/C-7/link-tokens")
    assert answer["links"] == {}
    configure_links(shop, whatsapp_number="4930999", whatsapp_text=LocalText(en="Link me: {token}", de="Verknüpfen: {token}"))
    _, answer, _ = await call(shop, "POST", "/api/v1/customers/C-7/link-tokens")
    assert list(answer["links"]) == ["whatsapp"]
    assert unquote(answer["links"]["whatsapp"]) == f"https://wa.me/4930999?text=Link me: {answer['token']}"
    status, answer, _ = await call(shop, "POST", "/api/v1/customers/C-404/link-tokens")
    assert status == 404 and "C-404" in answer["error"]


def test_the_token_is_found_in_a_whatsapp_message_and_nothing_else_is() -> None:
    token = shop_store.new_link_token()
    assert len(token) <= 64 and re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert shop_store.token_in_text(f"Hello! Please link my customer account. Code: {token}") == token
    assert shop_store.token_in_text(f"{token}.") == token
    assert shop_store.token_in_text(f"x{token}") is None  # glued to another word
    assert shop_store.token_in_text(token + "a") is None  # longer than a token
    assert shop_store.token_in_text("link_short and a normal message") is None
    assert shop_store.token_in_text(None) is None


async def chat_customer(tp: Touchpoint, channel: str, address: str, *, locale: str = "en") -> int:
    """A customer who only chatted: consents, favourites, a welcome code."""

    def make(conn: Any) -> int:
        loaded = store.create_identity(conn, channel, address, "Annie", locale)
        customer_id = loaded.customer.id
        for purpose, granted in (("marketing", True), ("location", True), ("location", False)):
            conn.execute(
                store.consent_t.insert().values(
                    customer_id=customer_id,
                    purpose=purpose,
                    channel=channel,
                    granted=granted,
                    source="signup",
                    wording_version="1",
                    created_at=NOW,
                )
            )
        conn.execute(
            store.customer_t.update()
            .where(store.customer_t.c.id == customer_id)
            .values(locale=locale, categories=["shoes", "home"])
        )
        store.issue_code(
            conn,
            customer_id,
            IssueCode(
                code=f"WELCOME-{channel.upper()}",
                category="shoes",
                percent=10,
                expires_at=NOW + timedelta(days=30),
                source="welcome",
            ),
            NOW,
        )
        return customer_id

    return await tp.app[DB].write(make)


async def link_token_for(tp: Touchpoint, external_id: str) -> str:
    status, answer, _ = await call(tp, "POST", f"/api/v1/customers/{external_id}/link-tokens")
    assert status == 201
    return answer["token"]


async def test_binding_moves_the_chat_identity_and_what_it_collected_to_the_shop_customer(shop: Touchpoint) -> None:
    _, anna, _ = await call(shop, "POST", "/api/v1/customers", {**ANNA, "first_name": None, "locale": None})
    chat_id = await chat_customer(shop, "telegram", "5550100301", locale="es")
    token = await link_token_for(shop, "C-1001")

    bound = await shop.app[DB].write(
        lambda conn: shop_store.bind_link_token(conn, token, "telegram", "5550100301", utcnow())
    )
    assert bound == anna["id"]

    _, read, _ = await call(shop, "GET", "/api/v1/customers/C-1001")
    assert {"channel": "telegram", "address": "5550100301", "blocked": False} in read["identities"]
    current = {(c["purpose"], c["channel"]): c["granted"] for c in read["consents"]}
    assert current[("marketing", "telegram")] is True
    assert current[("location", "telegram")] is False  # the newer of the two rows, order kept
    assert current[("marketing", "email")] is True  # the shop's own stay
    assert read["categories"] == ["shoes", "home"]
    assert read["locale"] == "es" and read["first_name"] == "Annie"  # both were missing
    codes = await shop.query("SELECT customer_id FROM discount_code WHERE code = 'WELCOME-TELEGRAM'")
    assert [r.customer_id for r in codes] == [anna["id"]]
    conversation = await shop.query("SELECT customer_id FROM conversation WHERE channel = 'telegram'")
    assert [r.customer_id for r in conversation] == [anna["id"]]
    (empty,) = await shop.query("SELECT first_name, locale, categories FROM customer WHERE id = :id", id=chat_id)
    assert tuple(empty) == (None, None, None)
    assert await shop.query("SELECT id FROM consent WHERE customer_id = :id", id=chat_id) == []
    # the pipeline now loads the shop customer for this chat
    loaded = await shop.app[DB].read(lambda conn: store.load_conversation(conn, "telegram", "5550100301", NOW))
    assert loaded is not None and loaded.customer.id == anna["id"]

    # single use: a second opening changes nothing
    other_chat = await chat_customer(shop, "viber", "viberUser01==")
    again = await shop.app[DB].write(
        lambda conn: shop_store.bind_link_token(conn, token, "viber", "viberUser01==", utcnow())
    )
    assert again is None
    owner = await shop.query("SELECT customer_id FROM channel_identity WHERE channel = 'viber'")
    assert [r.customer_id for r in owner] == [other_chat]


async def test_a_shop_customer_keeps_their_own_name_locale_and_categories(shop: Touchpoint) -> None:
    _, anna, _ = await call(shop, "POST", "/api/v1/customers", ANNA)

    def favourites(conn: Any) -> None:
        conn.execute(
            store.customer_t.update().where(store.customer_t.c.id == anna["id"]).values(categories=["electronics"])
        )

    await shop.app[DB].write(favourites)
    await chat_customer(shop, "whatsapp", "15550100301", locale="es")
    token = await link_token_for(shop, "C-1001")
    found = shop_store.token_in_text(f"Hallo! Code: {token}")
    assert found == token
    bound = await shop.app[DB].write(
        lambda conn: shop_store.bind_link_token(conn, found, "whatsapp", "15550100301", utcnow())
    )
    assert bound == anna["id"]
    _, read, _ = await call(shop, "GET", "/api/v1/customers/C-1001")
    assert (read["first_name"], read["locale"], read["categories"]) == ("Anna", "de", ["electronics"])


async def test_an_expired_unknown_or_foreign_token_changes_nothing(shop: Touchpoint) -> None:
    await call(shop, "POST", "/api/v1/customers", ANNA)
    await call(shop, "POST", "/api/v1/customers", {"external_id": "C-2002", "email": "ben@example.com"})
    chat_id = await chat_customer(shop, "telegram", "5550100301")
    token = await link_token_for(shop, "C-1001")
    db = shop.app[DB]

    later = utcnow() + timedelta(days=7, minutes=1)
    assert await db.write(lambda conn: shop_store.bind_link_token(conn, token, "telegram", "5550100301", later)) is None
    assert (
        await db.write(lambda conn: shop_store.bind_link_token(conn, "link_" + "x" * 32, "telegram", "5550100301", utcnow()))
        is None
    )
    # an address that never wrote to us
    assert await db.write(lambda conn: shop_store.bind_link_token(conn, token, "telegram", "999", utcnow())) is None
    # Ben's e-mail identity is Ben's: Anna's token cannot take it
    assert await db.write(lambda conn: shop_store.bind_link_token(conn, token, "email", "ben@example.com", utcnow())) is None

    owner = await shop.query("SELECT customer_id FROM channel_identity WHERE channel = 'telegram'")
    assert [r.customer_id for r in owner] == [chat_id]
    assert len(await shop.query("SELECT id FROM consent WHERE customer_id = :id", id=chat_id)) == 3
    assert [r.used_at for r in await shop.query("SELECT used_at FROM account_link")] == [None]


@pytest.mark.parametrize("platform", ["telegram", "viber"])
async def test_opening_the_deep_link_in_chat_binds_the_identity(shop: Touchpoint, platform: str) -> None:
    """The Telegram start parameter / Viber context carries the token; the pipeline binds before the turn."""
    _, anna, _ = await call(shop, "POST", "/api/v1/customers", ANNA)
    token = await link_token_for(shop, "C-1001")
    user = PlatformUser(shop, platform)
    await user.start(payload=token)
    status, found, _ = await call(shop, "GET", f"/api/v1/customers/lookup?channel={platform}&address={user.address}")
    assert status == 200 and found["id"] == anna["id"]
    # used once: binding it again changes nothing
    again = await shop.app[DB].write(lambda conn: shop_store.bind_link_token(conn, token, platform, user.address, utcnow()))
    assert again is None


# --- catalog ------------------------------------------------------------------------------

SHOES = {
    "id": "shoes",
    "name": {"en": "Sneakers", "de": "Turnschuhe"},
    "url": "https://shop.example/c/sneakers",
    "percent": 15,
}
GARDEN = {
    "id": "garden",
    "name": {"en": "Garden", "de": "Garten", "es": "Jardín"},
    "url": "https://shop.example/c/garden",
    "percent": 12,
}


async def test_categories_are_stored_and_offered_in_chat_at_once(shop: Touchpoint) -> None:
    config = shop.app[CONFIG]
    before = [c.id for c in config.categories]
    status, answer, _ = await call(shop, "POST", "/api/v1/catalog/categories", {"items": [SHOES, GARDEN]})
    assert status == 200 and answer == {"created": 2, "updated": 0}
    assert [c.id for c in config.categories] == before + ["garden"]  # shoes replaced in place
    shoes = config.category("shoes")
    assert shoes is not None and (shoes.name.get("de"), shoes.name.get("es"), shoes.percent) == (
        "Turnschuhe",
        "Sneakers",
        15,
    )
    garden = config.category("garden")
    assert garden is not None and garden.name.get("es") == "Jardín"

    status, answer, _ = await call(shop, "POST", "/api/v1/catalog/categories", {"items": [{**GARDEN, "percent": 20}]})
    assert answer == {"created": 0, "updated": 1}
    assert config.category("garden").percent == 20  # type: ignore[union-attr]
    rows = await shop.query("SELECT id, percent FROM shop_category ORDER BY id")
    assert [(r.id, r.percent) for r in rows] == [("garden", 20), ("shoes", 15)]


async def test_categories_sent_earlier_are_offered_after_a_restart(tmp_path: Path, fake_platforms: Any) -> None:
    settings = make_settings(fake_platforms.base_url, f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}")
    first = await start_touchpoint(settings, fake_platforms)
    try:
        status, _, _ = await call(first, "POST", "/api/v1/catalog/categories", {"items": [GARDEN, SHOES]})
        assert status == 200
    finally:
        await stop_touchpoint(first)
    second = await start_touchpoint(settings, fake_platforms)
    try:
        config = second.app[CONFIG]
        assert config.category("garden") is not None and config.category("garden").percent == 12  # type: ignore[union-attr]
        assert config.category("shoes").name.en == "Sneakers"  # type: ignore[union-attr]
        assert [c.id for c in config.categories].count("shoes") == 1
    finally:
        await stop_touchpoint(second)


@pytest.mark.parametrize(
    "items,field",
    [
        ([{**GARDEN, "id": "Garden!"}], "items.0.id"),
        ([{**GARDEN, "percent": 0}], "items.0.percent"),
        ([{**GARDEN, "percent": 41}], "items.0.percent"),
        ([{**GARDEN, "name": {"de": "Garten"}}], "items.0.name.en"),
        ([{**GARDEN, "name": {"en": "Garden", "fr": "Jardin"}}], "items.0.name.fr"),
        ([{**GARDEN, "colour": "green"}], "items.0.colour"),
        ([GARDEN, SHOES, GARDEN], "items"),
        ([], "items"),
    ],
)
async def test_an_invalid_category_is_refused_and_nothing_changes(
    shop: Touchpoint, items: list[Any], field: str
) -> None:
    before = list(shop.app[CONFIG].categories)
    status, answer, _ = await call(shop, "POST", "/api/v1/catalog/categories", {"items": items})
    assert status == 422 and field in fields_of(answer)
    assert await shop.query("SELECT id FROM shop_category") == []
    assert shop.app[CONFIG].categories == before


async def test_a_category_above_the_shops_discount_cap_is_refused(shop: Touchpoint) -> None:
    shop.app[CONFIG].discounts.max_percent = 15
    status, answer, _ = await call(
        shop, "POST", "/api/v1/catalog/categories", {"items": [SHOES, GARDEN, {**GARDEN, "id": "pool", "percent": 16}]}
    )
    assert status == 422
    assert answer["fields"] == [{"field": "items.2.percent", "message": "at most 15 (the shop's discount cap)"}]
    assert await shop.query("SELECT id FROM shop_category") == []


PRODUCT = {
    "id": "SKU-1",
    "name": "Trail runner",
    "category": "shoes",
    "url": "https://shop.example/p/1",
    "price": 89.9,
    "currency": "EUR",
    "in_stock": False,
}


async def test_products_are_created_and_replaced(shop: Touchpoint) -> None:
    launch = {"id": "SKU-2", "name": "Rain jacket", "category": "clothing", "available_on": "2026-04-01"}
    status, answer, _ = await call(shop, "POST", "/api/v1/catalog/products", {"items": [PRODUCT, launch]})
    assert status == 200 and answer == {"created": 2, "updated": 0}
    status, answer, _ = await call(
        shop, "POST", "/api/v1/catalog/products", {"items": [{**PRODUCT, "in_stock": True, "price": 79}]}
    )
    assert answer == {"created": 0, "updated": 1}
    rows = await shop.query("SELECT id, price, currency, in_stock, available_on FROM product ORDER BY id")
    assert [tuple(r) for r in rows] == [("SKU-1", 79.0, "EUR", 1, None), ("SKU-2", None, "EUR", 1, "2026-04-01")]


@pytest.mark.parametrize(
    "change,field",
    [
        ({"price": -1}, "items.0.price"),
        ({"price": "cheap"}, "items.0.price"),
        ({"currency": "euro"}, "items.0.currency"),
        ({"available_on": "soon"}, "items.0.available_on"),
        ({"in_stock": "perhaps"}, "items.0.in_stock"),
        ({"in_stock": "yes"}, "items.0.in_stock"),
        ({"in_stock": 1}, "items.0.in_stock"),
        ({"price": "79.90"}, "items.0.price"),
        ({"name": ""}, "items.0.name"),
        ({"id": None}, "items.0.id"),
        ({"sku": "x"}, "items.0.sku"),
    ],
)
async def test_an_invalid_product_is_refused(shop: Touchpoint, change: dict[str, Any], field: str) -> None:
    status, answer, _ = await call(shop, "POST", "/api/v1/catalog/products", {"items": [{**PRODUCT, **change}]})
    assert status == 422 and field in fields_of(answer)
    assert await shop.query("SELECT id FROM product") == []


async def test_at_most_1000_items_per_request(shop: Touchpoint) -> None:
    items = [{**PRODUCT, "id": f"SKU-{n}"} for n in range(1001)]
    status, answer, _ = await call(shop, "POST", "/api/v1/catalog/products", {"items": items})
    assert status == 422 and fields_of(answer) == ["items"]
    status, answer, _ = await call(shop, "POST", "/api/v1/catalog/products", {"items": items[:1000]})
    assert status == 200 and answer == {"created": 1000, "updated": 0}


STORE = {
    "id": "berlin-mitte",
    "name": "Berlin Mitte",
    "address": "Rosenthaler Str. 1, 10119 Berlin",
    "latitude": 52.5298,
    "longitude": 13.4015,
    "radius_m": 300,
}


async def test_stores_are_stored_and_listed(shop: Touchpoint) -> None:
    status, answer, _ = await call(shop, "GET", "/api/v1/catalog/stores")
    assert status == 200 and answer == {"items": []}
    hamburg = {"id": "hamburg", "name": "Hamburg", "latitude": 53.55, "longitude": 9.99, "radius_m": 50_000}
    status, answer, _ = await call(shop, "POST", "/api/v1/catalog/stores", {"items": [STORE, hamburg]})
    assert status == 200 and answer == {"created": 2, "updated": 0}
    await call(shop, "POST", "/api/v1/catalog/stores", {"items": [{**STORE, "radius_m": 150}]})
    status, answer, _ = await call(shop, "GET", "/api/v1/catalog/stores")
    assert answer["items"] == [{**STORE, "radius_m": 150.0}, {**hamburg, "address": "", "radius_m": 50_000.0}]


@pytest.mark.parametrize(
    "change,field",
    [
        ({"latitude": 91}, "items.0.latitude"),
        ({"longitude": -180.5}, "items.0.longitude"),
        ({"radius_m": 0}, "items.0.radius_m"),
        ({"radius_m": 50_001}, "items.0.radius_m"),
        ({"latitude": "north"}, "items.0.latitude"),
        ({"latitude": "52.5"}, "items.0.latitude"),
        ({"latitude": True}, "items.0.latitude"),
        ({"radius_m": "300"}, "items.0.radius_m"),
        ({"name": None}, "items.0.name"),
    ],
)
async def test_an_invalid_store_is_refused(shop: Touchpoint, change: dict[str, Any], field: str) -> None:
    status, answer, _ = await call(shop, "POST", "/api/v1/catalog/stores", {"items": [{**STORE, **change}]})
    assert status == 422 and field in fields_of(answer)
    assert await shop.query("SELECT id FROM store") == []


async def test_a_body_without_items_is_refused(shop: Touchpoint) -> None:
    status, answer, _ = await call(shop, "POST", "/api/v1/catalog/stores", {"stores": [STORE]})
    assert status == 422 and set(fields_of(answer)) == {"items", "stores"}


# --- the description ----------------------------------------------------------------------


async def test_openapi_document_is_public_valid_and_lists_every_route(shop: Touchpoint) -> None:
    from openapi_spec_validator import validate

    status, spec, _ = await call(shop, "GET", "/api/v1/openapi.json", key=None)
    assert status == 200
    validate(spec)
    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in shop.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(("/api/v1/", "/l/"))
        and route.method != "HEAD"
    }
    assert spec["servers"] == [{"url": "/api/v1"}]
    assert spec["paths"]["/l/{token}"]["servers"] == [{"url": "/"}]  # outside the API's base
    documented = {
        (method, ("" if "servers" in item else "/api/v1") + path)
        for path, item in spec["paths"].items()
        for method in item
        if method != "servers"
    }
    assert registered - documented == set()
    mine = {
        ("post", "/api/v1/customers"),
        ("get", "/api/v1/customers/{external_id}"),
        ("get", "/api/v1/customers/lookup"),
        ("post", "/api/v1/customers/{external_id}/link-tokens"),
        ("post", "/api/v1/catalog/categories"),
        ("post", "/api/v1/catalog/products"),
        ("post", "/api/v1/catalog/stores"),
        ("get", "/api/v1/catalog/stores"),
    }
    assert mine <= registered
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "servers":
                continue
            codes = set(operation["responses"])
            if method == "post":
                assert {"$ref": "#/components/parameters/IdempotencyKey"} in operation["parameters"], path
                assert {"400", "401", "415", "422"} <= codes, path
            public = operation.get("security") == []
            assert ("401" in codes) != public, path
    assert {
        p for p, item in spec["paths"].items() if item["get" if "get" in item else "post"].get("security") == []
    } == {"/l/{token}", "/openapi.json"}
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    upsert = spec["components"]["schemas"]["CustomerUpsert"]
    assert upsert["additionalProperties"] is False and upsert["required"] == ["external_id"]
    event = spec["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "discriminator" in spec["components"]["schemas"][event["$ref"].rsplit("/", 1)[1]]


# --- the SQL on both databases --------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "postgres":
        url = await fresh_postgres_database(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}"
    await migrate(url)
    db = Database(url)
    await db.start()
    yield db
    await db.close()


async def test_the_shop_sql_runs_on_sqlite_and_postgresql(database: Database) -> None:
    db = database
    anna = {k: v for k, v in ANNA.items() if k != "consents"}
    consent = [shop_store.NewConsent("marketing", "email", True, "1")]
    anna_id, created = await db.write(lambda conn: shop_store.upsert_customer(conn, anna, consent, NOW))
    assert created
    again = await db.write(
        lambda conn: shop_store.upsert_customer(
            conn, {"external_id": "C-1001", "email": "a2@example.com", "attributes": {"tier": None}}, consent, NOW
        )
    )
    assert again == (anna_id, False)
    with pytest.raises(shop_store.AddressTaken):
        await db.write(
            lambda conn: shop_store.upsert_customer(conn, {"external_id": "C-2", "phone": ANNA["phone"]}, [], NOW)
        )
    profile = await db.read(lambda conn: shop_store.customer_profile(conn, "C-1001"))
    assert profile is not None and profile["attributes"] == {"order_count": 3, "customer_since": "2023-04-01"}
    assert [(i["channel"], i["address"]) for i in profile["identities"]] == [
        ("email", "a2@example.com"),
        ("sms", ANNA["phone"]),
    ]
    assert len(profile["consents"]) == 1
    assert await db.read(lambda conn: shop_store.customer_profile(conn, "C-2")) is None

    def chat(conn: Any) -> int:
        customer_id = store.create_identity(conn, "viber", "vb01==", "Annie", "es").customer.id
        conn.execute(
            store.consent_t.insert().values(
                customer_id=customer_id,
                purpose="marketing",
                channel="viber",
                granted=True,
                source="signup",
                wording_version="1",
                created_at=NOW,
            )
        )
        store.issue_code(
            conn,
            customer_id,
            IssueCode(code="W-1", category="shoes", percent=10, expires_at=NOW + timedelta(days=30), source="welcome"),
            NOW,
        )
        conn.execute(store.customer_t.update().where(store.customer_t.c.id == customer_id).values(categories=["home"]))
        return customer_id

    chat_id = await db.write(chat)
    link = await db.write(lambda conn: shop_store.create_link_token(conn, "C-1001", NOW))
    assert link is not None and link["locale"] == "de"
    token = link["token"]
    assert await db.write(lambda conn: shop_store.bind_link_token(conn, token, "viber", "vb01==", NOW)) == anna_id
    assert await db.write(lambda conn: shop_store.bind_link_token(conn, token, "viber", "vb01==", NOW)) is None
    profile = await db.read(lambda conn: shop_store.customer_profile(conn, "C-1001"))
    assert profile is not None and profile["categories"] == ["home"]
    assert {(c["channel"], c["granted"]) for c in profile["consents"]} == {("email", True), ("viber", True)}
    left = await db.read(
        lambda conn: conn.execute(
            select(store.customer_t.c.categories, store.customer_t.c.first_name).where(store.customer_t.c.id == chat_id)
        ).one()
    )
    assert tuple(left) == (None, None)

    assert await db.write(lambda conn: shop_store.upsert_products(conn, [PRODUCT], NOW)) == (1, 0)
    assert await db.write(lambda conn: shop_store.upsert_products(conn, [{**PRODUCT, "price": 1.5}], NOW)) == (0, 1)
    assert await db.write(lambda conn: shop_store.upsert_categories(conn, [GARDEN, SHOES], NOW)) == (2, 0)
    assert [c["id"] for c in await db.read(shop_store.load_categories)] == ["garden", "shoes"]
    assert await db.write(lambda conn: shop_store.upsert_stores(conn, [STORE], NOW)) == (1, 0)
    assert [s["id"] for s in await db.read(shop_store.list_stores)] == ["berlin-mitte"]

    answer = shop_store.StoredAnswer("f" * 64, 201, b'{"ok": true}')
    await db.write(lambda conn: shop_store.save_answer(conn, "scope:key", answer, NOW))
    assert await db.read(lambda conn: shop_store.find_answer(conn, "scope:key", NOW - timedelta(hours=24))) == answer
    assert await db.read(lambda conn: shop_store.find_answer(conn, "scope:key", NOW + timedelta(seconds=1))) is None
    later = NOW + timedelta(days=2)
    await db.write(lambda conn: shop_store.save_answer(conn, "scope:other", answer, later, later - timedelta(hours=24)))
    assert await db.read(lambda conn: shop_store.find_answer(conn, "scope:key", NOW - timedelta(days=9))) is None
