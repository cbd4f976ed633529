"""The touchpoint API at its edges: bodies JSON cannot carry, ids out of range, audience
conditions that do not fit their operator, campaign times in other zones, and who counts
as clicking a tracked link. Each answer is a clear 4xx (or a redirect) and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.conftest import API_KEY, Touchpoint
from tests.web.test_shop_api import call, fields_of


@pytest.fixture
def backend_name() -> str:
    return "memory"


async def counts(tp: Touchpoint) -> tuple[int, int, int]:
    [row] = await tp.query(
        "SELECT (SELECT count(*) FROM push) AS pushes, (SELECT count(*) FROM campaign) AS campaigns,"
        " (SELECT count(*) FROM customer) AS customers"
    )
    return row.pushes, row.campaigns, row.customers


@pytest.mark.parametrize(
    "raw,words",
    [
        ('{"name": "x", "touchpoint": "announcement", "audience": {}, "variables": {"n": NaN}}', "NaN"),
        ('{"name": "x", "touchpoint": "announcement", "audience": {}, "variables": {"n": Infinity}}', "Infinity"),
        ('{"name": "x", "touchpoint": "announcement", "audience": {}, "variables": {"n": -Infinity}}', "Infinity"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"name": "x\\u0000y", "touchpoint": "announcement", "audience": {}}', "NUL"),
        ('{"name": "x", "touchpoint": "announcement", "audience": {}, "variables": {"k\\u0000": 1}}', "NUL"),
    ],
)
async def test_bodies_json_cannot_carry_are_refused_with_400(touchpoint: Touchpoint, raw: str, words: str) -> None:
    status, answer, _ = await call(touchpoint, "POST", "/api/v1/campaigns", data=raw)
    assert status == 400, answer
    assert words in answer["error"]
    assert await counts(touchpoint) == (0, 0, 0)


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/api/v1/customers", {"external_id": "c-1", "attributes": {"order_count": 2**64}}, "attributes"),
        ("/api/v1/events", {"type": "order.placed", "customer_id": "c-1", "order_id": "o-1", "push_id": 2**63}, "push_id"),
        ("/api/v1/campaigns/preview", {"audience": {"attributes": [{"name": "tier", "op": "in", "value": "gold"}]}}, "audience.attributes.0"),
        ("/api/v1/campaigns/preview", {"audience": {"attributes": [{"name": "tier", "op": "eq", "value": ["gold"]}]}}, "audience.attributes.0"),
        ("/api/v1/campaigns/preview", {"audience": {"attributes": [{"name": "vip", "op": "gt", "value": True}]}}, "audience.attributes.0"),
        ("/api/v1/campaigns/preview", {"audience": {"attributes": [{"name": "n", "op": "lte", "value": None}]}}, "audience.attributes.0"),
        # JSON types as written: a string or a boolean where a number belongs is the shop's bug, not a guess.
        ("/api/v1/events", {"type": "customer.location", "customer_id": "c-1", "latitude": True, "longitude": 13.4}, "latitude"),
        ("/api/v1/events", {"type": "customer.location", "customer_id": "c-1", "latitude": "52.5", "longitude": 13.4}, "latitude"),
        ("/api/v1/events", {"type": "cart.updated", "customer_id": "c-1", "items": [{"product_id": "p", "quantity": "2"}]}, "items.0.quantity"),
        ("/api/v1/events", {"type": "order.placed", "customer_id": "c-1", "order_id": "o-1", "total": "19.99"}, "total"),
        ("/api/v1/campaigns/preview", {"audience": {"active_within_days": "30"}}, "audience.active_within_days"),
        # The field is named as the shop wrote it, not after pydantic's union members.
        ("/api/v1/campaigns", {"name": "x", "touchpoint": "announcement", "audience": {}, "send_at": "2026-12-24T09:00:00"}, "send_at"),
        ("/api/v1/pushes", {"touchpoint": "announcement", "customer_ids": ["c-1"], "variables": {"message": {"a": 1}}}, "variables.message"),
        ("/api/v1/campaigns", {"name": "x", "touchpoint": "announcement", "audience": {}, "send_at": 1811000000}, "send_at"),
        ("/api/v1/campaigns", {"name": "x", "touchpoint": "announcement", "audience": {}, "send_at": "1900000000"}, "send_at"),
        ("/api/v1/campaigns", {"name": "x", "touchpoint": "announcement", "audience": {}, "send_at": "2001-01-01T00:00:00Z"}, "send_at"),
    ],
)
async def test_values_that_do_not_fit_are_refused_naming_the_field(touchpoint: Touchpoint, path: str, body: Any, field: str) -> None:
    status, answer, _ = await call(touchpoint, "POST", path, body)
    assert status == 422, answer
    assert any(f.startswith(field) for f in fields_of(answer)), answer
    assert not any("-" in f or f.endswith((".str", ".float", ".bool")) for f in fields_of(answer)), answer
    assert await counts(touchpoint) == (0, 0, 0)


@pytest.mark.parametrize("push_id", ["99999999999999999999999", "\u0661\u0662", "12a", "-1"])
async def test_a_push_or_campaign_id_out_of_range_is_a_404_not_a_server_error(touchpoint: Touchpoint, push_id: str) -> None:
    for path in (f"/api/v1/pushes/{push_id}", f"/api/v1/campaigns/{push_id}"):
        status, answer, _ = await call(touchpoint, "GET", path)
        assert status == 404, (path, answer)
    status, answer, _ = await call(touchpoint, "GET", f"/api/v1/stats?campaign_id={push_id}")
    assert status == 422 and fields_of(answer) == ["campaign_id"]


async def test_a_campaign_time_in_another_zone_is_kept_as_the_same_instant(touchpoint: Touchpoint) -> None:
    send_at = (datetime.now(timezone.utc) + timedelta(days=3)).replace(microsecond=0)
    local = send_at.astimezone(timezone(timedelta(hours=-5)))
    body = {"name": "winter", "touchpoint": "announcement", "audience": {}, "variables": {"message": "hi"}, "send_at": local.isoformat()}
    status, created, _ = await call(touchpoint, "POST", "/api/v1/campaigns", body)
    assert status == 201, created
    status, shown, _ = await call(touchpoint, "GET", f"/api/v1/campaigns/{created['id']}")
    assert status == 200
    assert datetime.fromisoformat(shown["scheduled_at"]) == send_at
    assert shown["status"] == "scheduled"


async def test_a_customer_named_twice_in_one_push_gets_one_push(touchpoint: Touchpoint) -> None:
    await call(touchpoint, "POST", "/api/v1/customers", {"external_id": "c-1", "email": "eva@example.com"})
    body = {"touchpoint": "announcement", "customer_ids": ["c-1", "c-1"], "variables": {"message": "Hello"}}
    status, answer, _ = await call(touchpoint, "POST", "/api/v1/pushes", body)
    assert status in (200, 201, 202), answer
    assert len(answer["push_ids"]) == 1 and answer["targeted"] == 1, answer
    assert (await counts(touchpoint))[0] == 1


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/api/v1/campaigns/preview", {"audience": {"consent_purpose": "newsletter"}}, "audience.consent_purpose"),
        ("/api/v1/campaigns/preview", {"audience": {"categories_any": ["shoes", "unicorns"]}}, "audience.categories_any.1"),
        ("/api/v1/campaigns", {"name": "x", "touchpoint": "announcement", "audience": {"categories_all": ["unicorns"]}}, "audience.categories_all.0"),
        ("/api/v1/pushes", {"touchpoint": "announcement", "audience": {"consent_purpose": "spam"}}, "audience.consent_purpose"),
        ("/api/v1/catalog/products", {"items": [{"id": "p-1", "name": "Horn", "category": "unicorns"}]}, "items.0.category"),
    ],
)
async def test_a_category_or_purpose_the_shop_does_not_have_is_refused(touchpoint: Touchpoint, path: str, body: Any, field: str) -> None:
    # It would match nobody, silently; the shop learns of its typo instead.
    status, answer, _ = await call(touchpoint, "POST", path, body)
    assert status == 422 and fields_of(answer) == [field], answer
    assert await counts(touchpoint) == (0, 0, 0)
    assert await touchpoint.query("SELECT id FROM product") == []


@pytest.mark.parametrize("idempotency_key", [None, "big-1"])
async def test_an_oversized_body_is_a_json_413(touchpoint: Touchpoint, idempotency_key: str | None) -> None:
    limit = touchpoint.settings.touchpoint_max_body_bytes
    raw = '{"external_id": "c-1", "first_name": "' + "x" * limit + '"}'
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    status, answer, _ = await call(touchpoint, "POST", "/api/v1/customers", data=raw, headers=headers)
    assert status == 413 and str(limit) in answer["error"], answer
    assert await counts(touchpoint) == (0, 0, 0)


async def test_a_scheduled_campaign_is_cancelled_over_the_api_once(touchpoint: Touchpoint) -> None:
    body = {"name": "Wrong price", "touchpoint": "announcement", "audience": {}, "variables": {"message": "-90%"},
            "send_at": (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()}
    status, created, _ = await call(touchpoint, "POST", "/api/v1/campaigns", body)
    assert status == 201 and created["status"] == "scheduled", created
    path = f"/api/v1/campaigns/{created['id']}/cancel"
    status, answer, _ = await call(touchpoint, "POST", path)
    assert status == 200 and answer["status"] == "cancelled", answer
    status, answer, _ = await call(touchpoint, "POST", path)
    assert status == 409 and "cancelled" in answer["error"], answer
    status, answer, _ = await call(touchpoint, "POST", "/api/v1/campaigns/999/cancel")
    assert status == 404, answer
    status, answer, _ = await call(touchpoint, "POST", path, key="wrong")
    assert status == 401


async def test_an_oversized_body_is_refused_even_where_the_route_reads_none(touchpoint: Touchpoint) -> None:
    await call(touchpoint, "POST", "/api/v1/customers", {"external_id": "c-1"})
    raw = "x" * (touchpoint.settings.touchpoint_max_body_bytes + 1)
    status, answer, _ = await call(touchpoint, "POST", "/api/v1/customers/c-1/link-tokens", data=raw)
    assert status == 413 and "TOUCHPOINT_MAX_BODY_BYTES" in answer["error"], answer
    assert await touchpoint.query("SELECT token FROM account_link") == []


@pytest.mark.parametrize("method,path", [("POST", "/api/v1/customers/c-1/link-tokens"), ("GET", "/api/v1/stats"), ("GET", "/api/v1/openapi.json")])
async def test_an_oversized_chunked_body_is_refused_on_any_route(touchpoint: Touchpoint, method: str, path: str) -> None:
    await call(touchpoint, "POST", "/api/v1/customers", {"external_id": "c-1"})
    size = touchpoint.settings.touchpoint_max_body_bytes + 1

    async def chunks() -> Any:
        for _ in range(size // 1000 + 1):
            yield b"x" * 1000

    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with touchpoint.session.request(method, f"{touchpoint.url}{path}", data=chunks(), headers=headers) as response:
        assert response.status == 413 and "TOUCHPOINT_MAX_BODY_BYTES" in (await response.json())["error"]
    assert await touchpoint.query("SELECT token FROM account_link") == []
