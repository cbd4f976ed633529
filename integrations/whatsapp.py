"""WhatsApp Cloud API adapter, over aiohttp (Meta ships no Python SDK we could use).

Platform rules that live here (PLATFORMS.md §3): the body is signed with the
app secret (``X-Hub-Signature-256: sha256=<hex>``); one webhook may batch
several entries, changes, messages and statuses, possibly for other business
numbers; statuses deduplicate on (wamid, status); reply buttons are at most 3
with 20-character titles, lists at most 10 rows with 24-character titles;
errors are branched on ``error.code``, not on the HTTP status.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timezone
from typing import Any, Mapping

import aiohttp
import orjson

from bot.events import Inbound, Kind, Media, Receipt
from bot.messages import Outbound, SendResult
from integrations.base import (
    MAX_EVENT_ID,
    InboxItem,
    Limits,
    WebhookError,
    as_address,
    as_coordinates,
    as_dict,
    as_int,
    as_str,
    button_token,
    checked_parse,
    deliver_parts,
    first_word,
    numbered_choices,
    same_secret,
    slash_command,
    split_tail,
    split_text,
    truncate,
    visible,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_TEXT = 4096
MAX_REPLY_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_INTERACTIVE_BODY = 1024  # reply-button and location-request bodies
MAX_LIST_ROWS = 10
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72
MAX_ROW_ID = 200
MAX_LIST_BUTTON = 20
LIST_BUTTON_FALLBACK = "☰"  # no words, so no locale entry; dialogs should pass list_label
MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")
RECEIPT_STATUSES = ("sent", "delivered", "read", "failed")
UNDELIVERABLE = 131026  # not on WhatsApp, blocked the business, ...
WINDOW_CLOSED = 131047
PAIR_RATE_LIMIT = 131056  # too many messages to this one user
# Limits of the whole business number or app: slow the channel down, not one chat.
CHANNEL_RATE_LIMITS = {130429, 131057, 4, 80007}
# Template quick-reply payloads that are opt-outs: "STOP", "STOP_PROMOS", "stop-all", "Stop news"
# (but not "STOPOVER_INFO"); compared upper-cased.
STOP_PAYLOAD = "STOP"
STOP_PREFIXES = ("STOP_", "STOP-", "STOP ")
MAX_STATUS = 32  # characters of a status name ("delivered"); longer is not a status


class WhatsAppAdapter:
    channel = "whatsapp"
    limits = Limits(
        max_text=MAX_TEXT,
        max_buttons=MAX_REPLY_BUTTONS,
        max_button_label=MAX_BUTTON_TITLE,
        max_list_rows=MAX_LIST_ROWS,
        max_list_label=MAX_ROW_TITLE,
        max_payload_bytes=MAX_ROW_ID,
    )

    def __init__(
        self,
        access_token: str,
        phone_number_id: str,
        app_secret: str,
        verify_token: str,
        api_url: str,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.access_token = access_token
        self.phone_number_id = phone_number_id
        self.app_secret = app_secret
        self.verify_token = verify_token
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout  # total seconds for one API call
        self._session: aiohttp.ClientSession | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def close(self) -> None:
        self._session = None  # the session belongs to the app

    # --- inbound -----------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        given = headers.get(SIGNATURE_HEADER)
        if not isinstance(given, str) or not self.app_secret or not given.startswith("sha256="):
            return False
        expected = hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()
        return same_secret(given[len("sha256=") :].strip(), expected)

    def verify_challenge(self, query: Mapping[str, str]) -> str | None:
        """The ``hub.challenge`` to echo for Meta's GET handshake, or ``None`` to refuse."""
        token = query.get("hub.verify_token")
        challenge = query.get("hub.challenge")
        if query.get("hub.mode") != "subscribe" or challenge is None or not same_secret(token, self.verify_token):
            return None
        # Meta's challenge is a number; anything unprintable could not even be echoed back.
        return challenge if challenge.isascii() and challenge.isprintable() else None

    def split(self, data: Any) -> list[InboxItem]:
        if not isinstance(data, dict) or not isinstance(data.get("entry"), list):
            raise WebhookError("whatsapp webhook without an entry list")
        # One bad element must not cost the good ones in the same POST: each
        # level skips what it cannot use (cheap type checks only, before the 200).
        items: list[InboxItem] = []
        for entry in _objects(data["entry"]):
            for change in _objects(entry.get("changes")):
                value = as_dict(change.get("value"))
                if change.get("field") != "messages":
                    continue
                metadata = as_dict(value.get("metadata"))
                if metadata.get("phone_number_id") != self.phone_number_id:
                    continue  # another business number on the same app
                contacts = _objects(value.get("contacts"))
                for message in _objects(value.get("messages")):
                    contact = _contact_for(message, contacts)
                    key = _message_key(message, contact)
                    if key is None:
                        log.warning("whatsapp.malformed_message_skipped id=%r", str(message.get("id"))[:MAX_EVENT_ID])
                        continue
                    body = {"metadata": metadata, "contact": contact, "message": message}
                    items.append(InboxItem(event_id=key[0], address=key[1], body=orjson.dumps(body)))
                for status in _objects(value.get("statuses")):
                    key = _status_key(status)
                    if key is None:
                        log.warning("whatsapp.malformed_status_skipped id=%r", str(status.get("id"))[:MAX_EVENT_ID])
                        continue
                    items.append(InboxItem(event_id=key[0], address=key[1], body=orjson.dumps({"status": status})))
        return items

    def parse(self, body: bytes) -> Inbound | None:
        return checked_parse(self.channel, self._parse, body)

    def _parse(self, body: bytes) -> Inbound | None:
        data = as_dict(orjson.loads(body))
        if "status" in data:
            return self._parse_status(as_dict(data["status"]))
        message, contact = as_dict(data.get("message")), as_dict(data.get("contact")) or None
        key = _message_key(message, contact)
        if key is None:
            return None
        name = as_dict(as_dict(contact).get("profile")).get("name")
        base: dict[str, Any] = {
            "channel": self.channel,
            "event_id": key[0],
            "address": key[1],
            "received_at": _from_seconds(message.get("timestamp")),
            "first_name": first_word(name),
        }
        # A field of the wrong type is treated as absent, which leaves most events unusable (None).
        kind = message.get("type")
        if kind == "text":
            text = as_str(as_dict(message.get("text")).get("body"))
            if text is None:
                return None
            command = slash_command(text)
            if command is None:
                return Inbound(**base, kind=Kind.TEXT, text=text)
            name, args = command
            context = (args or None) if name == "start" else None
            return Inbound(**base, kind=Kind.COMMAND, command=name, text=args, context=context)
        if kind == "interactive":
            interactive = as_dict(message.get("interactive"))
            reply = as_dict(interactive.get("button_reply")) or as_dict(interactive.get("list_reply"))
            payload = as_str(reply.get("id"))
            return Inbound(**base, kind=Kind.BUTTON, payload=payload) if payload else None
        if kind == "button":
            payload = as_str(as_dict(message.get("button")).get("payload"))
            if not payload:
                return None
            if _is_stop(payload):
                return Inbound(**base, kind=Kind.COMMAND, command="stop")
            return Inbound(**base, kind=Kind.BUTTON, payload=payload)
        if kind == "location":
            location = as_dict(message.get("location"))
            point = as_coordinates(location.get("latitude"), location.get("longitude"))
            return Inbound(**base, kind=Kind.LOCATION, location=point) if point else None
        if kind in MEDIA_TYPES:
            item = as_dict(message.get(kind))
            ref = as_str(item.get("id"))
            if not ref:
                return None
            # bot.events names a picture "photo" on every platform; WhatsApp calls it "image".
            media = Media("photo" if kind == "image" else kind, ref, as_str(item.get("mime_type")), as_str(item.get("filename")))
            return Inbound(**base, kind=Kind.MEDIA, media=media, text=as_str(item.get("caption")) or "")
        if kind == "contacts":
            cards = _objects(message.get("contacts"))
            phones = [as_str(p.get("phone")) for card in cards for p in _objects(card.get("phones"))]
            phone = next((p for p in phones if p), None)
            return Inbound(**base, kind=Kind.CONTACT, contact_phone=phone) if phone else None
        return None  # reaction, system, unsupported, order, ...

    def _parse_status(self, status: dict[str, Any]) -> Inbound | None:
        key = _status_key(status)
        if key is None or status["status"] not in RECEIPT_STATUSES:
            return None  # unknown statuses are ignored (PLATFORMS.md §3.3)
        errors = _objects(status.get("errors"))
        error = errors[0] if errors else {}
        code = _error_code(error.get("code"))
        receipt = Receipt(
            platform_message_id=status["id"],
            status=status["status"],
            error_code=code,
            error=as_str(error.get("title")) or as_str(error.get("message")),
            unreachable=code == str(UNDELIVERABLE),
        )
        return Inbound(
            channel=self.channel,
            address=key[1],
            event_id=key[0],
            kind=Kind.RECEIPT,
            received_at=_from_seconds(status.get("timestamp")),
            receipt=receipt,
        )

    # --- outbound ----------------------------------------------------------

    def render(self, address: str, out: Outbound) -> list[dict[str, Any]]:
        envelope = {
            "method": "messages",
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": address,
        }
        if out.template is not None:
            # Outside the 24-hour window only an approved template may go; its text is Meta's, filled in order.
            template = out.template
            parameters = [{"type": "text", "text": visible(p)} for p in template.params]
            spec: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
            if parameters:
                spec["components"] = [{"type": "body", "parameters": parameters}]
            return [{**envelope, "type": "template", "template": spec}]
        parts = _session_parts(envelope, out)
        if out.place is not None:
            place = out.place
            location: dict[str, Any] = {"latitude": place.latitude, "longitude": place.longitude}
            if place.name:
                location["name"] = place.name
            if place.address:
                location["address"] = place.address
            parts.append({**envelope, "type": "location", "location": location})
        return parts

    async def send(self, address: str, out: Outbound, *, start_part: int = 0) -> SendResult:
        return await deliver_parts(self.render(address, out), start_part, self._post)

    async def _post(self, part: dict[str, Any]) -> SendResult:
        if self._session is None:
            raise RuntimeError("WhatsAppAdapter.start() was not called")
        body = {k: v for k, v in part.items() if k != "method"}
        try:
            async with self._session.post(
                f"{self.api_url}/{self.phone_number_id}/{part['method']}",
                data=orjson.dumps(body),
                headers={"Authorization": f"Bearer {self.access_token}", "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                raw = await response.read()
                status, retry_header = response.status, response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult("retry", error=f"{type(exc).__name__}: {exc}")
        try:
            data = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            data = {}
        data = data if isinstance(data, dict) else {}
        if status == 200:
            messages = data.get("messages") or [{}]
            if messages[0].get("id"):
                return SendResult("sent", platform_message_id=messages[0]["id"])
            return SendResult("failed", error="200 without a message id")
        error = data.get("error") or {}
        code = error.get("code")
        detail = f"{code}: {error.get('message') or f'HTTP {status}'}"
        if code == UNDELIVERABLE:
            return SendResult("blocked", error=detail)
        if code in CHANNEL_RATE_LIMITS:
            return SendResult("retry", retry_after=_seconds(retry_header), scope="channel", error=detail)
        if code == PAIR_RATE_LIMIT:
            return SendResult("retry", retry_after=_seconds(retry_header), scope="chat", error=detail)
        if code == WINDOW_CLOSED:
            return SendResult("failed", error=detail)  # free-form outside the 24 h window: needs a template
        if status == 429:
            return SendResult("retry", retry_after=_seconds(retry_header), scope="channel", error=detail)
        if status >= 500:
            return SendResult("retry", error=detail)
        return SendResult("failed", error=detail)

    async def acknowledge(self, event: Inbound) -> None:
        return None

    def webhook_reply(self, out: Outbound) -> dict[str, Any] | None:
        return None

    async def register_webhook(self, url: str) -> str:
        # Meta has no API for this: the operator enters it in the App Dashboard,
        # which then performs the GET handshake answered by verify_challenge().
        # The operator asked for exactly this line: it goes to their terminal, not to a log.
        return (
            f"whatsapp: in Meta's App Dashboard (WhatsApp > Configuration) enter\n"
            f"  callback URL:  {url}\n"
            f"  verify token:  {self.verify_token}\n"
            "then subscribe the 'messages' webhook field"
        )


def _session_parts(envelope: dict[str, Any], out: Outbound) -> list[dict[str, Any]]:
    """Free-form messages (text, buttons, lists, location request): only inside the customer-service window."""

    def plain(chunk: str) -> dict[str, Any]:
        return {**envelope, "type": "text", "text": {"body": chunk, "preview_url": False}}

    def texts(text: str) -> list[dict[str, Any]]:
        return [plain(chunk) for chunk in split_text(text, MAX_TEXT) if chunk.strip()]

    def interactive(body: str, widget: dict[str, Any]) -> dict[str, Any]:
        return {**envelope, "type": "interactive", "interactive": {**widget, "body": {"text": visible(body)}}}

    if out.request_location:
        head, tail = split_tail(numbered_choices(out), MAX_INTERACTIVE_BODY)
        widget = {"type": "location_request_message", "action": {"name": "send_location"}}
        return texts(head) + [interactive(tail, widget)]
    if not out.buttons:
        return texts(visible(out.text))
    widget = _reply_buttons(out)
    if widget is not None:
        head, tail = split_tail(out.text, MAX_INTERACTIVE_BODY)
        return texts(head) + [interactive(tail, widget)]
    widget = _list(out)
    if widget is not None:
        chunks = split_text(out.text, MAX_TEXT)
        return [plain(chunk) for chunk in chunks[:-1]] + [interactive(chunks[-1], widget)]
    return texts(numbered_choices(out))


def _reply_buttons(out: Outbound) -> dict[str, Any] | None:
    """Reply buttons when they fit untruncated and unique, else ``None``."""
    buttons = out.buttons
    if out.style != "buttons" or not 1 <= len(buttons) <= MAX_REPLY_BUTTONS:
        return None
    if any(len(b.label) > MAX_BUTTON_TITLE or not b.label.strip() for b in buttons):
        return None
    ids = [button_token(b.id, i, MAX_ROW_ID) for i, b in enumerate(buttons)]
    if len(set(ids)) < len(ids) or len({b.label for b in buttons}) < len(buttons):
        return None
    replies = [{"type": "reply", "reply": {"id": id_, "title": b.label}} for id_, b in zip(ids, buttons)]
    return {"type": "button", "action": {"buttons": replies}}


def _list(out: Outbound) -> dict[str, Any] | None:
    """A single-section list when the rows fit with unique ids and titles, else ``None``."""
    if len(out.buttons) > MAX_LIST_ROWS:
        return None
    rows: list[dict[str, Any]] = []
    for i, b in enumerate(out.buttons):
        label = visible(b.label)
        row = {"id": button_token(b.id, i, MAX_ROW_ID), "title": truncate(label, MAX_ROW_TITLE)}
        if row["title"] != label:
            row["description"] = truncate(label, MAX_ROW_DESCRIPTION)
        rows.append(row)
    if len({r["id"] for r in rows}) < len(rows) or len({r["title"] for r in rows}) < len(rows):
        return None  # truncation made titles collide: numbered text instead
    label = truncate(visible(out.list_label, LIST_BUTTON_FALLBACK), MAX_LIST_BUTTON)
    return {"type": "list", "action": {"button": label, "sections": [{"rows": rows}]}}


def _objects(value: Any) -> list[dict[str, Any]]:
    """The JSON objects in a list; anything else (a non-list, or non-object elements) is skipped."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _is_stop(payload: str) -> bool:
    """True for an opt-out quick reply ("STOP", "STOP_PROMOS"); not for "STOPOVER_INFO"."""
    upper = payload.upper()
    return upper == STOP_PAYLOAD or upper.startswith(STOP_PREFIXES)


def _contact_for(message: dict[str, Any], contacts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``contacts[]`` entry describing the sender of ``message``."""
    sender, user_id = as_address(message.get("from")), as_address(message.get("from_user_id"))
    for contact in contacts:
        if (sender and contact.get("wa_id") == sender) or (user_id and contact.get("user_id") == user_id):
            return contact
    return contacts[0] if len(contacts) == 1 else None


def _message_key(message: dict[str, Any], contact: dict[str, Any] | None) -> tuple[str, str] | None:
    """(wamid, sender) of an inbound message; ``None`` when either is missing or not a usable string."""
    wamid = as_str(message.get("id"), MAX_EVENT_ID)
    address = _sender(message, contact)
    return (wamid, address) if wamid and address else None


def _sender(message: dict[str, Any], contact: dict[str, Any] | None) -> str | None:
    """Phone-number wa_id, or the business-scoped user id when the phone is hidden (BSUID).

    The first of them present decides: a malformed one makes the message unusable
    rather than letting a later field speak for a sender we cannot read.
    """
    contact = contact or {}
    for value in (message.get("from"), message.get("from_user_id"), contact.get("wa_id"), contact.get("user_id")):
        if value is not None and value != "":
            return as_address(value)
    return None


def _status_key(status: dict[str, Any]) -> tuple[str, str] | None:
    """(wamid:status, recipient) of a status; ``None`` when a field is missing or not a usable string.

    The same wamid comes once per status, hence the status in the dedupe key.
    """
    wamid, name = as_str(status.get("id"), MAX_EVENT_ID), as_str(status.get("status"), MAX_STATUS)
    recipient = status.get("recipient_id") or status.get("recipient_user_id")
    address = as_address(recipient)
    return (f"{wamid}:{name}", address) if wamid and name and address else None


def _error_code(code: Any) -> str | None:
    """A status error code as text (Meta sends an integer); ``None`` for anything else."""
    if as_int(code) is not None:
        return str(code)
    return as_str(code, MAX_STATUS) or None


def _from_seconds(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(timezone.utc)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
