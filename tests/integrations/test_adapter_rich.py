"""Touchpoint extras on the wire: a store's location after the text, and WhatsApp templates."""

from __future__ import annotations

from bot.messages import Outbound, Place, Template

ADDRESS = {"telegram": "5550100201", "viber": "tR9vQm2XbL8sKp4fWc1uJg==", "whatsapp": "15550100201"}
STORE = Place(52.5200, 13.4050, "Berlin Mitte", "Rosenthaler Str. 1")


async def test_telegram_sends_the_store_pin_after_the_text(fake, live):
    result = await live["telegram"].send(ADDRESS["telegram"], Outbound("Your cart is waiting at Berlin Mitte", place=STORE))
    assert result.status == "sent" and result.parts_sent == 2
    text, pin = fake.sent("telegram")
    assert (text.method, pin.method) == ("sendMessage", "sendLocation")
    assert pin.json == {"chat_id": 5550100201, "latitude": 52.52, "longitude": 13.405}


async def test_viber_sends_a_location_message_after_the_text(fake, live):
    result = await live["viber"].send(ADDRESS["viber"], Outbound("Your cart is waiting", place=STORE))
    assert result.status == "sent"
    text, pin = fake.sent("viber")
    assert text.json["type"] == "text"
    assert pin.json["type"] == "location" and pin.json["location"] == {"lat": 52.52, "lon": 13.405}
    assert pin.json["receiver"] == ADDRESS["viber"] and pin.json["sender"]["name"]


async def test_whatsapp_sends_a_location_with_name_and_address(fake, live):
    await live["whatsapp"].send(ADDRESS["whatsapp"], Outbound("Your cart is waiting", place=STORE))
    text, pin = fake.sent("whatsapp")
    assert text.json["type"] == "text"
    assert pin.json["type"] == "location"
    assert pin.json["location"] == {"latitude": 52.52, "longitude": 13.405, "name": "Berlin Mitte", "address": "Rosenthaler Str. 1"}


async def test_whatsapp_sends_the_template_instead_of_the_text(fake, live):
    out = Outbound("Good news, Alice! Shoe X is back", template=Template("back_in_stock", "de", ("Alice", "Shoe X", "")))
    result = await live["whatsapp"].send(ADDRESS["whatsapp"], out)
    assert result.status == "sent"
    [call] = fake.sent("whatsapp")
    assert call.json["type"] == "template"
    assert call.json["template"]["name"] == "back_in_stock"
    assert call.json["template"]["language"] == {"code": "de"}
    params = call.json["template"]["components"][0]["parameters"]
    assert [p["text"] for p in params][:2] == ["Alice", "Shoe X"]
    assert all(p["type"] == "text" and p["text"] for p in params)  # an empty parameter is refused by Meta


def test_other_adapters_ignore_the_template_and_send_the_text(live):
    out = Outbound("Good news", template=Template("back_in_stock", "en", ("A",)))
    assert live["telegram"].render(ADDRESS["telegram"], out)[0]["text"] == "Good news"
