"""The shop API (``/api/v1``): bearer-key authentication and the customer lookup."""

from __future__ import annotations

from aiohttp import web

from bot import store
from bot.appkeys import DB, SETTINGS
from bot.web import openapi
from integrations.base import same_secret

CHANNELS = ("telegram", "viber", "whatsapp", "console")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def require_api_key(request: web.Request, handler):  # type: ignore[no-untyped-def]
    if not request.path.startswith("/api/") or request.path == "/api/v1/openapi.json":
        return await handler(request)
    keys = request.app[SETTINGS].api_keys
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    valid = scheme.lower() == "bearer" and any(same_secret(token, key) for key in keys)
    if not valid:
        return web.json_response(
            {"error": "missing or invalid API key (send Authorization: Bearer <key from TOUCHPOINT_API_KEYS>)"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return await handler(request)


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


def setup(app: web.Application) -> None:
    app.middlewares.append(require_api_key)
    app.router.add_get("/api/v1/customers/lookup", lookup_customer)
    app.router.add_get("/api/v1/openapi.json", openapi.openapi)
