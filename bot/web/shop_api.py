"""The shop API (``/api/v1``): bearer keys, customers, account links and the catalog.

Events, pushes, campaigns, stats and the dry run live in ``bot/web/push_api.py``.
Every body is read with ``parse_body`` (415/400/422 with the field named) and
every POST may carry an ``Idempotency-Key`` (``bot/web/idempotency.py``).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable
from urllib.parse import quote

from aiohttp import web

from bot import shop_store, store
from bot.appkeys import CONFIG, DB, SETTINGS
from bot.config import Category, Links, LocalText, ShopConfig
from bot.models import utcnow
from bot.shop_store import AddressTaken, NewConsent
from bot.web import openapi
from bot.web.api_errors import api_error, field_error, parse_body, read_limited
from bot.web.api_models import (
    CategoriesIn,
    CustomerOut,
    CustomerUpsert,
    MESSENGERS,
    attribute_problems,
    LinkTokenOut,
    ProductsIn,
    StoresIn,
    StoresOut,
)
from bot.web.idempotency import API_KEY_SCOPE, idempotency, scope_of
from integrations.base import same_secret

log = logging.getLogger("touchpoint.shop_api")

CHANNELS = ("telegram", "viber", "whatsapp", "sms", "email", "console")
PUBLIC = ("/api/v1/openapi.json",)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def require_api_key(request: web.Request, handler):  # type: ignore[no-untyped-def]
    if not request.path.startswith("/api/"):
        return await handler(request)
    if request.body_exists and (request.content_length is None or request.content_length > request.client_max_size):
        # Too large is too large, also on routes that never read their body (chunked ones included).
        await read_limited(request)
    if request.path in PUBLIC:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    key = next((k for k in request.app[SETTINGS].api_keys if same_secret(token, k)), None)
    if scheme.lower() != "bearer" or key is None:
        return web.json_response(
            {"error": "missing or invalid API key (send Authorization: Bearer <key from TOUCHPOINT_API_KEYS>)"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    request[API_KEY_SCOPE] = scope_of(key)
    return await handler(request)


# --- customers -------------------------------------------------------------------------


async def lookup_customer(request: web.Request) -> web.Response:
    channel = request.query.get("channel", "")
    address = request.query.get("address", "")
    if channel not in CHANNELS:
        return _error(400, f"query parameter 'channel' must be one of {', '.join(CHANNELS)}")
    if not address or len(address) > 128:
        return _error(400, "query parameter 'address' is required (the platform user id, at most 128 characters)")
    found = await request.app[DB].read(lambda conn: store.lookup_customer(conn, channel, address))
    if found is None:
        return _error(404, "no customer with that channel address")
    return web.json_response(found)


async def upsert_customer(request: web.Request) -> web.Response:
    body = await parse_body(request, CustomerUpsert)
    problems = attribute_problems(body.attributes)
    if problems:
        raise api_error(422, "invalid request", [{"field": f"attributes.{key}", "message": m} for key, m in problems])
    config = request.app[CONFIG]
    consents = []
    for index, given in enumerate(body.consents):
        purpose = config.purpose(given.purpose)
        if purpose is None:
            known = ", ".join(p.id for p in config.consent_purposes)
            raise field_error(
                422, f"consents.{index}.purpose", f"unknown consent purpose {given.purpose!r}; configured: {known}"
            )
        if given.granted and given.channel in MESSENGERS:
            # The customer answers for Telegram, Viber and WhatsApp in the chat; a shop's
            # checkbox must not overrule a "no" given there. Withdrawing is always allowed.
            raise field_error(
                422, f"consents.{index}.granted",
                f"consent on {given.channel} is given by the customer in the chat; the shop API can only withdraw it",
            )
        consents.append(NewConsent(given.purpose, given.channel, given.granted, purpose.version))
    values = body.model_dump(include=body.model_fields_set - {"consents"})
    values["external_id"] = body.external_id
    try:
        _id, created = await request.app[DB].write(
            lambda conn: shop_store.upsert_customer(conn, values, consents, utcnow())
        )
    except AddressTaken as exc:
        what = "e-mail address" if exc.field == "email" else "phone number"
        raise field_error(409, exc.field, f"another customer ({exc.owner}) already has this {what}") from None
    return await _profile_response(request, body.external_id, status=201 if created else 200)


async def get_customer(request: web.Request) -> web.Response:
    return await _profile_response(request, request.match_info["external_id"])


async def _profile_response(request: web.Request, external_id: str, status: int = 200) -> web.Response:
    profile = await request.app[DB].read(lambda conn: shop_store.customer_profile(conn, external_id))
    if profile is None:
        raise api_error(404, f"no customer with external_id {external_id!r}")
    return web.json_response(CustomerOut.model_validate(profile).model_dump(mode="json"), status=status)


# --- account links ---------------------------------------------------------------------


async def create_link_token(request: web.Request) -> web.Response:
    external_id = request.match_info["external_id"]
    made = await request.app[DB].write(lambda conn: shop_store.create_link_token(conn, external_id, utcnow()))
    if made is None:
        raise api_error(404, f"no customer with external_id {external_id!r}")
    config = request.app[CONFIG]
    links = deep_links(config.links, made["token"], made["locale"] or config.default_locale)
    answer = LinkTokenOut(token=made["token"], expires_at=made["expires_at"], links=links)
    return web.json_response(answer.model_dump(mode="json"), status=201)


def deep_links(settings: Links, token: str, locale: str) -> dict[str, str]:
    """Per-channel links that carry ``token`` back to us; a channel without a setting is left out.

    ``settings`` is the config's ``[links]`` table: ``telegram_bot_username``,
    ``viber_chat_uri``, ``whatsapp_number`` and optionally ``whatsapp_text``.
    """
    links: dict[str, str] = {}
    username = settings.telegram_bot_username
    if username:
        links["telegram"] = f"https://t.me/{quote(username.lstrip('@'))}?start={token}"
    chat_uri = settings.viber_chat_uri
    if chat_uri:
        links["viber"] = f"viber://pa?chatURI={quote(chat_uri, safe='')}&context={token}"
    number = "".join(ch for ch in settings.whatsapp_number if ch.isdigit())
    if number:
        template = settings.whatsapp_text.get(locale)
        links["whatsapp"] = f"https://wa.me/{number}?text={quote(template.format(token=token), safe='')}"
    return links


# --- catalog ----------------------------------------------------------------------------


async def upsert_categories(request: web.Request) -> web.Response:
    body = await parse_body(request, CategoriesIn)
    config = request.app[CONFIG]
    cap = config.discounts.max_percent
    for index, item in enumerate(body.items):
        if item.percent > cap:
            raise field_error(422, f"items.{index}.percent", f"at most {cap} (the shop's discount cap)")
    items = [item.model_dump() for item in body.items]
    created, updated = await request.app[DB].write(lambda conn: shop_store.upsert_categories(conn, items, utcnow()))
    apply_categories(config, items)
    return web.json_response({"created": created, "updated": updated})


def apply_categories(config: ShopConfig, items: Iterable[dict[str, Any]]) -> None:
    """Make API categories what the dialogs offer: replace those with the same id, append new ones.

    In place, because the dialog engine holds this very config object.
    """
    for item in items:
        category = Category(
            id=item["id"], name=LocalText(**item["name"]), url=item.get("url", ""), percent=item["percent"]
        )
        for index, existing in enumerate(config.categories):
            if existing.id == category.id:
                config.categories[index] = category
                break
        else:
            config.categories.append(category)


async def load_stored_categories(app: web.Application) -> None:
    """At start-up, add the categories sent over the API earlier to the config's."""
    stored = await app[DB].read(shop_store.load_categories)
    apply_categories(app[CONFIG], stored)
    if stored:
        log.info("shop_api.categories_loaded count=%d", len(stored))


async def upsert_products(request: web.Request) -> web.Response:
    body = await parse_body(request, ProductsIn)
    categories = {c.id for c in request.app[CONFIG].categories}
    for index, item in enumerate(body.items):
        if item.category not in categories:
            # Launch alerts match favourite categories: an unknown one would reach nobody.
            raise field_error(
                422, f"items.{index}.category",
                f"unknown category {item.category!r}; known: {sorted(categories)} (add it with POST /api/v1/catalog/categories)",
            )
    items = [item.model_dump() for item in body.items]
    created, updated = await request.app[DB].write(lambda conn: shop_store.upsert_products(conn, items, utcnow()))
    return web.json_response({"created": created, "updated": updated})


async def upsert_stores(request: web.Request) -> web.Response:
    body = await parse_body(request, StoresIn)
    items = [item.model_dump() for item in body.items]
    created, updated = await request.app[DB].write(lambda conn: shop_store.upsert_stores(conn, items, utcnow()))
    return web.json_response({"created": created, "updated": updated})


async def list_stores(request: web.Request) -> web.Response:
    stores = await request.app[DB].read(shop_store.list_stores)
    return web.json_response(StoresOut.model_validate({"items": stores}).model_dump(mode="json"))


def setup(app: web.Application) -> None:
    # Order matters: the key check first, so unauthenticated requests never reach the idempotency store.
    app.middlewares.append(require_api_key)
    app.middlewares.append(idempotency)
    router = app.router
    router.add_get("/api/v1/openapi.json", openapi.openapi)
    router.add_get("/api/v1/customers/lookup", lookup_customer)
    router.add_post("/api/v1/customers", upsert_customer)
    router.add_get("/api/v1/customers/{external_id}", get_customer)
    router.add_post("/api/v1/customers/{external_id}/link-tokens", create_link_token)
    router.add_post("/api/v1/catalog/categories", upsert_categories)
    router.add_post("/api/v1/catalog/products", upsert_products)
    router.add_post("/api/v1/catalog/stores", upsert_stores)
    router.add_get("/api/v1/catalog/stores", list_stores)
