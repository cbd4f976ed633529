"""``POST /rasa/webhook``: Rasa's action calls, through real HTTP, into the real database.

Every request has the shape Rasa's action server protocol sends (next_action,
sender_id, tracker, domain, version); every assertion reads what a customer
would be told (the responses) or what the shop would find in its database.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from bot.appkeys import DB
from bot.settings import Settings
from integrations.fakes import FakePlatforms
from tests.conftest import Touchpoint, make_settings, start_touchpoint, stop_touchpoint

ALICE = "telegram:5550100201"  # the chat of the Telegram fixtures
TOKEN = "rasa-shared-token_42"


class TokenSettings(Settings):
    """The settings with the shared token field (until Settings itself declares it)."""

    touchpoint_rasa_token: SecretStr = SecretStr("")


async def start(tmp_path: Path, fake: FakePlatforms, **overrides: Any) -> Touchpoint:
    settings = make_settings(fake.base_url, f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}", **overrides)
    return await start_touchpoint(settings, fake)


@pytest.fixture
async def tp(tmp_path: Path, fake_platforms: FakePlatforms) -> AsyncIterator[Touchpoint]:
    touchpoint = await start(tmp_path, fake_platforms)
    yield touchpoint
    await stop_touchpoint(touchpoint)


def action_call(action: str, slots: dict[str, Any] | None = None, sender: str = ALICE, **tracker: Any) -> dict[str, Any]:
    """An action call as Rasa 3.x sends it to its action endpoint."""
    return {
        "next_action": action,
        "sender_id": sender,
        "tracker": {
            "sender_id": sender,
            "slots": slots or {},
            "latest_message": tracker.pop("latest_message", {"intent": {"name": "inform", "confidence": 0.97}, "text": "hi"}),
            "events": tracker.pop("events", [{"event": "action", "name": "action_listen"}]),
            "paused": False,
            "followup_action": None,
            "active_loop": {},
            "latest_action_name": "action_listen",
            **tracker,
        },
        "domain": {"version": "3.1", "slots": {}, "responses": {}, "actions": [action]},
        "version": "3.6.20",
    }


async def post(tp: Touchpoint, body: Any, *, raw: bytes | None = None, path: str = "/rasa/webhook", **kw: Any) -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    async with tp.session.post(f"{tp.url}{path}", data=data, headers=headers, **kw) as response:
        return response.status, await response.json()


async def run(tp: Touchpoint, action: str, slots: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    status, body = await post(tp, action_call(action, slots, **kw))
    assert status == 200, body
    return body


def said(body: dict[str, Any]) -> str:
    return "\n".join(r["text"] for r in body["responses"])


def slots_set(body: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in body["events"] if e["event"] == "slot"}


async def rows(tp: Touchpoint, sql: str, **params: Any) -> list[Any]:
    return await tp.query(sql, **params)


async def execute(tp: Touchpoint, sql: str, **params: Any) -> None:
    await tp.app[DB].write(lambda conn: conn.execute(text(sql), params))


async def grant_marketing(tp: Touchpoint, sender: str = ALICE) -> None:
    await run(tp, "action_record_consent", {"purpose": "marketing", "granted": True}, sender=sender)


async def nothing_stored(tp: Touchpoint) -> bool:
    tables = ("customer", "channel_identity", "consent", "discount_code", "ticket", "survey_response")
    counts = [(await rows(tp, f"SELECT count(*) AS n FROM {table}"))[0].n for table in tables]
    return counts == [0] * len(tables)


# --------------------------------------------------------------------------- consent


async def test_record_consent_creates_the_customer_and_appends_to_the_consent_log(tp: Touchpoint) -> None:
    body = await run(tp, "action_record_consent", {"purpose": "marketing", "granted": "yes"})
    assert said(body) == "Thank you! Marketing messages: switched on."
    assert body["events"] == []
    identity = await rows(tp, "SELECT customer_id, channel, address FROM channel_identity")
    assert [(r.channel, r.address) for r in identity] == [("telegram", "5550100201")]
    conversation = await rows(tp, "SELECT mode FROM conversation WHERE channel='telegram' AND address='5550100201'")
    assert [r.mode for r in conversation] == ["bot"]

    # the same answer again records nothing; a withdrawal is a new row
    await run(tp, "action_record_consent", {"purpose": "marketing", "granted": True})
    body = await run(tp, "action_record_consent", {"purpose": "marketing", "granted": "no"})
    assert said(body) == "Done. Marketing messages: switched off."
    log = await rows(tp, "SELECT customer_id, purpose, channel, granted, source, wording_version FROM consent ORDER BY id")
    assert [(r.purpose, r.channel, bool(r.granted), r.source, r.wording_version) for r in log] == [
        ("marketing", "telegram", True, "rasa", "1"),
        ("marketing", "telegram", False, "rasa", "1"),
    ]
    assert {r.customer_id for r in log} == {identity[0].customer_id}


async def test_the_customer_rasa_created_is_the_one_our_webhook_sees(tp: Touchpoint) -> None:
    await grant_marketing(tp)
    assert (await tp.post_fixture("telegram", "text_plain.json")).status == 200
    await tp.idle()
    assert tp.fake.sent("telegram") != []  # in bot mode our bot answers (after a handoff it will not)
    assert (await rows(tp, "SELECT count(*) AS n FROM customer"))[0].n == 1
    assert (await rows(tp, "SELECT count(*) AS n FROM channel_identity"))[0].n == 1


async def test_an_unknown_purpose_or_a_vague_answer_is_rejected_and_changes_nothing(tp: Touchpoint) -> None:
    for slots in ({"purpose": "newsletter", "granted": True}, {"purpose": "marketing", "granted": "maybe"}, {}):
        status, body = await post(tp, action_call("action_record_consent", slots))
        assert status == 400, slots
        assert body["action_name"] == "action_record_consent"
        assert body["error"]
    assert await nothing_stored(tp)


# --------------------------------------------------------------------------- categories and codes


async def test_save_categories_issues_one_welcome_code_per_category_and_never_a_second(tp: Touchpoint) -> None:
    await grant_marketing(tp)
    body = await run(tp, "action_save_categories", {"categories": ["shoes", "Kleidung"]})
    slots = slots_set(body)
    assert slots["categories"] == ["shoes", "clothing"]
    codes = {c["category"]: c for c in slots["discount_codes"]}
    assert set(codes) == {"shoes", "clothing"}
    assert codes["shoes"]["percent"] == 10
    assert codes["shoes"]["link"] == f"https://shop.example/c/shoes?code={codes['shoes']['code']}"
    text_said = said(body)
    assert "Your favourite categories are saved: Shoes, Clothing." in text_said
    assert "Here are your welcome codes:" in text_said
    assert f"Shoes: {codes['shoes']['code']}, 10% off, valid until" in text_said

    stored = await rows(tp, "SELECT code, category, percent, source, redeemed_at FROM discount_code ORDER BY id")
    assert {(r.code, r.category, r.percent, r.source) for r in stored} == {
        (c["code"], c["category"], c["percent"], "welcome") for c in codes.values()
    }
    assert json.loads((await rows(tp, "SELECT categories FROM customer"))[0].categories) == ["shoes", "clothing"]

    # picking again: the new category earns a code, the one still valid does not
    body = await run(tp, "action_save_categories", {"categories": ["books", "shoes"]})
    assert [c["category"] for c in slots_set(body)["discount_codes"]] == ["books"]
    assert "Here is your welcome code:" in said(body)
    body = await run(tp, "action_save_categories", {"categories": ["shoes"]})
    assert slots_set(body)["discount_codes"] == []
    assert "still valid" in said(body)
    per_category = await rows(tp, "SELECT category, count(*) AS n FROM discount_code GROUP BY category ORDER BY category")
    assert [(r.category, r.n) for r in per_category] == [("books", 1), ("clothing", 1), ("shoes", 1)]
    assert json.loads((await rows(tp, "SELECT categories FROM customer"))[0].categories) == ["shoes"]


async def test_two_calls_at_once_issue_one_code_per_category(tp: Touchpoint) -> None:
    await grant_marketing(tp)
    call = action_call("action_save_categories", {"categories": ["toys", "sports"]})
    results = await asyncio.gather(*(post(tp, call) for _ in range(4)))
    assert [status for status, _ in results] == [200] * 4
    per_category = await rows(tp, "SELECT category, count(*) AS n FROM discount_code GROUP BY category ORDER BY category")
    assert [(r.category, r.n) for r in per_category] == [("sports", 1), ("toys", 1)]


async def test_without_marketing_consent_the_picks_are_saved_but_no_code_is_issued(tp: Touchpoint) -> None:
    body = await run(tp, "action_save_categories", {"categories": "beauty, home"})
    assert slots_set(body) == {"categories": ["beauty", "home"], "discount_codes": []}
    assert "once you allow marketing messages" in said(body)
    assert await rows(tp, "SELECT id FROM discount_code") == []
    assert json.loads((await rows(tp, "SELECT categories FROM customer"))[0].categories) == ["beauty", "home"]


async def test_unknown_or_too_many_categories_are_answered_and_change_nothing(tp: Touchpoint) -> None:
    body = await run(tp, "action_save_categories", {"categories": ["shoes", "garden gnomes"]})
    assert slots_set(body) == {"categories": None}
    assert said(body).startswith("I don't know the category garden gnomes. You can choose from: Shoes, Clothing,")
    body = await run(tp, "action_save_categories", {"categories": ["shoes", "clothing", "electronics", "home", "beauty", "toys"]})
    assert slots_set(body) == {"categories": None}
    assert said(body) == "You can choose up to 5 categories."
    body = await run(tp, "action_save_categories", {"categories": []})
    assert said(body).startswith("Please choose at least one category:")
    assert await nothing_stored(tp)
    status, body = await post(tp, action_call("action_save_categories", {"categories": 7}))
    assert (status, body["action_name"]) == (400, "action_save_categories")


async def test_a_german_customer_is_answered_in_german(tp: Touchpoint) -> None:
    await grant_marketing(tp)
    await execute(tp, "UPDATE customer SET locale = 'de'")
    body = await run(tp, "action_save_categories", {"categories": ["Zapatos"]})
    code = slots_set(body)["discount_codes"][0]["code"]
    assert "Ihre Lieblingskategorien sind gespeichert: Schuhe." in said(body)
    assert f"Schuhe: {code}, 10\xa0% Rabatt, gültig bis" in said(body)


# --------------------------------------------------------------------------- complaints


async def test_a_coupon_complaint_opens_a_ticket_with_a_refund_request(tp: Touchpoint) -> None:
    slots = {"complaint_kind": "coupon_failed", "order_number": "#A-10245", "complaint_description": "Charged full price"}
    body = await run(tp, "action_open_complaint", slots)
    number = slots_set(body)["ticket_number"]
    assert slots_set(body) == {"ticket_number": number, "refund_requested": True, "loyalty_code": None}
    assert f"registered under number {number}" in said(body)
    assert "requested a refund" in said(body)
    ticket = (await rows(tp, "SELECT * FROM ticket"))[0]
    assert (ticket.number, ticket.kind, ticket.order_number, ticket.description, bool(ticket.refund_requested), ticket.status) == (
        number, "coupon_failed", "A-10245", "Charged full price", True, "open"
    )
    assert (ticket.channel, ticket.address) == ("telegram", "5550100201")
    assert await rows(tp, "SELECT id FROM discount_code") == []  # a newcomer is not loyal


async def test_a_loyal_customer_gets_the_loyalty_code_once(tp: Touchpoint) -> None:
    await grant_marketing(tp)
    await execute(tp, """UPDATE customer SET attributes = '{"order_count": 7}'""")
    slots = {"complaint_kind": "delivery", "order_number": "skip", "complaint_description": "Never arrived", "loyalty_category": "Bücher"}
    body = await run(tp, "action_open_complaint", slots)
    number, code = slots_set(body)["ticket_number"], slots_set(body)["loyalty_code"]
    assert slots_set(body)["refund_requested"] is False
    assert f"20% off Books with the code {code}" in said(body)
    stored = await rows(tp, "SELECT code, category, percent, source, reference FROM discount_code")
    assert [(r.code, r.category, r.percent, r.source, r.reference) for r in stored] == [(code, "books", 20, "loyalty", number)]
    assert (await rows(tp, "SELECT order_number FROM ticket"))[0].order_number is None
    # a second complaint while the loyalty code is usable: a ticket, no second code
    body = await run(tp, "action_open_complaint", {**slots, "complaint_kind": "quality"})
    assert slots_set(body)["loyalty_code"] is None
    assert (await rows(tp, "SELECT count(*) AS n FROM ticket"))[0].n == 2
    assert (await rows(tp, "SELECT count(*) AS n FROM discount_code"))[0].n == 1


async def test_a_bad_order_number_is_answered_and_opens_nothing(tp: Touchpoint) -> None:
    slots = {"complaint_kind": "delivery", "order_number": "no idea!", "complaint_description": "Late"}
    body = await run(tp, "action_open_complaint", slots)
    assert slots_set(body) == {"order_number": None}
    assert said(body).startswith("no idea! does not look like one of our order numbers.")
    for wrong in ({**slots, "complaint_kind": "rude"}, {**slots, "order_number": None, "complaint_description": " "}):
        status, body = await post(tp, action_call("action_open_complaint", wrong))
        assert (status, body["action_name"]) == (400, "action_open_complaint")
    assert await nothing_stored(tp)


# --------------------------------------------------------------------------- surveys


async def test_survey_answers_are_kept_as_the_dialogs_keep_them(tp: Touchpoint) -> None:
    base = {"survey": "order_feedback", "order": "A-1001"}
    await run(tp, "action_submit_survey_answer", {**base, "question": "rating", "answer": 2.0})
    body = await run(tp, "action_submit_survey_answer", {**base, "question": "what_wrong", "answer": "Lieferung"})
    assert body == {"events": [], "responses": []}
    row = (await rows(tp, "SELECT survey, order_ref, status, answers FROM survey_response"))[0]
    assert (row.survey, row.order_ref, row.status) == ("order_feedback", "A-1001", "started")
    assert json.loads(row.answers) == {"rating": "2", "what_wrong": "1"}


async def test_invalid_survey_answers_are_rejected_and_change_nothing(tp: Touchpoint) -> None:
    base = {"survey": "order_feedback", "order": "A-1001", "question": "rating", "answer": 3}
    for wrong in (
        {**base, "survey": "nps"},
        {**base, "question": "colour"},
        {**base, "answer": 6},
        {**base, "question": "recommend", "answer": "eleven"},
        {**base, "question": "what_wrong", "answer": 5},
        {**base, "order": ""},
    ):
        status, body = await post(tp, action_call("action_submit_survey_answer", wrong))
        assert (status, body["action_name"]) == (400, "action_submit_survey_answer"), wrong
    assert await nothing_stored(tp)


# --------------------------------------------------------------------------- handoff


async def test_handoff_puts_the_complaint_ticket_in_a_persons_hands_and_silences_our_bot(tp: Touchpoint) -> None:
    body = await run(tp, "action_open_complaint", {"complaint_kind": "quality", "complaint_description": "Broken zip"})
    number = slots_set(body)["ticket_number"]
    body = await run(tp, "action_handoff", {"ticket_number": number})
    assert slots_set(body) == {"handoff": True}
    assert f"A member of our team will take over ticket {number}. You can expect an answer by " in said(body)
    assert [r.status for r in await rows(tp, "SELECT status FROM ticket")] == ["waiting_agent"]
    assert [r.mode for r in await rows(tp, "SELECT mode FROM conversation")] == ["agent"]
    # the customer writes to our Telegram bot: a person answers, not the bot
    assert (await tp.post_fixture("telegram", "text_plain.json")).status == 200
    await tp.idle()
    assert tp.fake.sent("telegram") == []


async def test_handoff_without_a_ticket_opens_one_that_waits_for_a_person(tp: Touchpoint) -> None:
    body = await run(tp, "action_handoff", sender="whatsapp:+4915550100301")
    assert "A member of our team will take over this conversation." in said(body)
    ticket = (await rows(tp, "SELECT kind, status, channel, address FROM ticket"))[0]
    assert (ticket.kind, ticket.status, ticket.channel, ticket.address) == ("handoff", "waiting_agent", "whatsapp", "4915550100301")
    assert [r.mode for r in await rows(tp, "SELECT mode FROM conversation")] == ["agent"]


# --------------------------------------------------------------------------- the protocol


async def test_a_bare_sender_id_takes_its_channel_from_the_slot_metadata_or_input_channel(tp: Touchpoint) -> None:
    consent = {"purpose": "surveys", "granted": True}
    await run(tp, "action_record_consent", {**consent, "channel": "viber"}, sender="vb-user-1")
    await run(tp, "action_record_consent", consent, sender="vb-user-2", latest_message={"text": "ok", "metadata": {"channel": "viber"}})
    user_event = {"event": "user", "text": "yes", "input_channel": "telegram", "parse_data": {}}
    await run(tp, "action_record_consent", consent, sender="777000", events=[user_event])
    identities = await rows(tp, "SELECT channel, address FROM channel_identity ORDER BY id")
    assert [(r.channel, r.address) for r in identities] == [("viber", "vb-user-1"), ("viber", "vb-user-2"), ("telegram", "777000")]
    for odd in ({}, {"latest_message": {"text": "hi", "metadata": "viber"}}):
        status, body = await post(tp, action_call("action_record_consent", consent, sender="web-session-9", **odd))
        assert status == 400 and "channel" in body["error"]
    assert (await rows(tp, "SELECT count(*) AS n FROM customer"))[0].n == 3


async def test_malformed_calls_get_400_and_change_nothing(tp: Touchpoint) -> None:
    good = action_call("action_handoff")
    status, body = await post(tp, None, raw=b"{not json")
    assert status == 400 and "not JSON" in body["error"]
    broken = [
        [good],
        {**good, "next_action": None},
        {k: v for k, v in good.items() if k != "tracker"},
        {**good, "tracker": {**good["tracker"], "sender_id": ""}},
        {**good, "tracker": {**good["tracker"], "slots": ["ticket_number"]}},
        {**good, "tracker": {**good["tracker"], "events": ["action_listen"]}},
        {**good, "domain": "domain.yml"},
    ]
    for call in broken:
        status, body = await post(tp, call)
        assert status == 400, call
        assert isinstance(body["error"], str) and body["error"]
    assert await nothing_stored(tp)


async def test_an_unknown_action_is_404_and_a_call_without_domain_449_as_in_rasa_sdk(tp: Touchpoint) -> None:
    status, body = await post(tp, action_call("action_order_pizza"))
    assert status == 404
    assert body == {"error": "No registered action found for name 'action_order_pizza'.", "action_name": "action_order_pizza"}
    no_domain = {k: v for k, v in action_call("action_handoff").items() if k != "domain"}
    status, body = await post(tp, no_domain)
    assert (status, body["action_name"]) == (449, "action_handoff")
    assert await nothing_stored(tp)


async def test_a_deflate_compressed_call_is_understood(tp: Touchpoint) -> None:
    """Rasa compresses action calls when ``compress_action_server_request`` is on."""
    raw = zlib.compress(json.dumps(action_call("action_record_consent", {"purpose": "location", "granted": False})).encode())
    status, body = await post(tp, None, raw=raw, headers={"Content-Encoding": "deflate"})
    assert status == 200, body
    assert said(body) == "Done. Offers nearby: switched off."


async def test_the_shared_token_is_required_when_set(tmp_path: Path, fake_platforms: FakePlatforms) -> None:
    base = make_settings(fake_platforms.base_url, f"sqlite+aiosqlite:///{tmp_path / 'tp.db'}")
    settings = TokenSettings(_env_file=None, **{**base.model_dump(), "touchpoint_rasa_token": TOKEN})
    tp = await start_touchpoint(settings, fake_platforms)
    try:
        call = action_call("action_record_consent", {"purpose": "marketing", "granted": True})
        for kw in ({}, {"params": {"token": "wrong"}}, {"headers": {"Authorization": "Bearer wrong"}}):
            status, body = await post(tp, call, **kw)
            assert status == 401 and "token" in body["error"], kw
        assert await nothing_stored(tp)
        assert (await post(tp, call, params={"token": TOKEN}))[0] == 200
        assert (await post(tp, call, headers={"Authorization": f"Bearer {TOKEN}"}))[0] == 200
        assert (await rows(tp, "SELECT count(*) AS n FROM consent"))[0].n == 1
    finally:
        await stop_touchpoint(tp)


async def test_an_oversized_call_is_refused(tp: Touchpoint) -> None:
    call = action_call("action_open_complaint", {"complaint_kind": "other", "complaint_description": "x" * (300 * 1024)})
    async with tp.session.post(f"{tp.url}/rasa/webhook", json=call) as response:
        assert response.status == 413
    assert await nothing_stored(tp)
