"""``Idempotency-Key`` through real HTTP, on both state backends (the lock is Redis's in scaled mode).

Besides the real endpoints, the app gets two test routes that count how often
they ran, so "the handler ran once" is observed, not inferred.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import text

from bot.app import create_app
from bot.appkeys import DB
from bot.models import utcnow
from bot.web import idempotency
from bot.web.api_errors import parse_body
from bot.web.api_models import Strict
from integrations.fakes import FakePlatforms
from tests.conftest import API_KEY, Touchpoint, _flush_redis, make_settings
from tests.web.test_shop_api import ANNA, call

OTHER_KEY = "second-shop-key"
REPLAYED = "Idempotent-Replayed"


class Note(Strict):
    text: str


@dataclass
class Calls:
    counted: int = 0
    flaky: int = 0
    bodies: list[str] = field(default_factory=list)


@dataclass
class Api:
    tp: Touchpoint
    calls: Calls

    async def post(self, path: str, body: Any, key: str | None, api_key: str = API_KEY) -> tuple[int, Any, Any]:
        headers = {} if key is None else {"Idempotency-Key": key}
        return await call(self.tp, "POST", path, body, headers=headers, key=api_key)


@pytest.fixture
async def api(
    backend_name: str, tmp_path: Path, fake_platforms: FakePlatforms, request: pytest.FixtureRequest
) -> AsyncIterator[Api]:
    redis = request.getfixturevalue("redis_url") if backend_name == "redis" else ""
    if redis:
        await _flush_redis(redis)
    settings = make_settings(
        fake_platforms.base_url,
        f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}",
        redis,
        touchpoint_api_keys=f"{API_KEY},{OTHER_KEY}",
    )
    calls = Calls()

    async def counted(request: web.Request) -> web.Response:
        note = await parse_body(request, Note)
        calls.counted += 1
        calls.bodies.append(note.text)
        await asyncio.sleep(0.05)  # a slow handler: concurrent retries arrive while it runs
        return web.json_response({"call": calls.counted, "text": note.text}, status=201)

    async def flaky(_request: web.Request) -> web.Response:
        calls.flaky += 1
        if calls.flaky == 1:
            return web.json_response({"error": "database unavailable"}, status=503)
        return web.json_response({"call": calls.flaky})

    app = create_app(settings)
    app.router.add_post("/api/v1/test/counted", counted)
    app.router.add_post("/api/v1/test/flaky", flaky)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    session = aiohttp.ClientSession()
    tp = Touchpoint(server=server, session=session, fake=fake_platforms, settings=settings)
    yield Api(tp, calls)
    await session.close()
    await server.close()


async def stored(api: Api) -> list[Any]:
    return await api.tp.query("SELECT key, status FROM idempotent_request ORDER BY created_at")


async def test_a_retry_gets_the_first_answer_and_nothing_runs_twice(api: Api) -> None:
    await api.post("/api/v1/customers", ANNA, key=None)
    first = await api.post("/api/v1/customers/C-1001/link-tokens", None, key="link-anna-1")
    retry = await api.post("/api/v1/customers/C-1001/link-tokens", None, key="link-anna-1")
    assert first[0] == retry[0] == 201
    assert retry[1] == first[1]  # the same token again
    assert REPLAYED not in first[2] and retry[2][REPLAYED] == "true"
    assert len(await api.tp.query("SELECT token FROM account_link")) == 1
    # a new key is a new request
    other = await api.post("/api/v1/customers/C-1001/link-tokens", None, key="link-anna-2")
    assert other[0] == 201 and other[1]["token"] != first[1]["token"]
    assert len(await api.tp.query("SELECT token FROM account_link")) == 2


async def test_five_concurrent_requests_with_one_key_create_the_customer_once(api: Api) -> None:
    answers = await asyncio.gather(*(api.post("/api/v1/customers", ANNA, key="create-anna") for _ in range(5)))
    assert [status for status, _, _ in answers] == [201] * 5
    assert all(body == answers[0][1] for _, body, _ in answers)
    assert sorted(headers.get(REPLAYED, "no") for _, _, headers in answers) == ["no", "true", "true", "true", "true"]
    assert len(await api.tp.query("SELECT id FROM customer WHERE external_id = 'C-1001'")) == 1
    assert len(await api.tp.query("SELECT id FROM consent")) == 2

    counted = await asyncio.gather(*(api.post("/api/v1/test/counted", {"text": "hi"}, key="count-1") for _ in range(5)))
    assert api.calls.counted == 1
    assert {body["call"] for _, body, _ in counted} == {1}


async def test_a_key_reused_for_another_request_is_refused(api: Api) -> None:
    status, _, _ = await api.post("/api/v1/test/counted", {"text": "first"}, key="note-1")
    assert status == 201
    for path, body in (
        ("/api/v1/test/counted", {"text": "second"}),
        ("/api/v1/test/counted?x=1", {"text": "first"}),
        ("/api/v1/customers", {"text": "first"}),
    ):
        status, answer, headers = await api.post(path, body, key="note-1")
        assert status == 422, path
        assert answer["fields"][0]["field"] == "Idempotency-Key"
        assert "different request" in answer["error"]
        assert REPLAYED not in headers
    assert api.calls.bodies == ["first"]
    assert await api.tp.query("SELECT id FROM customer") == []


async def test_keys_belong_to_one_api_key(api: Api) -> None:
    mine = await api.post("/api/v1/test/counted", {"text": "a"}, key="shared-key")
    theirs = await api.post("/api/v1/test/counted", {"text": "a"}, key="shared-key", api_key=OTHER_KEY)
    assert mine[1]["call"] == 1 and theirs[1]["call"] == 2
    assert REPLAYED not in theirs[2]
    assert api.calls.counted == 2
    # each key's retry gets its own first answer
    again = await api.post("/api/v1/test/counted", {"text": "a"}, key="shared-key", api_key=OTHER_KEY)
    assert again[1] == theirs[1] and again[2][REPLAYED] == "true"
    # the stored key is neither the client's text nor the bearer key
    keys = [row.key for row in await stored(api)]
    assert len(keys) == 2 and not any("shared-key" in k or API_KEY in k for k in keys)


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tinside", "snow\u00e9"])
async def test_a_malformed_key_is_refused_before_anything_runs(api: Api, key: str) -> None:
    headers = {"Idempotency-Key": key}
    status, answer, _ = await call(api.tp, "POST", "/api/v1/test/counted", {"text": "x"}, headers=headers)
    assert status == 400 and answer["fields"][0]["field"] == "Idempotency-Key"
    assert api.calls.counted == 0 and await stored(api) == []


async def test_the_longest_key_and_every_printable_character_are_fine(api: Api) -> None:
    for key in ("k" * 255, "".join(chr(c) for c in range(0x21, 0x7F)) + " with space"):
        first = await api.post("/api/v1/test/counted", {"text": "x"}, key=key)
        again = await api.post("/api/v1/test/counted", {"text": "x"}, key=key)
        assert first[0] == again[0] == 201 and again[2][REPLAYED] == "true"
    assert api.calls.counted == 2


async def test_refusals_are_replayed_but_server_failures_run_again(api: Api) -> None:
    invalid = {"external_id": "C-1", "locale": "fr"}
    first = await api.post("/api/v1/customers", invalid, key="bad-1")
    again = await api.post("/api/v1/customers", invalid, key="bad-1")
    assert first[0] == again[0] == 422 and again[1] == first[1] and again[2][REPLAYED] == "true"

    failed = await api.post("/api/v1/test/flaky", {}, key="flaky-1")
    assert failed[0] == 503
    retried = await api.post("/api/v1/test/flaky", {}, key="flaky-1")
    assert retried[0] == 200 and REPLAYED not in retried[2]
    replayed = await api.post("/api/v1/test/flaky", {}, key="flaky-1")
    assert replayed[1] == {"call": 2} and replayed[2][REPLAYED] == "true"
    assert api.calls.flaky == 2


async def test_unauthenticated_requests_never_reach_the_store(api: Api) -> None:
    for api_key in (None, "wrong"):
        status, _, _ = await call(
            api.tp, "POST", "/api/v1/test/counted", {"text": "x"}, headers={"Idempotency-Key": "k-1"}, key=api_key
        )
        assert status == 401
    assert api.calls.counted == 0 and await stored(api) == []


async def test_requests_without_a_key_and_reads_are_not_stored(api: Api) -> None:
    await api.post("/api/v1/test/counted", {"text": "x"}, key=None)
    await api.post("/api/v1/test/counted", {"text": "x"}, key=None)
    status, _, headers = await call(api.tp, "GET", "/api/v1/catalog/stores", headers={"Idempotency-Key": "read-1"})
    assert status == 200 and REPLAYED not in headers
    assert api.calls.counted == 2 and await stored(api) == []


async def test_an_answer_older_than_a_day_is_forgotten_and_cleaned_up(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.post("/api/v1/test/counted", {"text": "x"}, key="old-1")
    await api.post("/api/v1/test/counted", {"text": "y"}, key="old-2")
    day_ago = utcnow() - timedelta(hours=24, minutes=1)

    def age(conn: Any) -> None:
        conn.execute(text("UPDATE idempotent_request SET created_at = :at"), {"at": day_ago})

    await api.tp.app[DB].write(age)
    monkeypatch.setattr(idempotency._cleanup, "last", float("-inf"))  # a cleanup is due with the next stored answer
    status, answer, headers = await api.post("/api/v1/test/counted", {"text": "x"}, key="old-1")
    assert status == 201 and answer["call"] == 3 and REPLAYED not in headers
    scope = idempotency.scope_of(API_KEY)
    expected = f"{scope}:{hashlib.sha256(b'old-1').hexdigest()}"
    assert [row.key for row in await stored(api)] == [expected]  # old-2 is gone
