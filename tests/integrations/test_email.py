"""E-mail against a real SMTP server (aiosmtpd) on 127.0.0.1: what arrives, and how refusals map."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiosmtpd.smtp import SMTP, AuthResult

from bot.messages import Button, Outbound, Place
from integrations.base import WebhookError
from integrations.email import EmailAdapter, address_from_token, unsubscribe_token

SECRET = "unsubscribe-test-secret"
ALICE = "alice@example.com"


class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and answers scripted refusals."""

    def __init__(self, *, refuse_rcpt: dict[str, str] | None = None, data_reply: str | None = None) -> None:
        self.refuse_rcpt = refuse_rcpt or {}
        self.data_reply = data_reply
        self.received: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 2.0.0 Message accepted for delivery"


@asynccontextmanager
async def smtp_server(handler: Mailbox, **options: Any) -> AsyncIterator[int]:
    """aiosmtpd on this test's event loop; yields the port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost", loop=loop, **options), "127.0.0.1", 0
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def adapter(port: int, **overrides: Any) -> EmailAdapter:
    options: dict[str, Any] = dict(
        sender="shop@shop.example",
        shop_name="Example Shop",
        starttls=False,
        unsubscribe_url="https://shop.example/unsubscribe/{token}",
        unsubscribe_mailto="unsubscribe@shop.example?subject=unsubscribe%20{token}",
        unsubscribe_secret=SECRET,
        timeout=2.0,
    )
    options.update(overrides)
    return EmailAdapter("127.0.0.1", port, **options)


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML bodies, with the wire's CRLF line ends read as newlines."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


# --- what the customer receives ---------------------------------------------------


async def test_german_message_arrives_as_text_and_html_with_subject_and_buttons_as_a_list():
    mailbox = Mailbox()
    out = Outbound(
        "Hallo Jürgen, Ihre Bestellung <Nr. 1024> ist unterwegs.\n\nSendung verfolgen: https://shop.example/track?id=1024&lang=de.",
        buttons=(Button("track", "Sendung verfolgen"), Button("help", "Hilfe & Kontakt")),
        subject="Ihre Bestellung ist unterwegs",
    )
    async with smtp_server(mailbox) as port:
        result = await adapter(port).send(ALICE, out)

    assert result.status == "sent" and result.parts_sent == 1
    [(mail_from, recipients, message)] = mailbox.received
    assert (mail_from, recipients) == ("shop@shop.example", [ALICE])
    assert message["Subject"] == "Ihre Bestellung ist unterwegs"
    assert message["From"].addresses[0].display_name == "Example Shop"
    assert message["To"] == ALICE
    assert message["Message-ID"] == result.platform_message_id
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(message)
    assert "Hallo Jürgen, Ihre Bestellung <Nr. 1024> ist unterwegs." in text
    assert text.rstrip().endswith("1. Sendung verfolgen\n2. Hilfe & Kontakt")
    assert "<p>Hallo Jürgen, Ihre Bestellung &lt;Nr. 1024&gt; ist unterwegs.</p>" in html
    assert "<Nr. 1024>" not in html
    # the link is clickable, its & escaped in the attribute, the sentence's full stop left outside
    assert '<a href="https://shop.example/track?id=1024&amp;lang=de">https://shop.example/track?id=1024&amp;lang=de</a>.' in html
    assert "<ol><li>Sendung verfolgen</li><li>Hilfe &amp; Kontakt</li></ol>" in html


async def test_spanish_message_without_subject_takes_the_shop_name_and_first_line():
    mailbox = Mailbox()
    out = Outbound("¡Hola, Begoña! Su pedido está en camino.\nGracias por su compra.")
    async with smtp_server(mailbox) as port:
        result = await adapter(port, shop_name="Tienda Ñandú").send("begona@example.es", out)

    assert result.status == "sent"
    [(_, _, message)] = mailbox.received
    assert message["Subject"] == "Tienda Ñandú: ¡Hola, Begoña! Su pedido está en camino."
    assert message["From"].addresses[0].display_name == "Tienda Ñandú"
    text, html = parts(message)
    assert text == "¡Hola, Begoña! Su pedido está en camino.\nGracias por su compra.\n"
    assert "<p>¡Hola, Begoña! Su pedido está en camino.<br>\nGracias por su compra.</p>" in html


async def test_a_shared_place_becomes_name_address_and_a_map_link():
    mailbox = Mailbox()
    out = Outbound("Sie sind in der Nähe.", place=Place(52.520008, 13.404954, "Example Shop Mitte", "Rosenthaler Str. 1"))
    async with smtp_server(mailbox) as port:
        await adapter(port).send(ALICE, out)
    text, html = parts(mailbox.received[0][2])
    assert "Example Shop Mitte\nRosenthaler Str. 1\nhttps://www.openstreetmap.org/?mlat=52.520008&mlon=13.404954" in text
    assert '<a href="https://www.openstreetmap.org/?mlat=52.520008&amp;mlon=13.404954' in html


async def test_marketing_mail_carries_one_click_list_unsubscribe():
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        await adapter(port).send(ALICE, Outbound("Neu im Shop: Herbstschuhe"))
    message = mailbox.received[0][2]
    header = message["List-Unsubscribe"]
    https, mailto = [uri.strip().strip("<>") for uri in header.split(",")]
    token = https.removeprefix("https://shop.example/unsubscribe/")
    assert address_from_token(token, SECRET) == ALICE
    assert mailto == f"mailto:unsubscribe@shop.example?subject=unsubscribe%20{token}"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "=?" not in header  # not an encoded word: clients must be able to follow the URIs


async def test_transactional_mail_has_no_unsubscribe_and_mailto_only_is_not_one_click():
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        await adapter(port).send(ALICE, Outbound("Ihre Rechnung", transactional=True))
        await adapter(port, unsubscribe_url="").send(ALICE, Outbound("Angebot"))
    receipt, offer = (m for _, _, m in mailbox.received)
    assert receipt["List-Unsubscribe"] is None
    assert offer["List-Unsubscribe"].startswith("<mailto:unsubscribe@shop.example?subject=unsubscribe%20")
    assert offer["List-Unsubscribe-Post"] is None


def test_unsubscribe_tokens_cannot_be_forged():
    token = unsubscribe_token("jürgen@bücher.example", SECRET)
    assert address_from_token(token, SECRET) == "jürgen@bücher.example"
    assert address_from_token(token, "another-secret") is None
    other = unsubscribe_token("mallory@example.com", SECRET)
    assert address_from_token(token.split(".")[0] + "." + other.split(".")[1], SECRET) is None
    assert address_from_token("garbage", SECRET) is None


def test_templates_and_tls_options_are_checked_at_start():
    with pytest.raises(ValueError):
        EmailAdapter("127.0.0.1", 25, sender="shop@shop.example", shop_name="Shop", unsubscribe_url="https://x.example/{token}")
    with pytest.raises(ValueError):
        EmailAdapter("127.0.0.1", 25, sender="shop@shop.example", shop_name="Shop", unsubscribe_mailto="u@x.example?subject={email}")
    with pytest.raises(ValueError):
        EmailAdapter("127.0.0.1", 25, sender="shop@shop.example", shop_name="Shop", starttls=True, use_tls=True)


# --- error mapping --------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply,status",
    [
        ("450 4.2.1 Greylisted, please try again later", "retry"),
        ("452 4.3.1 Insufficient system storage", "retry"),
        ("550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown", "blocked"),
        ("550 5.1.10 Recipient domain has a null MX", "blocked"),
        ("550 Requested action not taken: mailbox unavailable", "failed"),  # bare 550: maybe policy
        ("554 5.7.1 Relay access denied", "failed"),
        ("552 5.2.2 Mailbox full", "failed"),
    ],
)
async def test_a_refused_recipient_maps_by_reply_and_enhanced_code(reply: str, status: str):
    mailbox = Mailbox(refuse_rcpt={"gone@example.com": reply})
    async with smtp_server(mailbox) as port:
        result = await adapter(port).send("gone@example.com", Outbound("Hallo"))
    assert result.status == status
    assert reply.split()[0] in (result.error or "")
    assert mailbox.received == []


async def test_server_wide_trouble_pauses_the_whole_channel():
    mailbox = Mailbox(refuse_rcpt={ALICE: "452 4.3.1 Insufficient system storage"})
    async with smtp_server(mailbox) as port:
        result = await adapter(port).send(ALICE, Outbound("Hallo"))
    assert (result.status, result.scope, result.retry_after) == ("retry", "channel", 60.0)


@pytest.mark.parametrize("reply,status", [("451 4.3.0 Try again later", "retry"), ("554 5.7.1 Message rejected as spam", "failed")])
async def test_a_refused_message_body_maps_by_reply_code(reply: str, status: str):
    async with smtp_server(Mailbox(data_reply=reply)) as port:
        result = await adapter(port).send(ALICE, Outbound("Hallo"))
    assert result.status == status


async def test_server_down_is_retryable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the send: nothing listens there
    result = await adapter(port).send(ALICE, Outbound("Hallo"))
    assert result.status == "retry"


async def test_a_server_that_never_greets_times_out_retryably():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # says nothing until the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        result = await adapter(server.sockets[0].getsockname()[1], timeout=0.3).send(ALICE, Outbound("Hallo"))
    finally:
        server.close()
        await server.wait_closed()
    assert result.status == "retry"


@pytest.mark.parametrize("address", ["not-an-address", "x@example.com\r\nBcc: all@example.com", "Alice <alice@example.com>", "ä@example.com"])
async def test_an_unusable_address_fails_without_contacting_the_server(address: str):
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        result = await adapter(port).send(address, Outbound("Hallo"))
    assert result.status == "failed"
    assert mailbox.received == []


async def test_an_international_domain_is_sent_in_punycode():
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        result = await adapter(port).send("juergen@bücher.example", Outbound("Hallo"))
    assert result.status == "sent"
    assert mailbox.received[0][1] == ["juergen@xn--bcher-kva.example"]


async def test_a_part_already_accepted_is_not_sent_again():
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        result = await adapter(port).send(ALICE, Outbound("Hallo"), start_part=1)
    assert (result.status, result.parts_sent) == ("sent", 1)
    assert mailbox.received == []


# --- STARTTLS and AUTH ------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def only_shop_login(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = auth_data.login == b"shop" and auth_data.password == b"correct horse"
    return AuthResult(success=ok, handled=False)


async def test_starttls_with_login_delivers_and_a_wrong_password_fails(certificate: tuple[Path, Path]):
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    mailbox = Mailbox()
    options = dict(tls_context=tls, require_starttls=True, authenticator=only_shop_login, auth_required=True)
    async with smtp_server(mailbox, **options) as port:
        good = adapter(port, starttls=True, username="shop", password="correct horse", cert_bundle=str(cert))
        bad = adapter(port, starttls=True, username="shop", password="wrong", cert_bundle=str(cert))
        sent = await good.send(ALICE, Outbound("Hallo über TLS"))
        refused = await bad.send(ALICE, Outbound("Hallo"))
    assert sent.status == "sent"
    assert parts(mailbox.received[0][2])[0].startswith("Hallo über TLS")
    assert refused.status == "failed" and "535" in (refused.error or "")
    assert len(mailbox.received) == 1


# --- inbound is refused -----------------------------------------------------------------


def test_email_accepts_no_webhook():
    email = adapter(25)
    assert email.verify({"Content-Type": "application/json"}, b"{}") is False
    with pytest.raises(WebhookError):
        email.split({"from": ALICE, "text": "2"})
    assert email.parse(b'{"from": "alice@example.com", "text": "2"}') is None
