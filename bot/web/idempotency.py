"""``Idempotency-Key`` for the shop API: a retried request gets the first answer, and nothing runs twice.

For POST, PUT, PATCH and DELETE under ``/api/v1`` that carry the header, the
first answer (status and JSON body) is stored with a fingerprint of the
request (method, path with query, SHA-256 of the body). A retry with the same
key and fingerprint gets that answer again, marked ``Idempotent-Replayed:
true``, without running the handler; the same key on a different request is
refused with 422. A lock on the key (shared by all processes in Redis mode)
makes concurrent retries wait for the first one instead of running beside it.

Keys are per API key (two shops' "order-1" never collide) and live 24 hours.
5xx answers are not stored, so a retry after a failure runs again. The
handler's writes and the stored answer are separate transactions: a crash
between them lets a retry run the handler again, which every shop endpoint
tolerates (upserts, events de-duplicated by their own keys).

The middleware must come after the API-key check: it reads the scope that
check leaves on the request and ignores requests without one.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from bot import shop_store
from bot.appkeys import BACKEND, DB
from bot.models import utcnow
from bot.shop_store import StoredAnswer
from bot.web.api_errors import read_limited

if TYPE_CHECKING:
    from bot.db import Database

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
# Set on the request by the API-key check: a short hash of the bearer key.
API_KEY_SCOPE = web.RequestKey("api_key_scope", str)
METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LIFETIME = timedelta(hours=24)
CLEANUP_EVERY = 600.0  # seconds between deletions of expired answers (per process)
LOCK_TTL = 60.0


def scope_of(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def valid_key(key: str) -> bool:
    return 1 <= len(key) <= 255 and all(" " <= ch <= "~" for ch in key)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "fields": [{"field": HEADER, "message": message}]}, status=status)


class _Cleanup:
    """Expired answers are deleted at most every ``CLEANUP_EVERY`` seconds, along with a store."""

    def __init__(self) -> None:
        self.last = float("-inf")  # due at once: monotonic time may start near zero after a boot

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last < CLEANUP_EVERY:
            return False
        self.last = now
        return True


_cleanup = _Cleanup()


@web.middleware
async def idempotency(request: web.Request, handler):  # type: ignore[no-untyped-def]
    key = request.headers.get(HEADER)
    scope = request.get(API_KEY_SCOPE)
    if key is None or scope is None or request.method not in METHODS or not request.path.startswith("/api/v1/"):
        return await handler(request)
    if not valid_key(key):
        return _error(400, f"{HEADER} must be 1 to 255 printable ASCII characters")
    body = await read_limited(request)  # aiohttp keeps it: the handler reads it again
    fingerprint = hashlib.sha256(
        b"\n".join((request.method.encode(), request.path_qs.encode(), hashlib.sha256(body).digest()))
    ).hexdigest()
    # Hashed: bounded length whatever the key, and no client text in the table.
    stored_key = f"{scope}:{hashlib.sha256(key.encode()).hexdigest()}"
    db = request.app[DB]
    async with request.app[BACKEND].locks.hold(f"idem:{stored_key}", ttl=LOCK_TTL):
        now = utcnow()
        earlier = await db.read(lambda conn: shop_store.find_answer(conn, stored_key, now - LIFETIME))
        if earlier is not None:
            return _replay(earlier, fingerprint)
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's errors are answers too (404, 422 ...)
            if exc.status >= 500 or not isinstance(exc.body, bytes):
                raise
            await _store(db, stored_key, StoredAnswer(fingerprint, exc.status, exc.body), now)
            raise
        if isinstance(response, web.Response) and isinstance(response.body, bytes) and response.status < 500:
            await _store(db, stored_key, StoredAnswer(fingerprint, response.status, response.body), now)
        return response


def _replay(earlier: StoredAnswer, fingerprint: str) -> web.Response:
    if earlier.fingerprint != fingerprint:
        return _error(
            422,
            f"this {HEADER} was already used for a different request (method, path or body differ); "
            "use a new key for a new request",
        )
    return web.Response(
        status=earlier.status, body=earlier.body, content_type="application/json", headers={REPLAYED: "true"}
    )


async def _store(db: Database, key: str, answer: StoredAnswer, now: datetime) -> None:
    forget_before = now - LIFETIME if _cleanup.due() else None
    await db.write(lambda conn: shop_store.save_answer(conn, key, answer, now, forget_before))
