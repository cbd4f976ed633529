"""Webhook authenticity: correct, wrong and missing proofs, over the exact fixture bytes."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest
from adapter_support import TG_SECRET, VIBER_TOKEN, WA_APP_SECRET, fixture_bytes, fixture_names, telegram_adapter, viber_adapter, whatsapp_adapter
from multidict import CIMultiDict

from integrations.viber import ViberAdapter
from integrations.whatsapp import WhatsAppAdapter


def _hex(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("name", fixture_names("telegram"))
def test_telegram_secret_header(name):
    body = fixture_bytes("telegram", name)
    adapter = telegram_adapter()
    assert adapter.verify({"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}, body)
    assert not adapter.verify({"X-Telegram-Bot-Api-Secret-Token": TG_SECRET + "x"}, body)
    assert not adapter.verify({"X-Telegram-Bot-Api-Secret-Token": ""}, body)
    assert not adapter.verify({}, body)


def test_telegram_without_configured_secret_accepts():
    assert telegram_adapter(secret="").verify({}, fixture_bytes("telegram", "text_plain.json"))


def test_telegram_header_lookup_is_case_insensitive_with_aiohttp_headers():
    headers = CIMultiDict({"x-telegram-bot-api-secret-token": TG_SECRET})
    assert telegram_adapter().verify(headers, b"{}")


@pytest.mark.parametrize("name", fixture_names("viber"))
def test_viber_signature(name):
    body = fixture_bytes("viber", name)  # raw UTF-8, signed as is
    adapter = viber_adapter()
    good = _hex(VIBER_TOKEN, body)
    assert adapter.verify({"X-Viber-Content-Signature": good}, body)
    assert not adapter.verify({"X-Viber-Content-Signature": _hex("other-token", body)}, body)
    assert not adapter.verify({"X-Viber-Content-Signature": good}, body.replace(b"\n", b"\r\n", 1))
    assert not adapter.verify({"X-Viber-Content-Signature": "sha256=" + good}, body)  # no prefix on Viber
    assert not adapter.verify({}, body)


def test_viber_known_answer_vector_from_the_official_library():
    adapter = ViberAdapter("44dafb7e0f40021e-61a47a1e6778d187-f2c5a676a07050b3", "Shop", "https://chatapi.viber.com/pa")
    body = b'{"event":"webhook","timestamp":4977069964384421269,"message_token":1478683725125}'
    signature = "d21b343448c8aee33b8e93768ef6ceb64a6ba6163099973a2b8bd028fea510ef"
    assert adapter.verify(CIMultiDict({"x-viber-content-signature": signature}), body)
    assert not adapter.verify({"X-Viber-Content-Signature": signature.replace("d", "e", 1)}, body)


@pytest.mark.parametrize("name", fixture_names("whatsapp"))
def test_whatsapp_signature(name):
    body = fixture_bytes("whatsapp", name)  # \uXXXX-escaped, as Meta signs it
    adapter = whatsapp_adapter()
    good = "sha256=" + _hex(WA_APP_SECRET, body)
    assert adapter.verify({"X-Hub-Signature-256": good}, body)
    assert not adapter.verify({"X-Hub-Signature-256": "sha256=" + _hex("other-secret", body)}, body)
    assert not adapter.verify({"X-Hub-Signature-256": good[len("sha256=") :]}, body)  # prefix required
    assert not adapter.verify({"X-Hub-Signature-256": good}, body + b" ")
    assert not adapter.verify({}, body)


def test_whatsapp_signature_is_over_escaped_bytes_not_a_redump():
    body = fixture_bytes("whatsapp", "text_unicode.json")
    assert b"\\u041e" in body
    redumped = orjson.dumps(orjson.loads(body))  # what a naive re-serialisation would hash
    signature = "sha256=" + _hex(WA_APP_SECRET, redumped)
    assert not whatsapp_adapter().verify({"X-Hub-Signature-256": signature}, body)


def test_whatsapp_sanity_vector():
    adapter = WhatsAppAdapter("token", "1", "secret", "verify", "https://graph.facebook.com/v21.0")
    header = "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
    assert adapter.verify(CIMultiDict({"x-hub-signature-256": header}), b"test")


def test_whatsapp_without_app_secret_rejects_everything():
    adapter = WhatsAppAdapter("token", "1", "", "verify", "https://graph.facebook.com/v21.0")
    assert not adapter.verify({"X-Hub-Signature-256": "sha256=" + _hex("", b"test")}, b"test")
