"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.appkeys import BACKEND, DB


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    db_ok = await request.app[DB].ping()
    backend = request.app[BACKEND]
    backend_ok = await backend.ping()
    body = {
        "status": "ok" if db_ok and backend_ok else "unavailable",
        "database": "ok" if db_ok else "unreachable",
        "redis": ("ok" if backend_ok else "unreachable") if backend.name == "redis" else "not configured",
    }
    return web.json_response(body, status=200 if db_ok and backend_ok else 503)


async def metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
