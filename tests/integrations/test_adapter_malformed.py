"""Authentic but malformed input, one rule at a time: refused cleanly, skipped, or typed.

Regression tests for an adversarial review: undecodable auth headers, mistyped
ids in Telegram / Viber / WhatsApp bodies, wrongly typed fields reaching the
dialogs, over-eager STOP matching, and blank texts or labels on the way out.
"""

from __future__ import annotations

import copy
import hashlib
import hmac

import orjson
import pytest
from adapter_support import (
    TG_SECRET,
    VIBER_TOKEN,
    WA_APP_SECRET,
    WA_VERIFY,
    fixture_bytes,
    fixture_json,
    telegram_adapter,
    viber_adapter,
    whatsapp_adapter,
)

from bot.events import Kind
from bot.messages import Button, Outbound
from integrations.base import PLACEHOLDER, WebhookError, same_secret

ALICE_TG = "5550100201"
ALICE_WA = "15550100201"

# --- 1. auth headers that are not valid text ---------------------------------


@pytest.mark.parametrize(
    "given, expected, result",
    [
        ("s3cret", "s3cret", True),
        ("s3cret", "s3creT", False),
        ("s3\udcffcret", "s3cret", False),  # a byte aiohttp could not decode (surrogateescape)
        ("\udcff\udcfe", "s3cret", False),
        ("\ud800", "s3cret", False),  # a surrogate even surrogateescape cannot encode
        ("Ключ", "Ключ", True),
        (None, "s3cret", False),
        ("", "s3cret", False),
        ("", "", False),  # an empty secret never authenticates
        ("anything", "", False),
    ],
)
def test_same_secret(given, expected, result):
    assert same_secret(given, expected) is result


@pytest.mark.parametrize("value", ["s3\udcffcret", TG_SECRET + "\udcff", "\ud800", "\udcff\udcfe"])
def test_telegram_undecodable_secret_header_is_refused(value):
    assert telegram_adapter().verify({"X-Telegram-Bot-Api-Secret-Token": value}, b"{}") is False


@pytest.mark.parametrize("value", ["\udcff\udcfe", "\ud800", "ab\udcff" * 21 + "a"])
def test_viber_undecodable_signature_is_refused(value):
    body = fixture_bytes("viber", "message_text.json")
    assert viber_adapter().verify({"X-Viber-Content-Signature": value}, body) is False


@pytest.mark.parametrize("value", ["sha256=\udcff\udcfe", "sha256=\ud800", "\udcffsha256=00"])
def test_whatsapp_undecodable_signature_is_refused(value):
    body = fixture_bytes("whatsapp", "text_plain.json")
    assert whatsapp_adapter().verify({"X-Hub-Signature-256": value}, body) is False


def test_signatures_still_pass_when_well_formed():
    body = fixture_bytes("whatsapp", "text_plain.json")
    digest = hmac.new(WA_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert whatsapp_adapter().verify({"X-Hub-Signature-256": f"sha256={digest}"}, body)
    body = fixture_bytes("viber", "message_text.json")
    assert viber_adapter().verify({"X-Viber-Content-Signature": hmac.new(VIBER_TOKEN.encode(), body, hashlib.sha256).hexdigest()}, body)


@pytest.mark.parametrize("challenge", ["\udcff", "12\x00", "line\nbreak"])
def test_whatsapp_challenge_that_cannot_be_echoed_is_refused(challenge):
    query = {"hub.mode": "subscribe", "hub.verify_token": WA_VERIFY, "hub.challenge": challenge}
    assert whatsapp_adapter().verify_challenge(query) is None
    assert whatsapp_adapter().verify_challenge({**query, "hub.verify_token": "\udcff"}) is None


# --- 2. WhatsApp: a bad element is skipped, the good ones are kept -------------


def _wa_value(data: dict) -> dict:
    return data["entry"][0]["changes"][0]["value"]


@pytest.mark.parametrize(
    "change",
    [
        {"id": None},
        {"id": {"x": 1}},
        {"id": ["wamid.x"]},
        {"id": 5},
        {"id": ""},
        {"id": "w" * 257},
        {"from": [1]},
        {"from": 15550100201},
        {"from": "1" * 129},
        {"from": None, "from_user_id": {"id": 1}},
    ],
)
def test_whatsapp_malformed_message_is_skipped_and_the_rest_kept(change):
    data = fixture_json("whatsapp", "text_plain.json")
    good = _wa_value(data)["messages"][0]
    bad = {**copy.deepcopy(good), **change}
    _wa_value(data)["messages"] = [bad, good, "not an object", None]
    items = whatsapp_adapter().split(data)
    assert [(i.event_id, i.address) for i in items] == [(good["id"], ALICE_WA)]


@pytest.mark.parametrize(
    "change",
    [{"id": None}, {"id": 5}, {"status": None}, {"status": ["read"]}, {"recipient_id": [1]}, {"recipient_id": None}, {"recipient_id": "1" * 129}],
)
def test_whatsapp_malformed_status_is_skipped_and_the_rest_kept(change):
    data = fixture_json("whatsapp", "status_read.json")
    good = _wa_value(data)["statuses"][0]
    _wa_value(data)["statuses"] = [{**copy.deepcopy(good), **change}, good]
    items = whatsapp_adapter().split(data)
    assert [i.event_id for i in items] == [f"{good['id']}:read"]


def test_whatsapp_malformed_entries_and_changes_do_not_hide_good_ones():
    data = fixture_json("whatsapp", "text_plain.json")
    data["entry"] = [None, {"changes": None}, {"changes": [7, {"field": "messages", "value": []}]}, *data["entry"]]
    [item] = whatsapp_adapter().split(data)
    assert item.address == ALICE_WA


def test_whatsapp_wamid_of_256_characters_and_address_of_128_are_accepted():
    data = fixture_json("whatsapp", "text_plain.json")
    message = _wa_value(data)["messages"][0]
    message["id"], message["from"] = "w" * 256, "1" * 128
    [item] = whatsapp_adapter().split(data)
    event = whatsapp_adapter().parse(item.body)
    assert (event.event_id, event.address) == ("w" * 256, "1" * 128)


# --- 3. Telegram: chat, user and update ids are 64-bit integers ----------------


@pytest.mark.parametrize("chat_id", [{"a": 1}, None, 3016.5, "5550100201", "x" * 5000, True, False, 2**63, -(2**63) - 1, [1]])
def test_telegram_chat_id_that_is_not_an_int64_is_refused(chat_id):
    data = fixture_json("telegram", "text_plain.json")
    data["message"]["chat"]["id"] = chat_id
    with pytest.raises(WebhookError):
        telegram_adapter().split(data)


@pytest.mark.parametrize("update_id", [True, False, None, "910000002", 9.1e8, [1]])
def test_telegram_update_id_that_is_not_an_int_is_refused(update_id):
    data = fixture_json("telegram", "text_plain.json")
    data["update_id"] = update_id
    with pytest.raises(WebhookError):
        telegram_adapter().split(data)


@pytest.mark.parametrize("from_id", [None, "5550100201", True, 1.5])
def test_telegram_callback_without_message_needs_an_integer_user_id(from_id):
    data = fixture_json("telegram", "callback_query.json")
    del data["callback_query"]["message"]
    data["callback_query"]["from"]["id"] = from_id
    with pytest.raises(WebhookError):
        telegram_adapter().split(data)


@pytest.mark.parametrize("chat_id", [2**63 - 1, -(2**63), -1001555010020])
def test_telegram_int64_extremes_are_addresses(chat_id):
    data = fixture_json("telegram", "text_plain.json")
    data["message"]["chat"]["id"] = chat_id
    [item] = telegram_adapter().split(data)
    event = telegram_adapter().parse(item.body)
    assert item.address == event.address == str(chat_id)


def test_telegram_private_my_chat_member_with_a_bad_chat_id_is_refused():
    data = fixture_json("telegram", "my_chat_member_blocked.json")
    data["my_chat_member"]["chat"]["id"] = "5550100201"
    with pytest.raises(WebhookError):
        telegram_adapter().split(data)


# --- 4. Viber: message_token is a 64-bit integer, user ids are short strings ---


@pytest.mark.parametrize("token", [None, True, False, 1.5, "5741311803571722001", [1], {"t": 1}, 2**64, -(2**63) - 1])
@pytest.mark.parametrize("name", ["message_text.json", "conversation_started.json", "delivered.json", "seen.json", "failed.json"])
def test_viber_token_that_is_not_an_int64_is_refused(name, token):
    data = fixture_json("viber", name)
    data["message_token"] = token
    with pytest.raises(WebhookError):
        viber_adapter().split(data)


def test_viber_token_beyond_int64_arrives_as_float_and_is_refused():
    body = fixture_bytes("viber", "message_text.json").replace(b'"message_token"', b'"message_token": 18446744073709551616, "x"', 1)
    data = orjson.loads(body)
    assert isinstance(data["message_token"], float)
    with pytest.raises(WebhookError):
        viber_adapter().split(data)


@pytest.mark.parametrize("token", [2**64 - 1, 2**63, 0, 1])
def test_viber_unsigned_64_bit_tokens_are_kept_exact(token):
    data = fixture_json("viber", "message_text.json")
    data["message_token"] = token
    [item] = viber_adapter().split(orjson.loads(orjson.dumps(data)))
    assert item.event_id == f"message:{token}"
    assert viber_adapter().parse(item.body).event_id == f"message:{token}"


@pytest.mark.parametrize("user_id", [None, "", 5, ["x"], {"id": "x"}, "u" * 129])
def test_viber_user_id_that_is_not_a_short_string_is_refused(user_id):
    message = fixture_json("viber", "message_text.json")
    message["sender"]["id"] = user_id
    receipt = fixture_json("viber", "delivered.json")
    receipt["user_id"] = user_id
    for data in (message, receipt):
        with pytest.raises(WebhookError):
            viber_adapter().split(data)


def test_viber_subscribed_without_token_keys_on_its_timestamp():
    data = fixture_json("viber", "subscribed.json")
    data["message_token"] = None
    [item] = viber_adapter().split(data)
    assert item.event_id == f"subscribed:{data['timestamp']}"
    data["timestamp"] = None
    with pytest.raises(WebhookError):
        viber_adapter().split(data)


# --- 5. fields reaching the dialogs have the types Inbound promises ---------------


def _tg(data: dict):
    adapter = telegram_adapter()
    [item] = adapter.split(data)
    return adapter.parse(item.body)


def _viber(data: dict):
    adapter = viber_adapter()
    [item] = adapter.split(data)
    return adapter.parse(item.body)


def _wa(data: dict):
    adapter = whatsapp_adapter()
    [item] = adapter.split(data)
    return adapter.parse(item.body)


@pytest.mark.parametrize("text", [5, None, ["hi"], {"t": "hi"}, True])
def test_telegram_text_that_is_not_a_string_yields_no_event(text):
    data = fixture_json("telegram", "text_plain.json")
    data["message"]["text"] = text
    assert _tg(data) is None


def test_telegram_mistyped_caption_and_profile_are_treated_as_absent():
    data = fixture_json("telegram", "photo.json")
    data["message"]["caption"] = 5
    data["message"]["from"]["first_name"] = {"x": 1}
    data["message"]["from"]["language_code"] = ["en"]
    event = _tg(data)
    assert (event.kind, event.text, event.first_name, event.language_code) == (Kind.MEDIA, "", None, None)
    assert isinstance(event.media.ref, str)


@pytest.mark.parametrize("data_field", [5, None, ["a"], {"a": 1}])
def test_telegram_callback_data_that_is_not_a_string_yields_no_event(data_field):
    data = fixture_json("telegram", "callback_query.json")
    data["callback_query"]["data"] = data_field
    assert _tg(data) is None


@pytest.mark.parametrize("length", ["6", 99, 1, 6.0])
def test_telegram_command_entity_with_a_bad_length_is_plain_text(length):
    data = fixture_json("telegram", "start_command.json")
    data["message"]["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
    event = _tg(data)
    assert (event.kind, event.text, event.command) == (Kind.TEXT, data["message"]["text"], None)


@pytest.mark.parametrize("latitude, longitude", [(91.0, 13.4), (52.5, -180.5), ("52.5", 13.4), (True, 13.4), (None, 13.4)])
def test_locations_outside_the_globe_or_not_numbers_yield_no_event(latitude, longitude):
    tg = fixture_json("telegram", "location.json")
    tg["message"]["location"].update(latitude=latitude, longitude=longitude)
    viber = fixture_json("viber", "message_location.json")
    viber["message"]["location"].update(lat=latitude, lon=longitude)
    wa = fixture_json("whatsapp", "location.json")
    _wa_value(wa)["messages"][0]["location"].update(latitude=latitude, longitude=longitude)
    assert (_tg(tg), _viber(viber), _wa(wa)) == (None, None, None)


def test_integer_coordinates_become_floats():
    wa = fixture_json("whatsapp", "location.json")
    _wa_value(wa)["messages"][0]["location"].update(latitude=52, longitude=-180)
    assert _wa(wa).location == (52.0, -180.0)
    assert all(type(v) is float for v in _wa(wa).location)


@pytest.mark.parametrize("text", [5, None, ["hi"], {"t": 1}])
def test_viber_text_that_is_not_a_string_yields_no_event(text):
    data = fixture_json("viber", "message_text.json")
    data["message"]["text"] = text
    assert _viber(data) is None


def test_viber_mistyped_profile_and_context_are_treated_as_absent():
    data = fixture_json("viber", "conversation_started.json")
    data["user"].update(name=5, language={"x": 1})
    data["context"] = ["promo"]
    event = _viber(data)
    assert (event.kind, event.first_name, event.language_code, event.context) == (Kind.STARTED, None, None, None)


def test_viber_failed_receipt_with_a_mistyped_reason_keeps_the_receipt():
    data = fixture_json("viber", "failed.json")
    data["desc"] = {"reason": 1}
    event = _viber(data)
    assert (event.kind, event.receipt.status, event.receipt.error) == (Kind.RECEIPT, "failed", None)


@pytest.mark.parametrize("reply_id", [5, None, "", ["x"], {"id": "x"}])
def test_whatsapp_button_reply_id_that_is_not_a_string_yields_no_event(reply_id):
    data = fixture_json("whatsapp", "interactive_button_reply.json")
    _wa_value(data)["messages"][0]["interactive"]["button_reply"]["id"] = reply_id
    assert _wa(data) is None


@pytest.mark.parametrize("body", [5, None, ["hi"], {"b": 1}])
def test_whatsapp_text_body_that_is_not_a_string_yields_no_event(body):
    data = fixture_json("whatsapp", "text_plain.json")
    _wa_value(data)["messages"][0]["text"]["body"] = body
    assert _wa(data) is None


def test_whatsapp_mistyped_caption_name_and_error_fields_are_treated_as_absent():
    data = fixture_json("whatsapp", "image.json")
    _wa_value(data)["messages"][0]["image"].update(caption=5, mime_type=["image/jpeg"])
    _wa_value(data)["contacts"][0]["profile"]["name"] = 5
    event = _wa(data)
    assert (event.kind, event.text, event.media.mime_type, event.first_name) == (Kind.MEDIA, "", None, None)
    status = fixture_json("whatsapp", "status_failed_131026.json")
    _wa_value(status)["statuses"][0]["errors"] = [{"code": {"x": 1}, "title": 5}]
    receipt = _wa(status).receipt
    assert (receipt.status, receipt.error_code, receipt.error, receipt.unreachable) == ("failed", None, None, False)


def test_whatsapp_image_without_a_string_media_id_yields_no_event():
    data = fixture_json("whatsapp", "image.json")
    _wa_value(data)["messages"][0]["image"]["id"] = 1234567890123456
    assert _wa(data) is None


# --- 6. WhatsApp template quick replies: only real STOP payloads opt out -------


@pytest.mark.parametrize("payload", ["STOP", "stop", "STOP_PROMOS", "Stop-all", "stop news", "STOP "])
def test_stop_payloads_are_opt_outs(payload):
    data = fixture_json("whatsapp", "button_quick_reply.json")
    _wa_value(data)["messages"][0]["button"]["payload"] = payload
    event = _wa(data)
    assert (event.kind, event.command) == (Kind.COMMAND, "stop")


@pytest.mark.parametrize("payload", ["STOPOVER_INFO", "STOPPED", "stopwatch", "NONSTOP", "DONT_STOP"])
def test_payloads_merely_starting_with_stop_are_buttons(payload):
    data = fixture_json("whatsapp", "button_quick_reply.json")
    _wa_value(data)["messages"][0]["button"]["payload"] = payload
    event = _wa(data)
    assert (event.kind, event.payload, event.command) == (Kind.BUTTON, payload, None)


@pytest.mark.parametrize("payload", [5, None, "", ["STOP"]])
def test_quick_reply_without_a_string_payload_yields_no_event(payload):
    data = fixture_json("whatsapp", "button_quick_reply.json")
    _wa_value(data)["messages"][0]["button"]["payload"] = payload
    assert _wa(data) is None


# --- 7. blank texts and labels never reach a platform ----------------------------

BLANK = ["", " ", "\n\t  \n"]


@pytest.mark.parametrize("text", BLANK)
def test_blank_text_is_sent_as_the_placeholder(text):
    assert [p["text"] for p in telegram_adapter().render(ALICE_TG, Outbound(text))] == [PLACEHOLDER]
    assert [p["text"] for p in viber_adapter().render("u", Outbound(text))] == [PLACEHOLDER]
    assert [p["text"]["body"] for p in whatsapp_adapter().render(ALICE_WA, Outbound(text))] == [PLACEHOLDER]


@pytest.mark.parametrize("text", BLANK)
def test_blank_text_with_buttons_gets_the_placeholder_beside_the_widget(text):
    out = Outbound(text, (Button("a", "Yes"), Button("b", "No")))
    [tg] = telegram_adapter().render(ALICE_TG, out)
    [viber] = viber_adapter().render("u", out)
    [wa] = whatsapp_adapter().render(ALICE_WA, out)
    assert (tg["text"], viber["text"], wa["interactive"]["body"]["text"]) == (PLACEHOLDER, PLACEHOLDER, PLACEHOLDER)
    request = Outbound(text, request_location=True, location_label="  ")
    [wa] = whatsapp_adapter().render(ALICE_WA, request)
    assert wa["interactive"]["body"]["text"] == PLACEHOLDER
    [tg] = telegram_adapter().render(ALICE_TG, request)
    assert tg["reply_markup"]["keyboard"][0][0]["text"].strip()
    [viber] = viber_adapter().render("u", request)
    assert all(b["Text"].strip() for b in viber["keyboard"]["Buttons"])


@pytest.mark.parametrize("label", BLANK)
def test_blank_button_labels_are_replaced(label):
    out = Outbound("Pick one", (Button("a", label), Button("b", "Beta")))
    [tg] = telegram_adapter().render(ALICE_TG, out)
    labels = [b["text"] for row in tg["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == [PLACEHOLDER, "Beta"]
    [viber] = viber_adapter().render("u", out)
    assert [b["Text"] for b in viber["keyboard"]["Buttons"]] == [PLACEHOLDER, "Beta"]
    [wa] = whatsapp_adapter().render(ALICE_WA, out)  # WhatsApp reply buttons refuse it: a list row instead
    rows = wa["interactive"]["action"]["sections"][0]["rows"]
    assert [r["title"] for r in rows] == [PLACEHOLDER, "Beta"]
    assert all("description" not in r for r in rows)


def test_blank_list_label_falls_back_to_the_symbol():
    buttons = tuple(Button(f"c{i}", f"Category {i}") for i in range(4))
    [wa] = whatsapp_adapter().render(ALICE_WA, Outbound("Pick", buttons, list_label="   "))
    assert wa["interactive"]["action"]["button"].strip()
