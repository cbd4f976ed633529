"""``POST /rasa/webhook``: Touchpoint as a Rasa action server (see ``integrations/rasa_actions.py``).

Rasa's action server has no authentication of its own. When
``TOUCHPOINT_RASA_TOKEN`` is set, a call must carry it, as ``?token=...``
(what Rasa's ``endpoints.yml`` can put in the action endpoint's URL) or as
``Authorization: Bearer ...``; otherwise 401 and nothing runs. Bodies larger
than ``TOUCHPOINT_MAX_BODY_BYTES`` are refused (413) by the app itself.

rasa-sdk is imported when the app starts, not with this module, so a
deployment without it still serves everything else and this route says
what to install.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from bot.appkeys import CONFIG, DB, PIPELINE, SETTINGS
from integrations.base import same_secret

log = logging.getLogger("touchpoint.rasa")

EXECUTOR = web.AppKey("rasa_executor", object)  # rasa-sdk's ActionExecutor, or None without rasa-sdk
ROUTE = "/rasa/webhook"


def rasa_token(app: web.Application) -> str:
    """The shared token; empty when calls need none."""
    token = getattr(app[SETTINGS], "touchpoint_rasa_token", None)
    secret = token.get_secret_value() if hasattr(token, "get_secret_value") else token
    return secret or ""


def authorised(request: web.Request, token: str) -> bool:
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and same_secret(given.strip(), token):
        return True
    return same_secret(request.query.get("token"), token)


async def rasa_webhook(request: web.Request) -> web.Response:
    if not authorised(request, rasa_token(request.app)):
        log.warning("rasa.auth_failed remote=%s", request.remote)
        return web.json_response(
            {"error": "missing or wrong token (send ?token=... or Authorization: Bearer ..., TOUCHPOINT_RASA_TOKEN)"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    executor = request.app[EXECUTOR]
    if executor is None:
        return web.json_response({"error": "the Rasa action endpoint needs the rasa-sdk package installed"}, status=501)
    try:
        call: Any = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return web.json_response({"error": "the body is not JSON (Rasa's action call)"}, status=400)
    except RecursionError:  # the parser's answer to JSON nested thousands deep
        return web.json_response({"error": "the body's JSON is nested too deeply to be an action call"}, status=400)
    from integrations.rasa_actions import run_call

    status, body = await run_call(executor, call)  # type: ignore[arg-type]
    return web.json_response(body, status=status)


async def _start(app: web.Application) -> None:
    """Build the executor once the database and the pipeline exist (after the app's cleanup contexts)."""
    try:
        from integrations.rasa_actions import RasaServices, build_executor
    except ImportError as exc:
        log.info("rasa.disabled: %s; install rasa-sdk to serve %s", exc, ROUTE)
        app[EXECUTOR] = None
        return
    from bot.i18n import I18n

    # The dialogs' catalogs, so both answer in the same words; loaded anew only for a bare engine.
    i18n = getattr(app[PIPELINE].engine, "i18n", None) or I18n.load()
    app[EXECUTOR] = build_executor(RasaServices(db=app[DB], config=app[CONFIG], i18n=i18n))
    if not rasa_token(app):
        log.info("rasa.no_token: set TOUCHPOINT_RASA_TOKEN to require a token on %s", ROUTE)


def setup(app: web.Application) -> None:
    app.router.add_post(ROUTE, rasa_webhook)
    app.on_startup.append(_start)
