"""E-mail over SMTP (aiosmtplib): an outbound-only channel.

Each ``Outbound`` becomes one multipart/alternative message: a plain-text
part and an HTML part (escaped, links made clickable). E-mail has no buttons
and no way back into the dialog (inbound mail is out of scope), so buttons
are shown as a list: numbered in the text part, an ordered list in HTML.
The subject is ``out.subject`` (localised by whoever built the message);
without one it is "<shop name>: <first line of the text>", which is in the
customer's language too.

Marketing messages carry ``List-Unsubscribe`` (RFC 2369) with an https
and/or mailto URI built from templates, and ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click`` (RFC 8058) when an https URI is present. The
templates may use ``{token}`` (``unsubscribe_token``: the address, signed, so
the unsubscribe endpoint needs no lookup table) and ``{address}`` (URL-quoted).
One-click unsubscribe also needs a DKIM signature covering both headers,
which the relaying MTA adds.

Error mapping (RFC 5321 reply codes, RFC 3463 enhanced status codes):

* connection refused / dropped, timeouts, any 4xx: ``retry`` (421 and 452
  concern the whole server, so they pause the channel for a minute);
* a recipient refused with 5.1.1 (no such mailbox), 5.1.2 (no such domain),
  5.1.3 (bad address syntax), 5.1.6 (mailbox moved) or 5.1.10 (null MX):
  ``blocked`` - the address itself is unreachable, so the identity is;
* any other 5xx, including a bare 550: ``failed`` for this message only.
  RFC 5321 uses 550 for "mailbox not found" *and* "rejected for policy
  reasons" (spam filters, relaying denied), so without an enhanced code that
  names the address we must not give the customer's address up;
* our sender refused, authentication refused, STARTTLS unsupported: ``failed``
  and logged as a configuration problem an operator must fix.

One SMTP connection per message (at most ``max_connections`` at once):
servers drop idle connections and cap messages per connection, and a fresh
connection makes every retry start clean. For volume, relay through a local
MTA.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import logging
import re
import string
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Any, Mapping
from urllib.parse import quote

import aiohttp
import aiosmtplib

from bot.events import Inbound
from bot.messages import Outbound, SendResult
from integrations.base import InboxItem, Limits, WebhookError, truncate
from integrations.sms import place_text

log = logging.getLogger(__name__)

MAX_SUBJECT = 100  # characters; longer subjects are cut by most clients anyway
# Enhanced status codes (RFC 3463 / IANA registry) that say the address itself cannot receive mail.
UNREACHABLE = {"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10"}
SERVER_WIDE = {421, 452}  # service not available / insufficient system storage
SERVER_PAUSE = 60.0  # seconds the channel waits after a server-wide 4xx
ENHANCED_CODE = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
LINK = re.compile(r"https?://[^\s<>\"]+")
TRAILING_PUNCTUATION = ".,;:!?'"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Headers are written unfolded up to RFC 5322's hard limit: folded at 78, a long
# List-Unsubscribe URI would turn into an RFC 2047 encoded word no client can follow.
WIRE_POLICY = policy.SMTP.clone(max_line_length=998)


class EmailAdapter:
    channel = "email"
    limits = Limits(
        max_text=100_000,
        max_buttons=100,
        max_button_label=200,
        max_list_rows=100,
        max_list_label=200,
        max_payload_bytes=0,  # nothing comes back
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        shop_name: str,
        username: str = "",
        password: str = "",
        starttls: bool = True,
        use_tls: bool = False,
        cert_bundle: str | None = None,
        unsubscribe_url: str = "",
        unsubscribe_mailto: str = "",
        unsubscribe_secret: str = "",
        timeout: float = 10.0,
        max_connections: int = 5,
    ) -> None:
        if starttls and use_tls:
            raise ValueError("choose STARTTLS or implicit TLS, not both")
        if unsubscribe_url and not unsubscribe_url.startswith(("https://", "http://")):
            raise ValueError("unsubscribe_url must be an http(s) URL")
        fields = {name for _, name, _, _ in string.Formatter().parse(unsubscribe_url + unsubscribe_mailto) if name is not None}
        if fields - {"token", "address"}:
            raise ValueError(f"unsubscribe templates may use {{token}} and {{address}}, not {sorted(fields)}")
        if "token" in fields and not unsubscribe_secret:
            raise ValueError("an unsubscribe template with {token} needs unsubscribe_secret")
        self.host = host
        self.port = port
        self.sender = Address(addr_spec=sender)  # raises on a malformed From address
        self.shop_name = shop_name
        self.username = username
        self.password = password
        self.starttls = starttls
        self.use_tls = use_tls
        self.cert_bundle = cert_bundle  # CA file for a relay with a private certificate
        self.unsubscribe_url = unsubscribe_url
        self.unsubscribe_mailto = unsubscribe_mailto.removeprefix("mailto:")
        self.unsubscribe_secret = unsubscribe_secret
        self.timeout = timeout
        self._connections = asyncio.Semaphore(max_connections)

    async def start(self, session: aiohttp.ClientSession) -> None:
        return None  # SMTP connections are opened per message

    async def close(self) -> None:
        return None

    # --- inbound: none ---------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        return False  # there is no e-mail webhook; nothing may come in this way

    def split(self, data: Any) -> list[InboxItem]:
        raise WebhookError("e-mail is outbound only")

    def parse(self, body: bytes) -> Inbound | None:
        return None

    async def acknowledge(self, event: Inbound) -> None:
        return None

    def webhook_reply(self, out: Outbound) -> dict[str, Any] | None:
        return None

    async def register_webhook(self, url: str) -> str:
        return f"email: outbound only, sending through {self.host}:{self.port} (no webhook)"

    # --- outbound --------------------------------------------------------------

    def render(self, address: str, out: Outbound) -> list[dict[str, Any]]:
        """One message: the headers and both bodies (what ``send`` puts on the wire)."""
        return [
            {
                "method": "smtp",
                "to": address,
                "subject": self.subject(out),
                "text": plain_body(out),
                "html": html_body(out),
                "headers": self.unsubscribe_headers(address) if not out.transactional else {},
            }
        ]

    def subject(self, out: Outbound) -> str:
        if out.subject and out.subject.strip():
            return truncate(_one_line(out.subject), MAX_SUBJECT)
        first_line = next((line.strip() for line in out.text.splitlines() if line.strip()), "")
        return truncate(f"{self.shop_name}: {first_line}" if first_line else self.shop_name, MAX_SUBJECT)

    def unsubscribe_headers(self, address: str) -> dict[str, str]:
        values = {"address": quote(address, safe="")}
        if "{token}" in self.unsubscribe_url + self.unsubscribe_mailto:
            values["token"] = unsubscribe_token(address, self.unsubscribe_secret)
        uris = []
        if self.unsubscribe_url:
            uris.append(self.unsubscribe_url.format_map(values))
        if self.unsubscribe_mailto:
            uris.append("mailto:" + self.unsubscribe_mailto.format_map(values))
        if not uris:
            return {}
        headers = {"List-Unsubscribe": ", ".join(f"<{uri}>" for uri in uris)}
        if self.unsubscribe_url.startswith("https://"):
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return headers

    def message(self, part: dict[str, Any]) -> EmailMessage:
        """The MIME message for one rendered part (raises ValueError for an unusable address)."""
        message = EmailMessage()
        message["From"] = formataddr((self.shop_name, self.sender.addr_spec))
        message["To"] = recipient(part["to"])
        message["Subject"] = part["subject"]
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain=self.sender.domain)
        for name, value in part["headers"].items():
            message[name] = value
        # quoted-printable keeps both parts 7-bit clean for any server, readable in the raw source.
        message.set_content(part["text"], charset="utf-8", cte="quoted-printable")
        message.add_alternative(part["html"], subtype="html", charset="utf-8", cte="quoted-printable")
        return message

    async def send(self, address: str, out: Outbound, *, start_part: int = 0) -> SendResult:
        [part] = self.render(address, out)
        if start_part >= 1:
            return SendResult("sent", parts_sent=1)
        try:
            message = self.message(part)
        except ValueError as exc:
            return SendResult("failed", error=f"unusable address: {exc}")
        message_id = message["Message-ID"]
        try:
            async with self._connections:
                await aiosmtplib.send(
                    message.as_bytes(policy=WIRE_POLICY),
                    sender=self.sender.addr_spec,
                    recipients=[message["To"]],
                    hostname=self.host,
                    port=self.port,
                    username=self.username or None,
                    password=self.password or None,
                    start_tls=self.starttls,
                    use_tls=self.use_tls,
                    cert_bundle=self.cert_bundle,
                    timeout=self.timeout,
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return refused_recipient(exc.recipients[0]) if exc.recipients else SendResult("retry", error=str(exc))
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPNotSupported) as exc:
            if _code(exc) // 100 == 4:
                return SendResult("retry", error=_describe(exc))
            log.error("email.configuration_problem error=%s", _describe(exc))
            return SendResult("failed", error=_describe(exc))
        except aiosmtplib.SMTPResponseException as exc:  # HELO, DATA, connect greeting
            return by_reply_code(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # connection refused or dropped, DNS, timeouts: the server may be back soon
            return SendResult("retry", error=_describe(exc))
        return SendResult("sent", platform_message_id=message_id, parts_sent=1)


# --- rendering -----------------------------------------------------------------


def plain_body(out: Outbound) -> str:
    lines = [out.text.strip()]
    if out.buttons:
        lines += [""] + [f"{i}. {b.label}" for i, b in enumerate(out.buttons, 1)]
    if out.place is not None:
        lines += ["", place_text(out.place)]
    return "\n".join(lines).strip() + "\n"


def html_body(out: Outbound) -> str:
    paragraphs = [p for p in re.split(r"\n\s*\n", out.text.strip()) if p.strip()]
    blocks = [f"<p>{_linked(p.strip()).replace(chr(10), '<br>' + chr(10))}</p>" for p in paragraphs]
    if out.buttons:
        items = "".join(f"<li>{html.escape(b.label)}</li>" for b in out.buttons)
        blocks.append(f"<ol>{items}</ol>")
    if out.place is not None:
        blocks.append(f"<p>{_linked(place_text(out.place)).replace(chr(10), '<br>' + chr(10))}</p>")
    body = "\n".join(blocks)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\n"
        "<body style=\"font-family: sans-serif; font-size: 16px; line-height: 1.5; color: #222;\">\n"
        f"{body}\n</body></html>\n"
    )


def _linked(text: str) -> str:
    """``text`` HTML-escaped, with every http(s) URL made a link (trailing punctuation stays outside)."""
    pieces = []
    position = 0
    for match in LINK.finditer(text):
        url = match.group(0).rstrip(TRAILING_PUNCTUATION)
        if url.endswith(")") and url.count("(") < url.count(")"):
            url = url[:-1]
        end = match.start() + len(url)
        pieces.append(html.escape(text[position : match.start()]))
        pieces.append(f'<a href="{html.escape(url, quote=True)}">{html.escape(url)}</a>')
        position = end
    pieces.append(html.escape(text[position:]))
    return "".join(pieces)


def _one_line(text: str) -> str:
    return " ".join(CONTROL.sub(" ", text).split())


def recipient(address: str) -> str:
    """``address`` checked as a bare ASCII addr-spec (an IDN domain in punycode); raises ValueError.

    No display name, nothing that could end a header or an SMTP command line.
    A non-ASCII local part would need SMTPUTF8 end to end, which we do not assume.
    """
    if not address or CONTROL.search(address) or any(c in address for c in " <>,;\""):
        raise ValueError(f"not a bare e-mail address: {address!r}")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an e-mail address: {address!r}")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"not an e-mail domain: {domain!r}") from None
    if not local.isascii():
        raise ValueError(f"a non-ASCII mailbox name needs SMTPUTF8: {address!r}")
    try:
        parsed = Address(addr_spec=f"{local}@{domain}")
    except HeaderParseError as exc:
        raise ValueError(f"not an e-mail address: {address!r} ({exc})") from None
    if parsed.username != local or parsed.domain != domain:
        raise ValueError(f"not an e-mail address: {address!r}")
    return parsed.addr_spec


# --- unsubscribe tokens --------------------------------------------------------


def unsubscribe_token(address: str, secret: str) -> str:
    """``<address, base64url>.<signature>``: the unsubscribe endpoint reads the address back without a lookup."""
    encoded = _b64(address.encode())
    return f"{encoded}.{_signature(encoded, secret)}"


def address_from_token(token: str, secret: str) -> str | None:
    """The address an ``unsubscribe_token`` was made for; ``None`` when it is forged or malformed."""
    encoded, _, signature = token.partition(".")
    if not encoded or not secret or not hmac.compare_digest(signature.encode(), _signature(encoded, secret).encode()):
        return None
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _signature(encoded: str, secret: str) -> str:
    return _b64(hmac.new(secret.encode(), b"unsubscribe:" + encoded.encode(), hashlib.sha256).digest()[:16])


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- error mapping -------------------------------------------------------------


def refused_recipient(refusal: aiosmtplib.SMTPRecipientRefused) -> SendResult:
    """RCPT TO refused: blocked when the enhanced code says the address cannot receive mail."""
    enhanced = ENHANCED_CODE.match(refusal.message or "")
    if refusal.code // 100 == 5 and enhanced and enhanced.group(1) in UNREACHABLE:
        return SendResult("blocked", error=_describe(refusal))
    return by_reply_code(refusal.code, refusal.message)


def by_reply_code(code: int, message: str) -> SendResult:
    error = f"SMTP {code}: {message}"
    if code in SERVER_WIDE:
        return SendResult("retry", retry_after=SERVER_PAUSE, scope="channel", error=error)
    if code // 100 == 4 or code < 400:  # < 400: a broken or cut-off reply, worth another try
        return SendResult("retry", error=error)
    return SendResult("failed", error=error)


def _code(exc: Exception) -> int:
    return getattr(exc, "code", 0) or 0


def _describe(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc)
    return f"SMTP {code}: {message}" if code else f"{type(exc).__name__}: {message}"
