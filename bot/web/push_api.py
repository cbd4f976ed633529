"""The proactive half of the shop API: events, direct pushes, campaigns, stats, the dry run, tracked links.

Handlers validate with the models in ``bot/web/api_models.py``, translate the
shop's ids to ours, and hand over to ``bot.touchpoints`` (events),
``bot.pushes`` (decisions) and ``bot.campaigns``; they hold no rules themselves.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any, Sequence

import orjson
from aiohttp import web
from pydantic import TypeAdapter

from bot import audience as audiences
from bot import event_store, push_store, stats
from bot.appkeys import CAMPAIGNS, CONFIG, DB, PUSHES, TOUCHPOINTS
from bot.touchpoints import UnknownReference
from bot.web.api_errors import api_error, field_error, parse_body
from bot.web.api_models import AudienceFilter, CampaignRequest, DryRunRequest, PreviewRequest, PushRequest, ShopEvent

EVENT = TypeAdapter(ShopEvent)
# User agents of the messengers' link-preview fetchers (they open links in messages by themselves).
LINK_PREVIEW_AGENTS = ("telegrambot", "whatsapp", "facebookexternalhit", "viber", "twitterbot", "slackbot")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _row_id(text: str) -> int | None:
    """A row id from a path or query: ASCII digits that fit a 64-bit column, else None."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


def _check_touchpoint(request: web.Request, name: str, field: str = "touchpoint") -> None:
    touchpoints = request.app[CONFIG].touchpoints
    if name not in touchpoints:
        raise field_error(422, field, f"unknown touchpoint; must be one of {sorted(touchpoints)}")


def _check_audience(request: web.Request, audience: AudienceFilter | None, field: str = "audience") -> None:
    """A purpose or category the shop does not have would match nobody, silently: a 422 instead."""
    if audience is None:
        return
    config = request.app[CONFIG]
    purposes = [p.id for p in config.consent_purposes]
    if audience.consent_purpose is not None and audience.consent_purpose not in purposes:
        raise field_error(422, f"{field}.consent_purpose", f"unknown consent purpose; configured: {purposes}")
    categories = {c.id for c in config.categories}
    for name in ("categories_any", "categories_all"):
        for index, category in enumerate(getattr(audience, name)):
            if category not in categories:
                raise field_error(
                    422, f"{field}.{name}.{index}", f"unknown category {category!r}; known: {sorted(categories)}"
                )


async def _customer_ids(request: web.Request, external_ids: Sequence[str], field: str = "customer_ids") -> list[int]:
    def query(conn: Any) -> dict[str, int | None]:
        return {e: event_store.customer_id_for(conn, e) for e in external_ids}

    found = await request.app[DB].read(query)
    unknown = [e for e, i in found.items() if i is None]
    if unknown:
        raise api_error(422, "unknown customers", [{"field": field, "message": f"not known (upsert them first): {unknown[:20]}"}])
    return [found[e] for e in external_ids]  # type: ignore[misc]


# --------------------------------------------------------------------------- events


async def post_event(request: web.Request) -> web.Response:
    event = await parse_body(request, EVENT)
    try:
        result = await request.app[TOUCHPOINTS].handle(event.model_dump(mode="json"))
    except UnknownReference as exc:
        raise api_error(422, str(exc), [{"field": exc.field, "message": str(exc)}]) from None
    pushes = result.get("pushes") or []
    if pushes:
        # The shop knows its customers by its own ids, as in GET /pushes/{id}.
        ours = [p["customer_id"] for p in pushes]
        theirs = await request.app[DB].read(lambda conn: {i: push_store.external_id(conn, i) for i in ours})
        result["pushes"] = [{**p, "customer_id": theirs.get(p["customer_id"])} for p in pushes]
    return _json({"type": event.type, **result}, status=202)


# --------------------------------------------------------------------------- pushes


async def post_push(request: web.Request) -> web.Response:
    body: PushRequest = await parse_body(request, PushRequest)
    _check_touchpoint(request, body.touchpoint)
    _check_audience(request, body.audience)
    if body.customer_ids is not None:
        ids = await _customer_ids(request, body.customer_ids)
    else:
        now = datetime.now(timezone.utc)
        filters = body.audience.model_dump() if body.audience else {}
        ids = await request.app[DB].read(lambda conn: list(audiences.resolve(conn, filters, now)))
    # One request is one push per customer; a retried request is answered by its Idempotency-Key.
    key = f"push:{secrets.token_hex(8)}"
    made = await request.app[PUSHES].submit(body.touchpoint, ids, body.variables, dedup_key=key)
    return _json({"touchpoint": body.touchpoint, "push_ids": [push_id for push_id, _ in made], "targeted": len(made)}, status=202)


async def get_push(request: web.Request) -> web.Response:
    push_id = _row_id(request.match_info["push_id"])
    if push_id is None:
        raise api_error(404, "no such push")

    def query(conn: Any) -> dict[str, Any] | None:
        row = push_store.get(conn, push_id)
        if row is None:
            return None
        external = push_store.external_id(conn, row.customer_id)
        return {
            "id": row.id,
            "customer_id": external,
            "touchpoint": row.touchpoint,
            "status": row.status,
            "reason": row.reason,
            "channel": row.channel,
            "campaign_id": row.campaign_id,
            "due_at": _iso(row.due_at),
            "clicked_at": _iso(row.clicked_at),
            "converted_at": _iso(row.converted_at),
            "history": [
                {"at": _iso(h.at), "status": h.status, "reason": h.reason, "channel": h.channel, "detail": h.detail}
                for h in push_store.history(conn, push_id)
            ],
        }

    found = await request.app[DB].read(query)
    if found is None:
        raise api_error(404, "no such push")
    return _json(found)


def _iso(value: datetime | None) -> str | None:
    return push_store.as_utc(value).isoformat() if value is not None else None  # type: ignore[union-attr]


# --------------------------------------------------------------------------- campaigns


async def post_campaign(request: web.Request) -> web.Response:
    body: CampaignRequest = await parse_body(request, CampaignRequest)
    _check_touchpoint(request, body.touchpoint)
    _check_audience(request, body.audience)
    campaigns = request.app[CAMPAIGNS]
    campaign_id = await campaigns.create(body.name, body.touchpoint, body.audience.model_dump(), body.variables, body.send_at)
    campaigns.wake()
    return _json(await campaigns.status(campaign_id), status=201)


async def preview_campaign(request: web.Request) -> web.Response:
    body: PreviewRequest = await parse_body(request, PreviewRequest)
    _check_audience(request, body.audience)
    return _json({"count": await request.app[CAMPAIGNS].preview(body.audience.model_dump())})


async def cancel_campaign(request: web.Request) -> web.Response:
    campaign_id = _row_id(request.match_info["campaign_id"])
    campaigns = request.app[CAMPAIGNS]
    before = await campaigns.status(campaign_id) if campaign_id is not None else None
    if before is None:
        raise api_error(404, "no such campaign")
    if before["status"] in ("finished", "cancelled") or not await campaigns.cancel(campaign_id):  # type: ignore[arg-type]
        raise api_error(409, f"nothing left to cancel: the campaign is {before['status']}")
    return _json(await campaigns.status(campaign_id))  # type: ignore[arg-type]


async def get_campaign(request: web.Request) -> web.Response:
    campaign_id = _row_id(request.match_info["campaign_id"])
    if campaign_id is None:
        raise api_error(404, "no such campaign")
    found = await request.app[CAMPAIGNS].status(campaign_id)
    if found is None:
        raise api_error(404, "no such campaign")
    return _json(found)


# --------------------------------------------------------------------------- stats and dry run


async def get_stats(request: web.Request) -> web.Response:
    touchpoint = request.query.get("touchpoint") or None
    campaign = request.query.get("campaign_id")
    campaign_id = None
    if campaign:
        campaign_id = _row_id(campaign)
        if campaign_id is None:
            raise api_error(422, "invalid query", [{"field": "campaign_id", "message": "must be a number"}])
    if touchpoint is not None:
        _check_touchpoint(request, touchpoint)
    result = await request.app[DB].read(lambda conn: stats.stats(conn, touchpoint=touchpoint, campaign_id=campaign_id))
    return _json(result)


async def dry_run(request: web.Request) -> web.Response:
    body: DryRunRequest = await parse_body(request, DryRunRequest)
    theirs = getattr(body.event, "customer_id", None)
    if theirs is not None and theirs != body.customer_id:
        raise field_error(422, "event.customer_id", f"{theirs!r} is not the dry run's customer_id {body.customer_id!r}")
    [customer_id] = await _customer_ids(request, [body.customer_id], field="customer_id")
    pushes = request.app[PUSHES]
    if body.push is not None:
        _check_touchpoint(request, body.push.touchpoint, "push.touchpoint")
        # Without variables the question is only about the rules; with them, also about the text.
        variables = body.push.variables if "variables" in body.push.model_fields_set else None
        return _json(await pushes.dry_run(customer_id, body.push.touchpoint, variables))
    assert body.event is not None
    try:
        concern = await request.app[TOUCHPOINTS].concerns(body.event.model_dump(mode="json"), customer_id)
    except UnknownReference as exc:
        raise api_error(422, str(exc), [{"field": f"event.{exc.field}", "message": str(exc)}]) from None
    if concern.touchpoint is None:
        return _json({"would_send": False, "action": "skip", "reason": concern.reason, "touchpoint": None, "held_back": []})
    answer = await pushes.dry_run(customer_id, concern.touchpoint)
    if concern.reason is not None:
        answer.update(would_send=False, action="skip", reason=concern.reason)
    return _json(answer)


# --------------------------------------------------------------------------- tracked links


async def follow_link(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    if not (0 < len(token) <= 32):
        raise web.HTTPNotFound(text="unknown link")
    now = datetime.now(timezone.utc)
    agent = request.headers.get("User-Agent", "").lower()
    if any(bot in agent for bot in LINK_PREVIEW_AGENTS):
        # A messenger fetching a preview is not the customer clicking.
        url = await request.app[DB].read(lambda conn: push_store.link_url(conn, token))
    else:
        url = await request.app[DB].write(lambda conn: push_store.click(conn, token, now))
    if url is None:
        raise web.HTTPNotFound(text="unknown link")
    raise web.HTTPFound(url)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/v1/events", post_event)
    app.router.add_post("/api/v1/pushes", post_push)
    app.router.add_get("/api/v1/pushes/{push_id}", get_push)
    app.router.add_post("/api/v1/campaigns", post_campaign)
    app.router.add_post("/api/v1/campaigns/preview", preview_campaign)
    app.router.add_get("/api/v1/campaigns/{campaign_id}", get_campaign)
    app.router.add_post("/api/v1/campaigns/{campaign_id}/cancel", cancel_campaign)
    app.router.add_get("/api/v1/stats", get_stats)
    app.router.add_post("/api/v1/touchpoints/dry-run", dry_run)
    app.router.add_get("/l/{token}", follow_link, allow_head=False)
