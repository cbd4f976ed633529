"""Uniform errors of the shop API: every ``/api/v1`` handler reads its body with ``parse_body``.

A client always gets JSON: ``{"error": "...", "fields": [{"field", "message"}]}``
(``ErrorBody`` in ``bot/web/api_models.py``), so one error handler on the
shop's side covers every endpoint. The exceptions are aiohttp's own, raised,
so a handler stops at the first problem.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar, overload

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from bot.web.api_models import error_fields

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

JSON_TYPES = ("application/json",)


_EXCEPTIONS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    415: web.HTTPUnsupportedMediaType,
    422: web.HTTPUnprocessableEntity,
    429: web.HTTPTooManyRequests,
    503: web.HTTPServiceUnavailable,
}


def api_error(
    status: int, message: str, fields: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None
) -> web.HTTPException:
    """An aiohttp HTTP exception with a JSON ``ErrorBody``; raise it."""
    body: dict[str, Any] = {"error": message}
    if fields:
        body["fields"] = fields
    exception_class = _EXCEPTIONS.get(status)
    if exception_class is None:
        raise ValueError(f"no aiohttp exception for status {status}")
    return exception_class(text=json.dumps(body), content_type="application/json", headers=headers)


def field_error(status: int, field: str, message: str) -> web.HTTPException:
    """An error about one field, e.g. ``field_error(422, "consents.0.purpose", "unknown purpose")``."""
    return api_error(status, "invalid request", [{"field": field, "message": message}])


def is_json(content_type: str) -> bool:
    return content_type in JSON_TYPES or (content_type.startswith("application/") and content_type.endswith("+json"))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _has_nul(value: Any, depth: int = 0) -> bool:
    """NUL cannot be stored by PostgreSQL (and is never meaningful): refuse it anywhere in the body."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k, depth) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v, depth + 1) for v in value)
    return False


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"


@overload
async def parse_body(request: web.Request, model: type[M]) -> M: ...


@overload
async def parse_body(request: web.Request, model: TypeAdapter[T]) -> T: ...


async def read_limited(request: web.Request) -> bytes:
    """The body, or a JSON 413 naming the limit (aiohttp's own answer is plain text)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.client_max_size
        body = {"error": f"the body is larger than {limit} bytes (TOUCHPOINT_MAX_BODY_BYTES)"}
        raise web.HTTPRequestEntityTooLarge(limit, text=json.dumps(body), content_type="application/json") from None


async def parse_body(request: web.Request, model: Any) -> Any:
    """The request body as ``model`` (a model class, or a TypeAdapter for a union such as ``ShopEvent``).

    415 unless JSON, 400 when malformed or not an object, 422 naming each invalid field.
    """
    if not is_json(request.content_type):
        raise api_error(
            415, f"send the body as JSON with Content-Type: application/json (got {request.content_type!r})"
        )
    raw = await read_limited(request)
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise api_error(400, "malformed JSON: the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise api_error(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise api_error(400, "malformed JSON: nested too deeply") from None
    except ValueError as exc:  # NaN / Infinity, which JSON does not have
        raise api_error(400, f"malformed JSON: {exc}") from None
    if _has_nul(data):
        raise api_error(400, "text may not contain NUL characters (\\u0000)")
    if not isinstance(data, dict):
        raise api_error(400, f"the body must be a JSON object, not {_json_kind(data)}")
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(data)
        return model.model_validate(data)
    except ValidationError as exc:
        raise api_error(422, "invalid request", error_fields(exc.errors())) from None
