"""``GET /api/v1/openapi.json``: the shop API's description (OpenAPI 3.1), built from the pydantic models.

Public on purpose: it holds no data, and client generators fetch it before
they have a key. The schemas come from ``bot/web/api_models.py`` so they
cannot drift from what the handlers validate; ``ROUTES`` lists every endpoint
(tests check that each registered ``/api/v1`` route is in it). Add a route
here when you add a handler.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Union

from aiohttp import web
from pydantic import BaseModel, RootModel
from pydantic.json_schema import models_json_schema

from bot.web.api_models import (
    CampaignRequest,
    CategoriesIn,
    CustomerOut,
    CustomerUpsert,
    DryRunRequest,
    ErrorBody,
    LinkTokenOut,
    LookupOut,
    PreviewRequest,
    ProductsIn,
    PushRequest,
    PushStatus,
    ShopEvent,
    StoresIn,
    StoresOut,
    UpsertCounts,
)

REF = "#/components/schemas/{model}"
BASE = "/api/v1"  # the server URL; paths are relative to it
Body = Union[type[BaseModel], dict[str, Any], None]


class Event(RootModel[ShopEvent]):
    """One shop event: its "type" says which, and so which fields it has."""


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    schema: dict[str, Any]
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation_id: str  # what client generators name the call
    summary: str
    tag: str
    responses: dict[int, tuple[str, Body]]
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()  # besides those every route has (401; and 400, 415, 422 with a body)
    query: tuple[Query, ...] = ()
    path_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)  # default: a string
    public: bool = False


ERRORS = {
    400: "malformed JSON, a body that is not a JSON object, a bad query parameter or a bad Idempotency-Key",
    401: "missing or invalid API key",
    404: "not found",
    409: "the request conflicts with stored data (the field is named)",
    415: "the body is not JSON (send Content-Type: application/json)",
    422: "invalid fields (each named in `fields`), or an Idempotency-Key already used for another request",
}
OBJECT: dict[str, Any] = {"type": "object"}
ID = {"type": "integer", "minimum": 1}
CUSTOMER_ID = {"type": "string", "minLength": 1, "maxLength": 128, "description": "the shop's own customer id"}

ROUTES: tuple[Route, ...] = (
    # --- customers
    Route(
        "post",
        "/api/v1/customers",
        "upsertCustomer",
        "Create or update a customer by the shop's id",
        "customers",
        body=CustomerUpsert,
        responses={201: ("created", CustomerOut), 200: ("updated", CustomerOut)},
        errors=(409,),
    ),
    Route(
        "get",
        "/api/v1/customers/lookup",
        "lookupCustomer",
        "Find a customer by a channel address, with their current consents",
        "customers",
        responses={200: ("the customer", LookupOut)},
        errors=(400, 404),
        query=(
            Query(
                "channel",
                "the channel",
                {"type": "string", "enum": ["telegram", "viber", "whatsapp", "sms", "email", "console"]},
                True,
            ),
            Query(
                "address",
                "the platform's user id (Telegram chat id, Viber user id, WhatsApp wa_id), e-mail or E.164 phone",
                {"type": "string", "minLength": 1, "maxLength": 128},
                True,
            ),
        ),
    ),
    Route(
        "get",
        "/api/v1/customers/{external_id}",
        "getCustomer",
        "Read a customer: profile, channels, current consents, categories",
        "customers",
        responses={200: ("the customer", CustomerOut)},
        errors=(404,),
        path_schemas={"external_id": CUSTOMER_ID},
    ),
    Route(
        "post",
        "/api/v1/customers/{external_id}/link-tokens",
        "createLinkToken",
        "Create a single-use token (valid 7 days) and deep links that bind a messaging account to this customer",
        "customers",
        responses={201: ("the token and a deep link per configured channel", LinkTokenOut)},
        errors=(404,),
        path_schemas={"external_id": CUSTOMER_ID},
    ),
    Route(
        "get",
        "/api/v1/openapi.json",
        "getOpenApi",
        "This description (OpenAPI 3.1); no key needed",
        "meta",
        responses={200: ("the OpenAPI document", OBJECT)},
        public=True,
    ),
    # --- catalog
    Route(
        "post",
        "/api/v1/catalog/categories",
        "upsertCategories",
        "Create or replace categories (also offered as favourites in chat)",
        "catalog",
        body=CategoriesIn,
        responses={200: ("how many were created and updated", UpsertCounts)},
    ),
    Route(
        "post",
        "/api/v1/catalog/products",
        "upsertProducts",
        "Create or replace products",
        "catalog",
        body=ProductsIn,
        responses={200: ("how many were created and updated", UpsertCounts)},
    ),
    Route(
        "post",
        "/api/v1/catalog/stores",
        "upsertStores",
        "Create or replace stores",
        "catalog",
        body=StoresIn,
        responses={200: ("how many were created and updated", UpsertCounts)},
    ),
    Route(
        "get",
        "/api/v1/catalog/stores",
        "listStores",
        "List the stores",
        "catalog",
        responses={200: ("every store", StoresOut)},
    ),
    # --- events, pushes, campaigns, stats (bot/web/push_api.py)
    Route(
        "post",
        "/api/v1/events",
        "postEvent",
        "Tell Touchpoint what happened in the shop; unknown types are refused",
        "events",
        body=Event,
        responses={
            202: (
                "accepted; the touchpoints it concerns are decided",
                {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"type": "string"}},
                    "additionalProperties": True,
                },
            )
        },
    ),
    Route(
        "post",
        "/api/v1/pushes",
        "createPush",
        "Send a touchpoint to customers or an audience",
        "pushes",
        body=PushRequest,
        responses={
            202: (
                "queued; follow each push by its id",
                {
                    "type": "object",
                    "required": ["touchpoint", "push_ids", "targeted"],
                    "properties": {
                        "touchpoint": {"type": "string"},
                        "push_ids": {"type": "array", "items": {"type": "integer"}},
                        "targeted": {"type": "integer"},
                    },
                },
            )
        },
    ),
    Route(
        "get",
        "/api/v1/pushes/{push_id}",
        "getPush",
        "A push's status and its history: why it was deferred, skipped or sent",
        "pushes",
        responses={200: ("the push", PushStatus)},
        errors=(404,),
        path_schemas={"push_id": ID},
    ),
    Route(
        "post",
        "/api/v1/campaigns",
        "createCampaign",
        "Create a campaign: now or at send_at",
        "campaigns",
        body=CampaignRequest,
        responses={201: ("the campaign and its progress", OBJECT)},
    ),
    Route(
        "post",
        "/api/v1/campaigns/preview",
        "previewCampaign",
        "Count an audience without sending anything",
        "campaigns",
        body=PreviewRequest,
        responses={
            200: (
                "the number of customers",
                {
                    "type": "object",
                    "required": ["count"],
                    "properties": {"count": {"type": "integer"}},
                },
            )
        },
    ),
    Route(
        "get",
        "/api/v1/campaigns/{campaign_id}",
        "getCampaign",
        "A campaign's progress",
        "campaigns",
        responses={200: ("the campaign and its progress", OBJECT)},
        errors=(404,),
        path_schemas={"campaign_id": ID},
    ),
    Route(
        "post",
        "/api/v1/campaigns/{campaign_id}/cancel",
        "cancelCampaign",
        "Stop a campaign: nothing more is sent; messages already handed to a platform stay sent",
        "campaigns",
        responses={200: ("the campaign and its progress", OBJECT)},
        errors=(404, 409),
        path_schemas={"campaign_id": ID},
    ),
    Route(
        "get",
        "/api/v1/stats",
        "getStats",
        "Targeted, skipped by reason, sent, delivered, read, clicked, converted, opted out",
        "stats",
        responses={200: ("the counts", OBJECT)},
        errors=(422,),
        query=(
            Query("touchpoint", "only this touchpoint", {"type": "string"}),
            Query("campaign_id", "only this campaign", ID),
        ),
    ),
    Route(
        "post",
        "/api/v1/touchpoints/dry-run",
        "dryRun",
        "Would this push or event reach the customer now, when, where, in which form, and what held it back",
        "touchpoints",
        body=DryRunRequest,
        responses={200: ("the decision; nothing is sent or counted", OBJECT)},
    ),
    Route(
        "get",
        "/l/{token}",
        "followLink",
        "A tracked link in a push: records the click and redirects",
        "links",
        responses={302: ("redirect to the shop's page", None), 404: ("unknown link (plain text)", None)},
        public=True,
        path_schemas={"token": {"type": "string", "maxLength": 32}},
    ),
)


def _params(route: Route) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": route.path_schemas.get(name, {"type": "string"})}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    params += [
        {"name": q.name, "in": "query", "required": q.required, "description": q.description, "schema": q.schema}
        for q in route.query
    ]
    if route.method == "post":
        params.append({"$ref": "#/components/parameters/IdempotencyKey"})
    return params


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def build_spec() -> dict[str, Any]:
    """The whole document; pure, so tests can validate it without a server."""
    wanted: list[tuple[type[BaseModel], Any]] = [(ErrorBody, "serialization")]
    for route in ROUTES:
        if route.body is not None:
            wanted.append((route.body, "validation"))
        wanted += [(body, "serialization") for _, body in route.responses.values() if isinstance(body, type)]
    unique = list(dict.fromkeys(wanted))
    refs, definitions = models_json_schema(unique, ref_template=REF)

    def schema_of(body: Body, mode: str) -> dict[str, Any] | None:
        if isinstance(body, type):
            return refs[(body, mode)]
        return body

    error = schema_of(ErrorBody, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        responses: dict[str, Any] = {}
        for status, (description, body) in sorted(route.responses.items()):
            answer: dict[str, Any] = {"description": description}
            schema = schema_of(body, "serialization")
            if schema is not None:
                answer["content"] = _content(schema)
            if route.method == "post":
                answer["headers"] = {"Idempotent-Replayed": {"$ref": "#/components/headers/IdempotentReplayed"}}
            responses[str(status)] = answer
        errors = set(route.errors) | ({400, 415, 422} if route.method == "post" else set())
        if not route.public:
            errors.add(401)
        for status in sorted(errors):
            responses[str(status)] = {"description": ERRORS[status], "content": _content(error)}  # type: ignore[arg-type]
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.operation_id,
            "tags": [route.tag],
            "responses": responses,
        }
        if params := _params(route):
            operation["parameters"] = params
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": _content(schema_of(route.body, "validation"))}  # type: ignore[arg-type]
        if route.public:
            operation["security"] = []
        item = paths.setdefault(route.path.removeprefix(BASE), {})
        if not route.path.startswith(BASE + "/"):  # outside the API's base (the tracked links)
            item["servers"] = [{"url": "/"}]
        item[route.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Touchpoint shop API",
            "version": "1",
            "description": (
                "JSON over HTTPS with a bearer key. Every error is an ErrorBody naming the fields at fault. "
                "Every POST may carry an Idempotency-Key: a retry with the same key and body gets the first "
                "answer again (marked Idempotent-Replayed: true) and changes nothing."
            ),
        },
        "servers": [{"url": BASE}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a key from TOUCHPOINT_API_KEYS"}
            },
            "parameters": {
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": (
                        "1-255 printable ASCII characters, unique per request you mean; kept 24 hours per API key. "
                        "A retry with the same key and the same method, path and body gets the first answer; "
                        "the same key with another request is refused with 422."
                    ),
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7E]+$"},
                }
            },
            "headers": {
                "IdempotentReplayed": {
                    "description": "true when this is the stored answer to an earlier request with the same Idempotency-Key",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        },
    }


@functools.cache
def _document() -> bytes:
    return json.dumps(build_spec()).encode()


async def openapi(_request: web.Request) -> web.Response:
    return web.Response(body=_document(), content_type="application/json")
