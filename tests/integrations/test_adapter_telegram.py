"""Telegram: every fixture through split + parse, unknown kinds, and rendering at the limits."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from adapter_support import fixture_json, fixture_names, telegram_adapter

from bot.events import Kind
from bot.messages import Button, Outbound
from integrations.base import WebhookError, utf16_len

ALICE = "5550100201"
OLENA = "5550100202"

# file -> (event_id, address, kind, fields the Inbound must carry)
EXPECTED = {
    "start_command.json": ("910000001", ALICE, Kind.COMMAND, {"command": "start", "text": "promo_AUTUMN26", "context": "promo_AUTUMN26", "first_name": "Alice", "language_code": "en"}),
    "text_plain.json": ("910000002", ALICE, Kind.TEXT, {"text": "Where is my order 1024?", "command": None}),
    "text_emoji_unicode.json": ("910000003", OLENA, Kind.TEXT, {"text": "Привіт 👋🏽 Де моє замовлення №1024? #доставка Деталі: https://example.org/o/1024 🚚", "first_name": "Олена", "language_code": "uk"}),
    "callback_query.json": ("910000004", ALICE, Kind.BUTTON, {"payload": "order:1024:confirm", "reply_token": "4382910001234567001"}),
    "location.json": ("910000005", ALICE, Kind.LOCATION, {"location": (52.520008, 13.404954)}),
    "photo.json": ("910000006", ALICE, Kind.MEDIA, {"text": "Box arrived damaged 📦"}),
    "edited_message.json": ("910000007", ALICE, Kind.EDITED, {"text": "Where is my order 1025?"}),
    "my_chat_member_blocked.json": ("910000008", ALICE, Kind.UNSUBSCRIBED, {}),
    "my_chat_member_unblocked.json": ("910000009", ALICE, Kind.RESUBSCRIBED, {}),
    "contact.json": ("910000010", ALICE, Kind.CONTACT, {"contact_phone": "+15550100123"}),
    "document.json": ("910000011", ALICE, Kind.MEDIA, {"text": "Invoice for order 1024"}),
    "group_command.json": ("910000012", "-1001555010020", Kind.COMMAND, {"command": "help", "text": "", "chat_type": "group", "first_name": "Олена"}),
}


def test_every_fixture_is_covered():
    assert sorted(EXPECTED) == fixture_names("telegram")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_split_and_parse(name):
    adapter = telegram_adapter()
    event_id, address, kind, fields = EXPECTED[name]
    items = adapter.split(fixture_json("telegram", name))
    assert [(i.event_id, i.address, i.inline) for i in items] == [(event_id, address, False)]
    event = adapter.parse(items[0].body)
    assert event is not None
    assert (event.channel, event.event_id, event.address, event.kind) == ("telegram", event_id, address, kind)
    for field, value in fields.items():
        assert getattr(event, field) == value, field
    assert event.received_at.tzinfo is not None


def test_timestamps_are_utc_seconds():
    event = _parse(fixture_json("telegram", "start_command.json"))
    assert event.received_at == datetime.fromtimestamp(1794993245, timezone.utc)


def test_largest_photo_size_and_document_metadata():
    photo = _parse(fixture_json("telegram", "photo.json")).media
    assert photo.type == "photo"
    assert photo.ref.endswith("0000003AQADfakeAAgBtAAM4BA")  # the 1280x960 size, listed last
    document = _parse(fixture_json("telegram", "document.json")).media
    assert (document.type, document.mime_type, document.file_name) == ("document", "application/pdf", "invoice-1024.pdf")


def test_location_is_floats():
    lat, lon = _parse(fixture_json("telegram", "location.json")).location
    assert type(lat) is float and type(lon) is float


def test_command_arguments_are_cut_in_utf16_units():
    # The argument starts with 👋🏽: 2 code points but 4 UTF-16 units; the bot mention is dropped.
    data = _message("/Order@ExampleShopBot 👋🏽 1024", [{"type": "bot_command", "offset": 0, "length": 21}])
    event = _parse(data)
    assert (event.kind, event.command, event.text, event.context) == (Kind.COMMAND, "order", "👋🏽 1024", None)


def test_command_entity_not_at_start_is_plain_text():
    text = "👋🏽 /help"
    data = _message(text, [{"type": "bot_command", "offset": 5, "length": 5}])
    assert utf16_len("👋🏽 ") == 5
    event = _parse(data)
    assert (event.kind, event.text) == (Kind.TEXT, text)


def test_start_without_payload_has_no_context():
    event = _parse(_message("/start", [{"type": "bot_command", "offset": 0, "length": 6}]))
    assert (event.command, event.text, event.context) == ("start", "", None)


def test_inline_callback_without_message_answers_the_user():
    data = {
        "update_id": 1,
        "callback_query": {
            "id": "99",
            "from": {"id": 5550100201, "is_bot": False, "first_name": "Alice"},
            "chat_instance": "1",
            "inline_message_id": "AAA",
            "data": "yes",
        },
    }
    [item] = telegram_adapter().split(data)
    assert item.address == ALICE
    event = telegram_adapter().parse(item.body)
    assert (event.kind, event.address, event.payload) == (Kind.BUTTON, ALICE, "yes")


def test_callback_on_inaccessible_message_uses_its_chat():
    data = fixture_json("telegram", "callback_query.json")
    data["callback_query"]["message"] = {"chat": {"id": 5550100201, "type": "private"}, "message_id": 104, "date": 0}
    event = _parse(data)
    assert (event.kind, event.address, event.payload) == (Kind.BUTTON, ALICE, "order:1024:confirm")


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 5, "channel_post": {"message_id": 1, "chat": {"id": -100123, "type": "channel"}, "date": 1794993245, "text": "news"}},
        {"update_id": 6, "poll": {"id": "1", "question": "?", "options": [], "total_voter_count": 0, "is_closed": False, "is_anonymous": True, "type": "regular", "allows_multiple_answers": False}},
        {"update_id": 7, "inline_query": {"id": "1", "from": {"id": 1, "is_bot": False, "first_name": "A"}, "query": "", "offset": ""}},
        {"update_id": 8, "managed_bot": {"anything": True}},  # a kind from a future Bot API release
    ],
)
def test_unknown_update_kinds_are_not_stored(update):
    assert telegram_adapter().split(update) == []


def test_my_chat_member_in_a_group_is_not_stored():
    data = fixture_json("telegram", "my_chat_member_blocked.json")
    data["my_chat_member"]["chat"] = {"id": -1001555010020, "type": "supergroup", "title": "Support"}
    assert telegram_adapter().split(data) == []


def test_service_message_parses_to_none():
    data = _message(None, None)
    data["message"]["new_chat_title"] = "Renamed"
    [item] = telegram_adapter().split(data)
    assert telegram_adapter().parse(item.body) is None


@pytest.mark.parametrize("body", [[], "x", {"message": {}}, {"update_id": "1"}, {"update_id": 1, "message": {"text": "no chat"}}])
def test_malformed_bodies_raise_webhook_error(body):
    with pytest.raises(WebhookError):
        telegram_adapter().split(body)


# --- rendering ----------------------------------------------------------------


def test_render_golden_inline_keyboard_layout():
    out = Outbound(
        "Pick one",
        (Button("yes", "Yes"), Button("no", "No"), Button("later", "Remind me next week, please"), Button("x", "Skip")),
    )
    assert telegram_adapter().render(ALICE, out) == [
        {
            "method": "sendMessage",
            "chat_id": 5550100201,
            "text": "Pick one",
            "reply_markup": {
                "inline_keyboard": [
                    [{"text": "Yes", "callback_data": "yes"}, {"text": "No", "callback_data": "no"}],
                    [{"text": "Remind me next week, please", "callback_data": "later"}],
                    [{"text": "Skip", "callback_data": "x"}],
                ]
            },
        }
    ]


def test_list_style_puts_one_button_per_row():
    out = Outbound("Categories", (Button("a", "A"), Button("b", "B")), style="list")
    markup = telegram_adapter().render(ALICE, out)[0]["reply_markup"]
    assert markup["inline_keyboard"] == [[{"text": "A", "callback_data": "a"}], [{"text": "B", "callback_data": "b"}]]


def test_callback_data_never_exceeds_64_bytes():
    long_id = "кат:категорія:взуття:чоловіче:зимове"  # 36 characters, but Cyrillic takes 2 bytes each
    ok_id = "cat:" + "x" * 60  # exactly 64 bytes
    assert len(long_id) < 64 < len(long_id.encode())
    out = Outbound("?", (Button(long_id, "Boots"), Button(ok_id, "Other")))
    buttons = [b for row in telegram_adapter().render(ALICE, out)[0]["reply_markup"]["inline_keyboard"] for b in row]
    assert [b["callback_data"] for b in buttons] == ["#1", ok_id]
    assert all(len(b["callback_data"].encode()) <= 64 for b in buttons)


def test_long_text_splits_on_word_boundaries_with_buttons_on_the_last_part():
    text = " ".join(f"word{i}" for i in range(900))  # about 6,000 characters
    parts = telegram_adapter().render(ALICE, Outbound(text, (Button("ok", "OK"),)))
    assert len(parts) == 2
    assert all(len(p["text"]) <= 4096 for p in parts)
    assert " ".join(p["text"] for p in parts) == text  # nothing lost, no word cut
    assert "reply_markup" not in parts[0] and "reply_markup" in parts[1]


def test_text_of_exactly_4096_characters_is_one_part_and_4097_is_two():
    assert len(telegram_adapter().render(ALICE, Outbound("a " * 2048))) == 1
    assert len(telegram_adapter().render(ALICE, Outbound("a " * 2048 + "b"))) == 2


def test_split_counts_utf16_units():
    text = " ".join(["🚚🚚"] * 1500)  # 4,499 characters but 7,499 UTF-16 units
    parts = telegram_adapter().render(ALICE, Outbound(text))
    assert len(parts) >= 2
    assert all(utf16_len(p["text"]) <= 4096 for p in parts)
    assert " ".join(p["text"] for p in parts) == text


def test_more_than_100_buttons_become_numbered_text():
    buttons = tuple(Button(f"b{i}", f"Option {i}") for i in range(101))
    [part] = telegram_adapter().render(ALICE, Outbound("Choose", buttons))
    assert "reply_markup" not in part
    assert part["text"].startswith("Choose\n\n1. Option 0\n2. Option 1\n")
    assert part["text"].endswith("101. Option 100")


def test_location_request_is_a_one_time_reply_keyboard():
    out = Outbound("Where are you?", request_location=True, location_label="Share location")
    assert telegram_adapter().render(ALICE, out) == [
        {
            "method": "sendMessage",
            "chat_id": 5550100201,
            "text": "Where are you?",
            "reply_markup": {
                "keyboard": [[{"text": "Share location", "request_location": True}]],
                "one_time_keyboard": True,
                "resize_keyboard": True,
            },
        }
    ]


def test_group_address_keeps_the_negative_id():
    [part] = telegram_adapter().render("-1001555010020", Outbound("hi"))
    assert part["chat_id"] == -1001555010020


def test_webhook_reply_is_not_used():
    assert telegram_adapter().webhook_reply(Outbound("hi")) is None


def _parse(data: dict):
    adapter = telegram_adapter()
    [item] = adapter.split(data)
    event = adapter.parse(item.body)
    assert event is not None
    return event


def _message(text: str | None, entities: list | None) -> dict:
    message = {
        "message_id": 200,
        "from": {"id": 5550100201, "is_bot": False, "first_name": "Alice", "language_code": "en"},
        "chat": {"id": 5550100201, "first_name": "Alice", "type": "private"},
        "date": 1794993245,
    }
    if text is not None:
        message["text"] = text
    if entities is not None:
        message["entities"] = entities
    return orjson.loads(orjson.dumps({"update_id": 920000001, "message": message}))
