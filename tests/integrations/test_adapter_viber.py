"""Viber: every fixture through split + parse, unknown kinds, and rendering at the limits."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from adapter_support import fixture_json, fixture_names, viber_adapter

from bot.events import Kind
from bot.messages import Button, Outbound
from integrations.base import WebhookError

ALICE = "tR9vQm2XbL8sKp4fWc1uJg=="
OLENA = "Zk3pL0aWq7nE5sYd2bHc9w=="

# file -> (event_id, address, inline, kind, fields the Inbound must carry)
EXPECTED = {
    "conversation_started.json": ("conversation_started:5741311803571721002", ALICE, True, Kind.STARTED, {"context": "promo_AUTUMN26", "first_name": "Alice", "language_code": "en"}),
    "subscribed.json": ("subscribed:5741311803571721003", ALICE, False, Kind.SUBSCRIBED, {"first_name": "Alice"}),
    "message_text_start.json": ("message:5741311803571721004", ALICE, False, Kind.COMMAND, {"command": "start", "text": "", "context": None}),
    "message_text.json": ("message:5741311803571721005", ALICE, False, Kind.TEXT, {"text": "Where is my order 1024?"}),
    "message_text_unicode.json": ("message:5741311803571721006", OLENA, False, Kind.TEXT, {"text": "Привіт 👋🏽 Де моє замовлення №1024? 🚚", "first_name": "Олена", "language_code": "uk"}),
    # Not one of our "btn:" bodies, so it is what the customer typed as far as we can tell.
    "message_keyboard_reply.json": ("message:5741311803571721007", ALICE, False, Kind.TEXT, {"text": "order:1024:confirm", "payload": None}),
    "message_location.json": ("message:5741311803571721008", ALICE, False, Kind.LOCATION, {"location": (52.520008, 13.404954)}),
    "message_picture.json": ("message:5741311803571721009", ALICE, False, Kind.MEDIA, {"text": "Box arrived damaged"}),
    "message_contact.json": ("message:5741311803571721010", ALICE, False, Kind.CONTACT, {"contact_phone": "+15550100123"}),
    "delivered.json": ("delivered:5741311803571722001:" + ALICE, ALICE, False, Kind.RECEIPT, {}),
    "seen.json": ("seen:5741311803571722001:" + ALICE, ALICE, False, Kind.RECEIPT, {}),
    "failed.json": ("failed:5741311803571722002:" + OLENA, OLENA, False, Kind.RECEIPT, {}),
    "unsubscribed.json": ("unsubscribed:5741311803571721011", ALICE, False, Kind.UNSUBSCRIBED, {}),
}


def test_every_fixture_is_covered():
    assert sorted([*EXPECTED, "webhook_check.json"]) == fixture_names("viber")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_split_and_parse(name):
    adapter = viber_adapter()
    event_id, address, inline, kind, fields = EXPECTED[name]
    items = adapter.split(fixture_json("viber", name))
    assert [(i.event_id, i.address, i.inline) for i in items] == [(event_id, address, inline)]
    event = adapter.parse(items[0].body)
    assert event is not None
    assert (event.channel, event.event_id, event.address, event.kind) == ("viber", event_id, address, kind)
    for field, value in fields.items():
        assert getattr(event, field) == value, field


def test_webhook_check_is_not_stored():
    assert viber_adapter().split(fixture_json("viber", "webhook_check.json")) == []


def test_big_message_tokens_stay_exact_ints():
    data = fixture_json("viber", "delivered.json")
    assert data["message_token"] == 5741311803571722001 and data["message_token"] > 2**53
    [item] = viber_adapter().split(data)
    assert orjson.loads(item.body)["message_token"] == 5741311803571722001
    receipt = viber_adapter().parse(item.body).receipt
    assert (receipt.platform_message_id, receipt.status) == ("5741311803571722001", "delivered")


def test_seen_is_not_a_duplicate_of_delivered():
    delivered = viber_adapter().split(fixture_json("viber", "delivered.json"))[0]
    seen = viber_adapter().split(fixture_json("viber", "seen.json"))[0]
    assert delivered.event_id != seen.event_id
    assert viber_adapter().parse(seen.body).receipt.status == "read"


def test_failed_receipt_carries_the_reason():
    receipt = _parse(fixture_json("viber", "failed.json")).receipt
    assert (receipt.platform_message_id, receipt.status, receipt.error) == ("5741311803571722002", "failed", "failure description")


def test_timestamps_are_milliseconds():
    event = _parse(fixture_json("viber", "message_text.json"))
    assert event.received_at == datetime.fromtimestamp(1794993285.123, timezone.utc)


def test_picture_is_media_with_caption_and_file_name():
    media = _parse(fixture_json("viber", "message_picture.json")).media
    assert (media.type, media.file_name) == ("photo", "IMG_0042.jpg")
    assert media.ref.endswith("/0042/img.jpg")


def test_location_is_floats():
    lat, lon = _parse(fixture_json("viber", "message_location.json")).location
    assert type(lat) is float and type(lon) is float


def test_our_button_body_is_a_button_press():
    data = fixture_json("viber", "message_text.json")
    data["message"]["text"] = "btn:size_42"
    event = _parse(data)
    assert (event.kind, event.payload) == (Kind.BUTTON, "size_42")


def test_typed_start_with_payload_and_bot_mention():
    data = fixture_json("viber", "message_text.json")
    data["message"]["text"] = "/START@shop promo_X"
    event = _parse(data)
    assert (event.kind, event.command, event.text, event.context) == (Kind.COMMAND, "start", "promo_X", "promo_X")


@pytest.mark.parametrize(
    "message",
    [
        {"type": "sticker", "sticker_id": 46105},
        {"type": "url", "media": "https://example.org"},
        {"type": "rich_media", "rich_media": {}},
        {"type": "brand_new_type", "x": 1},
    ],
)
def test_unused_message_types_parse_to_none(message):
    data = fixture_json("viber", "message_text.json")
    data["message"] = message
    [item] = viber_adapter().split(data)
    assert viber_adapter().parse(item.body) is None


def test_unknown_event_is_not_stored():
    assert viber_adapter().split({"event": "client_status", "timestamp": 1}) == []


@pytest.mark.parametrize("body", [[], {"timestamp": 1}, {"event": "message", "message_token": 1}, {"event": "seen", "message_token": 1}])
def test_malformed_bodies_raise_webhook_error(body):
    with pytest.raises(WebhookError):
        viber_adapter().split(body)


# --- rendering ----------------------------------------------------------------


def test_render_golden_keyboard():
    out = Outbound("Pick one", (Button("yes", "Yes"), Button("no", "No"), Button("later", "Remind me next week, please")))
    assert viber_adapter().render(ALICE, out) == [
        {
            "method": "send_message",
            "receiver": ALICE,
            "sender": {"name": "Example Shop"},
            "type": "text",
            "text": "Pick one",
            "keyboard": {
                "Type": "keyboard",
                "DefaultHeight": False,
                "Buttons": [
                    {"ActionType": "reply", "ActionBody": "btn:yes", "Text": "Yes", "Columns": 3, "Rows": 1, "Silent": True},
                    {"ActionType": "reply", "ActionBody": "btn:no", "Text": "No", "Columns": 3, "Rows": 1, "Silent": True},
                    {"ActionType": "reply", "ActionBody": "btn:later", "Text": "Remind me next week, please", "Columns": 6, "Rows": 1, "Silent": True},
                ],
            },
        }
    ]


def test_sender_name_is_truncated_to_28_characters():
    adapter = viber_adapter(bot_name="The Example Shop of Fine Winter Footwear")
    name = adapter.render(ALICE, Outbound("hi"))[0]["sender"]["name"]
    assert len(name) == 28 and name.endswith("…")


def test_24_buttons_fit_and_25_become_numbered_text():
    buttons = tuple(Button(f"b{i}", f"Option {i}") for i in range(25))
    [fits] = viber_adapter().render(ALICE, Outbound("Choose", buttons[:24]))
    assert len(fits["keyboard"]["Buttons"]) == 24
    [numbered] = viber_adapter().render(ALICE, Outbound("Choose", buttons))
    assert "keyboard" not in numbered
    assert numbered["text"].startswith("Choose\n\n1. Option 0\n")
    assert numbered["text"].endswith("25. Option 24")


def test_long_button_id_becomes_a_short_token():
    out = Outbound("?", (Button("x" * 65, "Long"), Button("short", "Short")))
    bodies = [b["ActionBody"] for b in viber_adapter().render(ALICE, out)[0]["keyboard"]["Buttons"]]
    assert bodies == ["btn:#1", "btn:short"]


def test_location_request_adds_a_location_picker():
    out = Outbound("Where are you?", (Button("skip", "Skip"),), request_location=True, location_label="Send location")
    [part] = viber_adapter().render(ALICE, out)
    assert part["min_api_version"] == 3
    assert part["keyboard"]["Buttons"][-1] == {
        "ActionType": "location-picker",
        "ActionBody": "location",
        "Text": "Send location",
        "Columns": 6,
        "Rows": 1,
    }
    assert part["keyboard"]["Buttons"][0]["ActionBody"] == "btn:skip"


def test_long_text_is_split_at_7000_with_the_keyboard_last():
    text = " ".join(f"word{i}" for i in range(1500))  # about 10,000 characters
    parts = viber_adapter().render(ALICE, Outbound(text, (Button("ok", "OK"),)))
    assert len(parts) == 2
    assert all(len(p["text"]) <= 7000 for p in parts)
    assert " ".join(p["text"] for p in parts) == text
    assert "keyboard" not in parts[0] and "keyboard" in parts[1]


def test_every_request_stays_under_30_kb():
    text = " ".join(["🚚🚚🚚"] * 1700)  # under 7,000 characters but about 23 KB of UTF-8
    buttons = tuple(Button(f"b{i}", "Ї" * 120) for i in range(24))  # a heavy keyboard
    parts = viber_adapter().render(ALICE, Outbound(text, buttons))
    assert len(parts) >= 2
    assert all(len(orjson.dumps({k: v for k, v in p.items() if k != "method"})) <= 30_000 for p in parts)
    assert " ".join(p["text"] for p in parts) == text


def test_welcome_reply_has_no_receiver():
    reply = viber_adapter().webhook_reply(Outbound("Welcome!", (Button("signup", "Sign up"),)))
    assert "receiver" not in reply and "method" not in reply
    assert (reply["type"], reply["text"], reply["sender"]) == ("text", "Welcome!", {"name": "Example Shop"})
    assert reply["keyboard"]["Buttons"][0]["ActionBody"] == "btn:signup"


def _parse(data: dict):
    adapter = viber_adapter()
    [item] = adapter.split(data)
    event = adapter.parse(item.body)
    assert event is not None
    return event
