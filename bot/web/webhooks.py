"""Webhook routes: authenticate, cut into inbox items, store durably, then answer 200.

Order of checks: size (413), authenticity (401/403, nothing stored), then
shape (authentic but unusable bodies get 200 so the platform stops retrying,
and are logged). The body is hashed exactly as received.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from bot import metrics
from bot.appkeys import ADAPTERS, PIPELINE
from integrations.base import WebhookError

log = logging.getLogger("touchpoint.webhooks")

def _ok() -> web.Response:
    return web.json_response({"ok": True})


async def _read_body(request: web.Request, channel: str) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.WEBHOOK_REJECTED.labels(channel, "too_large").inc()
        log.warning("webhook.too_large channel=%s length=%s", channel, request.content_length)
        raise


async def handle_webhook(request: web.Request) -> web.StreamResponse:
    with request.app[PIPELINE].ingesting():
        return await _handle_webhook(request)


async def _handle_webhook(request: web.Request) -> web.StreamResponse:
    channel = request.match_info["channel"]
    adapter = request.app[ADAPTERS].get(channel)
    if adapter is None:
        raise web.HTTPNotFound(text=f"channel {channel} is not configured\n")
    body = await _read_body(request, channel)
    if not adapter.verify(request.headers, body):
        metrics.WEBHOOK_REJECTED.labels(channel, "auth").inc()
        log.warning("webhook.auth_failed channel=%s remote=%s", channel, request.remote)
        status = 401 if channel == "telegram" else 403
        return web.json_response({"ok": False, "error": "authentication failed"}, status=status)
    content_type = request.content_type
    if content_type != "application/json":
        log.warning("webhook.ignored channel=%s reason=content_type(%s)", channel, content_type)
        return _ok()
    try:
        data = orjson.loads(body)
        items = adapter.split(data)
    except (orjson.JSONDecodeError, WebhookError, ValueError, TypeError, KeyError, AttributeError) as exc:
        metrics.WEBHOOK_REJECTED.labels(channel, "malformed").inc()
        log.warning("webhook.ignored channel=%s reason=malformed error=%r", channel, exc)
        return _ok()
    if not items:
        log.info("webhook.ignored channel=%s reason=nothing_to_handle", channel)
        return _ok()
    pipeline = request.app[PIPELINE]
    ids = await pipeline.accept(channel, items)
    for item, new_id in zip(items, ids):
        if item.inline:
            message = await pipeline.inline_reply(channel, item, new_id)
            reply = adapter.webhook_reply(message) if message is not None else None
            if reply is not None:
                return web.json_response(reply)
    return _ok()


async def whatsapp_verify(request: web.Request) -> web.StreamResponse:
    adapter = request.app[ADAPTERS].get("whatsapp")
    if adapter is None:
        raise web.HTTPNotFound(text="channel whatsapp is not configured\n")
    challenge = adapter.verify_challenge(request.query)  # type: ignore[attr-defined]
    if challenge is None:
        log.warning("webhook.verify_failed channel=whatsapp remote=%s", request.remote)
        return web.Response(status=403, text="verification failed\n")
    return web.Response(text=challenge, content_type="text/plain")


def setup(app: web.Application) -> None:
    app.router.add_get("/webhooks/whatsapp", whatsapp_verify)
    app.router.add_post("/webhooks/{channel:telegram|viber|whatsapp|sms}", handle_webhook)
