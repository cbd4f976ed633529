"""SMS through an HTTP gateway: URL, auth and JSON mapping come from config.

SMS has no buttons, so buttons always become numbered choices ("1. Yes",
"2. No"); the customer replies "2" and the engine resolves the number against
the choices it offered, exactly like a press. Inbound SMS arrive by webhook
(``POST /webhooks/sms``) as JSON and become ``Kind.TEXT`` events; the
gateway's delivery reports become receipts. Addresses are E.164 numbers with
a leading "+" ("+447700900001"), whatever spelling the gateway uses.

``SmsGateway`` defaults describe the Vonage Messages API, so a Vonage account
needs only the secrets:

* send: ``POST https://api.nexmo.com/v1/messages`` with
  ``Authorization: Basic <base64 of "api_key:api_secret">`` (that base64 is
  ``SMS_GATEWAY_TOKEN``) and the JSON body
  ``{"message_type": "text", "channel": "sms", "to": "447700900001",
  "from": "<SMS_FROM>", "text": "..."}`` (``to`` without "+", text at most
  1000 characters); 202 ``{"message_uuid": "..."}`` on success;
* refusals are RFC 7807 JSON with the HTTP status saying what kind:
  ``{"type": "https://.../api-errors/messages#1050", "title": "Number barred", ...}``;
  error 1050 (the number is barred / blacklisted) marks the number blocked;
* inbound SMS: ``{"channel": "sms", "message_uuid": "...", "from": "447700900001",
  "to": "...", "text": "2", "timestamp": "2025-01-01T12:00:00Z", ...}``;
  delivery reports: ``{"message_uuid": "...", "to": "447700900001",
  "status": "delivered" | "submitted" | "rejected" | "undeliverable", "error": {...}}``;
* both are signed: ``Authorization: Bearer <JWT>``, HS256 with the account's
  signature secret (``SMS_WEBHOOK_SECRET``), whose ``payload_hash`` claim is
  the hex SHA-256 of the body. ``webhook_auth = "header"`` instead accepts a
  gateway (or a proxy in front of it) that sends the secret itself in
  ``webhook_header``.

Another gateway is a matter of mapping; Twilio-style form bodies are not
supported (the webhook route accepts JSON only).

Error mapping: 429 -> ``retry`` pausing the whole channel (gateway limits
are per account) for ``Retry-After`` seconds; 408 and 5xx -> ``retry``;
a ``blocked_codes`` refusal -> ``blocked``; other 4xx -> ``failed`` (401/403
logged as a configuration problem).

Texts longer than ``max_length`` are split on word boundaries into several
messages. The gateway itself cuts each into 160 GSM-7 / 70 UCS-2 character
segments and the phone joins them again, so ``max_length`` is about cost and
the gateway's own limit, not about the radio.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import string
import time
from datetime import datetime, timezone
from typing import Any, Literal, Mapping

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.events import Inbound, Kind, Receipt
from bot.messages import Outbound, Place, SendResult
from integrations.base import (
    MAX_EVENT_ID,
    InboxItem,
    Limits,
    WebhookError,
    as_str,
    checked_parse,
    deliver_parts,
    numbered_choices,
    same_secret,
    split_text,
    visible,
)

log = logging.getLogger(__name__)

BODY_FIELDS = {"to", "to_digits", "from", "text"}
DEFAULT_PAUSE = 1.0  # seconds to wait after a 429 without Retry-After
PHONE_SEPARATORS = re.compile(r"[\s\-().]")
MAX_TEXT_IN = 10_000  # characters of an inbound SMS we accept (concatenated SMS stay far below)


class SmsGateway(BaseModel):
    """How to talk to one HTTP SMS gateway (defaults: the Vonage Messages API).

    Paths into JSON are dotted ("messages.0.message-id"). Template strings
    use ``{to}`` (E.164 with "+"), ``{to_digits}`` (without it), ``{from}`` and
    ``{text}``; ``auth_value`` uses ``{token}``.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: str = "https://api.nexmo.com/v1/messages"
    method: Literal["POST", "PUT"] = "POST"
    auth_header: str = "Authorization"
    auth_value: str = "Basic {token}"
    body: dict[str, Any] = Field(
        default_factory=lambda: {
            "message_type": "text",
            "channel": "sms",
            "to": "{to_digits}",
            "from": "{from}",
            "text": "{text}",
        }
    )
    max_length: int = Field(1000, ge=70, le=10_000)  # characters per sent message
    message_id: str = "message_uuid"  # where the answer names the message
    error_code: str = "type"  # where a refusal names its reason (a "...#1050" URL counts by its fragment)
    blocked_codes: list[str] = ["1050"]  # refusals that mean "never text this number again"
    # inbound
    webhook_auth: Literal["jwt", "header"] = "jwt"
    webhook_header: str = "Authorization"  # for "header": the header carrying the secret
    inbound_id: str = "message_uuid"
    inbound_from: str = "from"
    inbound_text: str = "text"
    inbound_timestamp: str = "timestamp"
    receipt_to: str = "to"
    receipt_status: str = "status"
    receipt_error: str = "error.type"
    statuses: dict[str, str] = {"submitted": "sent", "delivered": "delivered", "rejected": "failed", "undeliverable": "failed"}

    @field_validator("body")
    @classmethod
    def _known_body_fields(cls, body: dict[str, Any]) -> dict[str, Any]:
        unknown = {name for text in _strings(body) for name in _fields(text)} - BODY_FIELDS
        if unknown:
            raise ValueError(f"unknown placeholders {sorted(unknown)}; use {sorted(BODY_FIELDS)}")
        return body

    @field_validator("auth_value")
    @classmethod
    def _known_auth_fields(cls, value: str) -> str:
        if set(_fields(value)) - {"token"}:
            raise ValueError("auth_value may only use {token}")
        return value


class SmsAdapter:
    channel = "sms"

    def __init__(
        self,
        gateway: SmsGateway,
        token: str,
        sender: str,
        webhook_secret: str,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.gateway = gateway
        self.token = token
        self.sender = sender
        self.webhook_secret = webhook_secret
        self.timeout = timeout
        self.limits = Limits(
            max_text=gateway.max_length,
            max_buttons=0,  # always numbered choices
            max_button_label=gateway.max_length,
            max_list_rows=0,
            max_list_label=gateway.max_length,
            max_payload_bytes=0,
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def close(self) -> None:
        self._session = None  # the session belongs to the app

    # --- inbound -----------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        if not self.webhook_secret:
            return False
        given = headers.get(self.gateway.webhook_header)
        if self.gateway.webhook_auth == "header":
            return same_secret(given, self.webhook_secret)
        if not isinstance(given, str) or not given.startswith("Bearer "):
            return False
        return valid_jwt(given[len("Bearer ") :].strip(), self.webhook_secret, body)

    def split(self, data: Any) -> list[InboxItem]:
        key = self._identify(data)
        if key is None:
            return []
        event_id, address = key
        return [InboxItem(event_id=event_id, address=address, body=orjson.dumps(data))]

    def _identify(self, data: Any) -> tuple[str, str] | None:
        """(dedupe key, customer number) of a webhook body; ``None`` for reports we do not use."""
        if not isinstance(data, dict):
            raise WebhookError("sms webhook body is not a JSON object")
        g = self.gateway
        message_id = _id(dig(data, g.inbound_id))
        if message_id is None:
            raise WebhookError(f"sms webhook without a usable {g.inbound_id}")
        if isinstance(dig(data, g.inbound_text), str):
            return message_id, _number(dig(data, g.inbound_from), g.inbound_from)
        status = dig(data, g.receipt_status)
        if isinstance(status, str) and status in g.statuses:
            # One report per status of a message: "delivered" is no duplicate of "submitted".
            return f"{message_id}:{status}", _number(dig(data, g.receipt_to), g.receipt_to)
        return None

    def parse(self, body: bytes) -> Inbound | None:
        return checked_parse(self.channel, self._parse, body)

    def _parse(self, body: bytes) -> Inbound | None:
        data = orjson.loads(body)
        key = self._identify(data)
        if key is None:
            return None
        event_id, address = key
        g = self.gateway
        base = {"channel": self.channel, "event_id": event_id, "address": address}
        text = dig(data, g.inbound_text)
        if isinstance(text, str):
            if len(text) > MAX_TEXT_IN:
                return None
            return Inbound(**base, kind=Kind.TEXT, text=text, received_at=_timestamp(dig(data, g.inbound_timestamp)))
        code = error_code(dig(data, g.receipt_error))
        receipt = Receipt(
            platform_message_id=event_id.rsplit(":", 1)[0],
            status=g.statuses[dig(data, g.receipt_status)],
            error_code=code,
            unreachable=code is not None and code in g.blocked_codes,
        )
        return Inbound(**base, kind=Kind.RECEIPT, receipt=receipt)

    async def acknowledge(self, event: Inbound) -> None:
        return None

    def webhook_reply(self, out: Outbound) -> dict[str, Any] | None:
        return None

    async def register_webhook(self, url: str) -> str:
        return f"sms: set the gateway's inbound and status webhook URLs to {url} (JSON, POST)"

    # --- outbound ----------------------------------------------------------------

    def render(self, address: str, out: Outbound) -> list[dict[str, Any]]:
        text = numbered_choices(out)
        if out.place is not None:
            text = f"{text}\n\n{place_text(out.place)}"
        number = phone_number(address) or address
        values = {"to": number, "to_digits": number.removeprefix("+"), "from": self.sender}
        return [
            {"method": self.gateway.method, **_fill(self.gateway.body, {**values, "text": chunk})}
            for chunk in split_text(visible(text.strip()), self.gateway.max_length)
        ]

    async def send(self, address: str, out: Outbound, *, start_part: int = 0) -> SendResult:
        number = phone_number(address)
        if number is None:
            return SendResult("failed", error=f"not a phone number: {address!r}")
        return await deliver_parts(self.render(number, out), start_part, self._post)

    async def _post(self, part: dict[str, Any]) -> SendResult:
        if self._session is None:
            raise RuntimeError("SmsAdapter.start() was not called")
        body = {k: v for k, v in part.items() if k != "method"}
        headers = {
            self.gateway.auth_header: self.gateway.auth_value.format(token=self.token),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            async with self._session.request(
                part["method"],
                self.gateway.url,
                data=orjson.dumps(body),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                status, raw = response.status, await response.read()
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult("retry", error=f"{type(exc).__name__}: {exc}")
        data = _json(raw)
        if 200 <= status < 300:
            message_id = dig(data, self.gateway.message_id)
            return SendResult("sent", platform_message_id=str(message_id) if message_id is not None else None)
        detail = f"HTTP {status}: {_problem(data) or raw[:200].decode(errors='replace')}"
        if status == 429:
            pause = _seconds(retry_after)
            return SendResult("retry", retry_after=pause if pause is not None else DEFAULT_PAUSE, scope="channel", error=detail)
        if status == 408 or status >= 500:
            return SendResult("retry", error=detail)
        code = error_code(dig(data, self.gateway.error_code))
        if code is not None and code in self.gateway.blocked_codes:
            return SendResult("blocked", error=detail)
        if status in (401, 403):
            log.error("sms.configuration_problem %s", detail)
        return SendResult("failed", error=detail)


# --- helpers -------------------------------------------------------------------


def phone_number(raw: Any) -> str | None:
    """``raw`` as E.164 with a leading "+" ("+447700900001"); ``None`` if it is no phone number.

    Accepts gateway spellings: digits only, "+digits", "00digits", with spaces,
    dashes, dots or brackets in between.
    """
    if not isinstance(raw, str):
        return None
    digits = PHONE_SEPARATORS.sub("", raw).removeprefix("00").removeprefix("+")
    if not (digits.isascii() and digits.isdigit() and 6 <= len(digits) <= 15) or digits.startswith("0"):
        return None
    return "+" + digits


def place_text(place: Place) -> str:
    """A place as plain lines: name, address, a map link any phone or mail client opens."""
    lat, lon = place.latitude, place.longitude
    link = f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=17/{lat}/{lon}"
    return "\n".join(line for line in (place.name, place.address, link) if line)


def dig(data: Any, path: str) -> Any:
    """The value at a dotted ``path`` ("messages.0.id") in parsed JSON; ``None`` where it is missing."""
    value = data
    for key in path.split(".") if path else ():
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def error_code(value: Any) -> str | None:
    """A refusal's code as text; an RFC 7807 ``type`` URL counts by its fragment ("...#1050" -> "1050")."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text.rsplit("#", 1)[1] if "#" in text else text


def valid_jwt(token: str, secret: str, body: bytes) -> bool:
    """An HS256 JWT signed with ``secret`` whose ``payload_hash`` is the SHA-256 of ``body`` (and not expired)."""
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii():
        return False
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    expected = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    header, claims, signature = (_b64decode(p) for p in parts)
    if signature is None or not hmac.compare_digest(signature, expected):
        return False
    header, claims = _json(header or b""), _json(claims or b"")
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        return False
    payload_hash = claims.get("payload_hash")
    if not isinstance(payload_hash, str) or not same_secret(payload_hash.lower(), hashlib.sha256(body).hexdigest()):
        return False
    expires = claims.get("exp")
    return not (isinstance(expires, (int, float)) and not isinstance(expires, bool) and expires < time.time())


def _b64decode(part: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except ValueError:
        return None


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _problem(data: Any) -> str | None:
    """The human part of an error body (RFC 7807 title/detail, or a message field)."""
    if not isinstance(data, dict):
        return None
    parts = [as_str(data.get(k), 300) for k in ("title", "detail", "message", "error")]
    return " - ".join(p for p in parts if p) or None


def _id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and 0 < len(value) <= MAX_EVENT_ID else None


def _number(value: Any, field: str) -> str:
    number = phone_number(value)
    if number is None:
        raise WebhookError(f"sms webhook without a usable phone number in {field}")
    return number


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    return datetime.now(timezone.utc)


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 3600 else None


def _fields(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _fill(template: Any, values: dict[str, str]) -> Any:
    """``template`` with every string's placeholders filled (the values themselves are never parsed)."""
    if isinstance(template, str):
        return template.format_map(values)
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return template
