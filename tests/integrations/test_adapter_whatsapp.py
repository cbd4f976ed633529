"""WhatsApp: every fixture through split + parse, batching, unknown kinds, rendering at the limits."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import orjson
import pytest
from adapter_support import WA_PHONE_ID, fixture_json, fixture_names, whatsapp_adapter

from bot.events import Kind
from bot.messages import Button, Outbound
from integrations.base import WebhookError

ALICE = "15550100201"
OLENA = "15550100202"
OUR_MESSAGE_1 = "wamid.HBgLMTU1NTAxMDAyMDEVAgARGBI0QkFLRU9VVEJPVU5EMDAwMDEA"


def _inbound_id(n: int) -> str:
    return f"wamid.HBgLMTU1NTAxMDAyMDEVAgASGBQzRUIwRkFLRTAwMDAwMDAwMDAw000{n}AA=="


# file -> (event_id, address, kind, fields the Inbound must carry)
EXPECTED = {
    "text_start.json": (_inbound_id(1), ALICE, Kind.COMMAND, {"command": "start", "text": "", "first_name": "Alice"}),
    "text_plain.json": (_inbound_id(2), ALICE, Kind.TEXT, {"text": "Where is my order 1024?", "first_name": "Alice"}),
    "text_unicode.json": (_inbound_id(3), OLENA, Kind.TEXT, {"text": "Привіт 👋🏽 Де моє замовлення №1024? مرحبا 🚚", "first_name": "Олена"}),
    "interactive_button_reply.json": (_inbound_id(4), ALICE, Kind.BUTTON, {"payload": "order_1024_confirm"}),
    "interactive_list_reply.json": (_inbound_id(5), ALICE, Kind.BUTTON, {"payload": "ship_express"}),
    "location.json": (_inbound_id(6), ALICE, Kind.LOCATION, {"location": (52.520008, 13.404954)}),
    "image.json": (_inbound_id(7), ALICE, Kind.MEDIA, {"text": "Box arrived damaged"}),
    # A template quick reply "STOP_PROMOS" is an opt-out, handled like a typed /stop.
    "button_quick_reply.json": (_inbound_id(8), ALICE, Kind.COMMAND, {"command": "stop", "payload": None}),
    "status_sent.json": (f"{OUR_MESSAGE_1}:sent", ALICE, Kind.RECEIPT, {}),
    "status_delivered.json": (f"{OUR_MESSAGE_1}:delivered", ALICE, Kind.RECEIPT, {}),
    "status_read.json": (f"{OUR_MESSAGE_1}:read", ALICE, Kind.RECEIPT, {}),
    "status_failed_131047.json": ("wamid.HBgLMTU1NTAxMDAyMDIVAgARGBI0QkFLRU9VVEJPVU5EMDAwMDQA:failed", OLENA, Kind.RECEIPT, {}),
    "status_failed_131026.json": ("wamid.HBgLMTU1NTAxMDAyMDEVAgARGBI0QkFLRU9VVEJPVU5EMDAwMDUA:failed", ALICE, Kind.RECEIPT, {}),
}


def test_every_fixture_is_covered():
    assert sorted(EXPECTED) == fixture_names("whatsapp")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_split_and_parse(name):
    adapter = whatsapp_adapter()
    event_id, address, kind, fields = EXPECTED[name]
    items = adapter.split(fixture_json("whatsapp", name))
    assert [(i.event_id, i.address, i.inline) for i in items] == [(event_id, address, False)]
    event = adapter.parse(items[0].body)
    assert event is not None
    assert (event.channel, event.event_id, event.address, event.kind) == ("whatsapp", event_id, address, kind)
    for field, value in fields.items():
        assert getattr(event, field) == value, field


@pytest.mark.parametrize(
    "name, status, code, unreachable",
    [
        ("status_sent.json", "sent", None, False),
        ("status_delivered.json", "delivered", None, False),
        ("status_read.json", "read", None, False),
        ("status_failed_131047.json", "failed", "131047", False),
        ("status_failed_131026.json", "failed", "131026", True),
    ],
)
def test_statuses_become_receipts(name, status, code, unreachable):
    receipt = _parse(fixture_json("whatsapp", name)).receipt
    assert (receipt.status, receipt.error_code, receipt.unreachable) == (status, code, unreachable)
    assert receipt.platform_message_id.startswith("wamid.")


def test_timestamps_are_string_seconds():
    event = _parse(fixture_json("whatsapp", "text_plain.json"))
    assert event.received_at == datetime.fromtimestamp(1794993285, timezone.utc)


def test_image_is_media_with_caption():
    media = _parse(fixture_json("whatsapp", "image.json")).media
    assert (media.type, media.ref, media.mime_type) == ("photo", "1234567890123456", "image/jpeg")


def test_other_template_quick_replies_are_buttons():
    data = fixture_json("whatsapp", "button_quick_reply.json")
    _message_of(data)["button"]["payload"] = "REORDER_1024"
    event = _parse(data)
    assert (event.kind, event.payload) == (Kind.BUTTON, "REORDER_1024")


def test_batched_entries_changes_messages_and_statuses_all_count():
    text = fixture_json("whatsapp", "text_plain.json")
    second = copy.deepcopy(_message_of(text))
    second["id"] = "wamid.second"
    text["entry"][0]["changes"][0]["value"]["messages"].append(second)
    status = fixture_json("whatsapp", "status_read.json")
    text["entry"][0]["changes"].append(status["entry"][0]["changes"][0])
    text["entry"].append(fixture_json("whatsapp", "status_sent.json")["entry"][0])
    items = whatsapp_adapter().split(text)
    assert [i.event_id for i in items] == [_inbound_id(2), "wamid.second", f"{OUR_MESSAGE_1}:read", f"{OUR_MESSAGE_1}:sent"]


def test_other_business_numbers_and_fields_are_skipped():
    data = fixture_json("whatsapp", "text_plain.json")
    data["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
    assert whatsapp_adapter().split(data) == []
    data = fixture_json("whatsapp", "text_plain.json")
    data["entry"][0]["changes"][0]["field"] = "account_update"
    assert whatsapp_adapter().split(data) == []


def test_errors_only_value_is_not_stored():
    data = fixture_json("whatsapp", "status_sent.json")
    value = data["entry"][0]["changes"][0]["value"]
    del value["statuses"]
    value["errors"] = [{"code": 130429, "title": "Rate limit hit"}]
    assert whatsapp_adapter().split(data) == []


def test_username_users_are_addressed_by_business_scoped_id():
    data = fixture_json("whatsapp", "text_plain.json")
    value = data["entry"][0]["changes"][0]["value"]
    value["contacts"] = [{"profile": {"name": "Sam Lee", "username": "sam"}, "user_id": "US.13491208655302741918"}]
    message = value["messages"][0]
    del message["from"]
    message["from_user_id"] = "US.13491208655302741918"
    [item] = whatsapp_adapter().split(data)
    assert item.address == "US.13491208655302741918"
    event = whatsapp_adapter().parse(item.body)
    assert (event.address, event.first_name) == ("US.13491208655302741918", "Sam")


@pytest.mark.parametrize(
    "message",
    [
        {"type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": "👍"}},
        {"type": "system", "system": {"body": "changed number", "type": "user_changed_number", "wa_id": "1555"}},
        {"type": "unsupported", "errors": [{"code": 131051, "title": "Message type unknown"}]},
        {"type": "interactive", "interactive": {"type": "nfm_reply", "nfm_reply": {}}},
    ],
)
def test_unused_message_types_parse_to_none(message):
    data = fixture_json("whatsapp", "text_plain.json")
    _message_of(data).pop("text")
    _message_of(data).update(message)
    [item] = whatsapp_adapter().split(data)
    assert whatsapp_adapter().parse(item.body) is None


def test_unknown_status_value_parses_to_none():
    data = fixture_json("whatsapp", "status_read.json")
    data["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] = "deleted"
    [item] = whatsapp_adapter().split(data)
    assert whatsapp_adapter().parse(item.body) is None


@pytest.mark.parametrize("body", [[], "x", {"object": "whatsapp_business_account"}, {"entry": {"id": "1"}}])
def test_malformed_bodies_raise_webhook_error(body):
    with pytest.raises(WebhookError):
        whatsapp_adapter().split(body)


@pytest.mark.parametrize(
    "body",
    [
        {"entry": ["x"]},
        {"entry": [{"changes": "x"}]},
        {"entry": [{"changes": [{"field": "messages", "value": {"metadata": {"phone_number_id": WA_PHONE_ID}, "messages": [{"from": "1"}]}}]}]},
    ],
)
def test_malformed_elements_are_skipped_not_stored(body):
    assert whatsapp_adapter().split(body) == []


def test_verify_challenge():
    adapter = whatsapp_adapter()
    good = {"hub.mode": "subscribe", "hub.verify_token": "test-verify-token", "hub.challenge": "1158201444"}
    assert adapter.verify_challenge(good) == "1158201444"
    assert adapter.verify_challenge({**good, "hub.verify_token": "wrong"}) is None
    assert adapter.verify_challenge({**good, "hub.mode": "unsubscribe"}) is None
    assert adapter.verify_challenge({k: v for k, v in good.items() if k != "hub.verify_token"}) is None
    assert adapter.verify_challenge({k: v for k, v in good.items() if k != "hub.challenge"}) is None


# --- rendering ----------------------------------------------------------------

ENVELOPE = {"method": "messages", "messaging_product": "whatsapp", "recipient_type": "individual", "to": ALICE}


def test_three_short_buttons_are_reply_buttons():
    out = Outbound("Confirm order 1024?", (Button("yes", "Yes"), Button("no", "No"), Button("later", "Later")))
    assert whatsapp_adapter().render(ALICE, out) == [
        {
            **ENVELOPE,
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Confirm order 1024?"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                        {"type": "reply", "reply": {"id": "no", "title": "No"}},
                        {"type": "reply", "reply": {"id": "later", "title": "Later"}},
                    ]
                },
            },
        }
    ]


def test_four_buttons_are_a_list():
    buttons = tuple(Button(f"c{i}", f"Category {i}") for i in range(4))
    [part] = whatsapp_adapter().render(ALICE, Outbound("Pick a category", buttons, list_label="Choose"))
    assert part["interactive"] == {
        "type": "list",
        "body": {"text": "Pick a category"},
        "action": {
            "button": "Choose",
            "sections": [{"rows": [{"id": f"c{i}", "title": f"Category {i}"} for i in range(4)]}],
        },
    }


def test_a_25_character_label_turns_buttons_into_a_list_with_a_truncated_title():
    label = "Express delivery (1-2 d)"  # 24 characters: fits a row, not a button
    longer = "Standard delivery 3-5 days"  # 26 characters
    out = Outbound("Shipping?", (Button("express", label), Button("standard", longer)))
    [part] = whatsapp_adapter().render(ALICE, out)
    assert part["interactive"]["type"] == "list"
    rows = part["interactive"]["action"]["sections"][0]["rows"]
    assert rows[0] == {"id": "express", "title": label}
    assert rows[1] == {"id": "standard", "title": "Standard delivery 3-5 d…", "description": longer}
    assert all(len(r["title"]) <= 24 for r in rows)
    assert part["interactive"]["action"]["button"] == "☰"  # no list_label given: no English literal


def test_list_button_label_is_truncated_to_20():
    buttons = tuple(Button(f"c{i}", f"Category {i}") for i in range(4))
    [part] = whatsapp_adapter().render(ALICE, Outbound("?", buttons, list_label="Choose one of these categories"))
    assert len(part["interactive"]["action"]["button"]) == 20


def test_eleven_buttons_become_numbered_text():
    buttons = tuple(Button(f"c{i}", f"Category {i}") for i in range(11))
    assert whatsapp_adapter().render(ALICE, Outbound("Pick", buttons)) == [
        {**ENVELOPE, "type": "text", "text": {"body": "Pick\n\n" + "\n".join(f"{i + 1}. Category {i}" for i in range(11)), "preview_url": False}}
    ]


def test_titles_colliding_after_truncation_fall_back_to_numbered_text():
    a, b = "Winter boots for women, size 38", "Winter boots for women, size 39"
    parts = whatsapp_adapter().render(ALICE, Outbound("Which?", (Button("a", a), Button("b", b))))
    assert [p["type"] for p in parts] == ["text"]
    assert parts[0]["text"]["body"] == f"Which?\n\n1. {a}\n2. {b}"


def test_duplicate_button_labels_are_not_sent_as_reply_buttons():
    parts = whatsapp_adapter().render(ALICE, Outbound("?", (Button("a", "Yes"), Button("b", "Yes"))))
    assert parts[0]["type"] == "text"


def test_long_ids_become_tokens_within_200_bytes():
    out = Outbound("?", (Button("x" * 201, "Long"), Button("ok", "OK")))
    [part] = whatsapp_adapter().render(ALICE, out)
    assert [b["reply"]["id"] for b in part["interactive"]["action"]["buttons"]] == ["#1", "ok"]


def test_body_over_1024_with_buttons_sends_the_overflow_first():
    text = " ".join(f"word{i}" for i in range(400))  # about 2,700 characters
    parts = whatsapp_adapter().render(ALICE, Outbound(text, (Button("ok", "OK"),)))
    assert [p["type"] for p in parts] == ["text", "interactive"]
    body = parts[1]["interactive"]["body"]["text"]
    assert len(body) <= 1024
    assert parts[0]["text"]["body"] + " " + body == text


def test_list_body_up_to_4096():
    text = "x " * 2000  # 4,000 characters: too long for buttons, fine for a list body
    buttons = tuple(Button(f"c{i}", f"Category {i}") for i in range(4))
    parts = whatsapp_adapter().render(ALICE, Outbound(text.strip(), buttons))
    assert [p["type"] for p in parts] == ["interactive"]


def test_long_plain_text_is_split_at_4096():
    text = " ".join(f"word{i}" for i in range(900))
    parts = whatsapp_adapter().render(ALICE, Outbound(text))
    assert len(parts) == 2 and all(len(p["text"]["body"]) <= 4096 for p in parts)
    assert " ".join(p["text"]["body"] for p in parts) == text


def test_location_request():
    assert whatsapp_adapter().render(ALICE, Outbound("Where are you?", request_location=True)) == [
        {
            **ENVELOPE,
            "type": "interactive",
            "interactive": {
                "type": "location_request_message",
                "body": {"text": "Where are you?"},
                "action": {"name": "send_location"},
            },
        }
    ]


def _message_of(data: dict) -> dict:
    return data["entry"][0]["changes"][0]["value"]["messages"][0]


def _parse(data: dict):
    adapter = whatsapp_adapter()
    [item] = adapter.split(orjson.loads(orjson.dumps(data)))
    event = adapter.parse(item.body)
    assert event is not None
    return event
