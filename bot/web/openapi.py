"""``GET /api/v1/openapi.json``: the shop API's description (OpenAPI 3.1).

Public on purpose: it holds no data, and client generators fetch it before
they have a key. Kept next to the routes it describes; extend both together.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

CONSENT = {
    "type": "object",
    "required": ["purpose", "channel", "granted", "updated_at"],
    "properties": {
        "purpose": {"type": "string", "examples": ["marketing"]},
        "channel": {"type": "string", "enum": ["telegram", "viber", "whatsapp", "console"]},
        "granted": {"type": "boolean"},
        "updated_at": {"type": "string", "format": "date-time"},
        "wording_version": {"type": "string"},
    },
}
CUSTOMER = {
    "type": "object",
    "required": ["id", "name", "locale", "consents"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": ["string", "null"], "description": "first name as the platform gave it"},
        "locale": {"type": ["string", "null"], "examples": ["de"]},
        "channel": {"type": "string"},
        "address": {"type": "string"},
        "blocked": {"type": "boolean", "description": "the customer blocked the bot on this channel"},
        "consents": {"type": "array", "items": CONSENT, "description": "current value per purpose and channel"},
    },
}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Touchpoint shop API", "version": "1"},
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "a key from TOUCHPOINT_API_KEYS"}},
        "schemas": {"Customer": CUSTOMER, "Consent": CONSENT, "Error": ERROR},
    },
    "paths": {
        "/customers/lookup": {
            "get": {
                "summary": "Find a customer by a messaging address, with their current consents",
                "parameters": [
                    {"name": "channel", "in": "query", "required": True,
                     "schema": {"type": "string", "enum": ["telegram", "viber", "whatsapp", "console"]}},
                    {"name": "address", "in": "query", "required": True,
                     "schema": {"type": "string", "maxLength": 128},
                     "description": "the platform's user id (Telegram chat id, Viber user id, WhatsApp wa_id)"},
                ],
                "responses": {
                    "200": {"description": "the customer",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Customer"}}}},
                    "400": _error("a parameter is missing or invalid"),
                    "401": _error("missing or invalid API key"),
                    "404": _error("no customer with that address"),
                },
            }
        }
    },
}


async def openapi(_request: web.Request) -> web.Response:
    return web.json_response(SPEC)
