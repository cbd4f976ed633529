"""Viber REST Bot API adapter: viberbot for parsing and message models, aiohttp for sending.

viberbot's own sender is synchronous (``requests``), so the JSON it builds is
posted with the app's aiohttp session instead. Platform rules that live here
(PLATFORMS.md §2): the body is signed with the bot token (hex HMAC-SHA256, no
prefix); errors come back as HTTP 200 with ``status != 0``; ``message_token``
exceeds 2^53 and stays an int; a keyboard press is an ordinary text message
carrying the button's ``ActionBody``; the ``conversation_started`` welcome
travels in the HTTP response.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timezone
from typing import Any, Mapping

import aiohttp
import orjson
from viberbot.api.messages import (
    ContactMessage,
    FileMessage,
    LocationMessage,
    PictureMessage,
    TextMessage,
    VideoMessage,
)
from viberbot.api.viber_requests import (
    ViberConversationStartedRequest,
    ViberDeliveredRequest,
    ViberFailedRequest,
    ViberMessageRequest,
    ViberSeenRequest,
    ViberSubscribedRequest,
    ViberUnsubscribedRequest,
    create_request,
)

from bot.events import Inbound, Kind, Media, Receipt
from bot.messages import Outbound, SendResult
from integrations.base import (
    INT64_MIN,
    MAX_LANGUAGE,
    UINT64_MAX,
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
    split_text_within,
    truncate,
    visible,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Viber-Content-Signature"
AUTH_HEADER = "X-Viber-Auth-Token"
BUTTON_PREFIX = "btn:"  # ActionBody of our reply buttons, echoed back as the message text
MAX_KEYBOARD_BUTTONS = 24
MAX_SENDER_NAME = 28
MAX_REQUEST_BYTES = 30_000  # Viber's whole-request limit is 30 KB; stay just under it
MAX_KEYBOARD_BYTES = 20_000  # leaves room for a useful amount of text beside the keyboard
SHORT_LABEL = 16
LOCATION_PICKER_API_VERSION = 3  # clients older than this cannot show a location-picker button
WEBHOOK_EVENTS = ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"]
RECEIPT_EVENTS = {"delivered": "delivered", "seen": "read", "failed": "failed"}
BLOCKED_STATUSES = {5, 6}  # receiverNotRegistered, receiverNotSubscribed
TOO_MANY_REQUESTS = 12
CONFIG_STATUSES = {2, 7, 8, 9, 10}  # token / account / webhook problems: an operator must act


class ViberAdapter:
    channel = "viber"
    limits = Limits(
        max_text=7000,
        max_buttons=MAX_KEYBOARD_BUTTONS,
        max_button_label=250,
        max_list_rows=MAX_KEYBOARD_BUTTONS,
        max_list_label=250,
        max_payload_bytes=64,
    )

    def __init__(self, token: str, bot_name: str, api_url: str, *, timeout: float = 10.0) -> None:
        self.token = token
        self.bot_name = bot_name
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout  # total seconds for one API call
        self._session: aiohttp.ClientSession | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def close(self) -> None:
        self._session = None  # the session belongs to the app

    # --- inbound -----------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        if not self.token:
            return False
        given = headers.get(SIGNATURE_HEADER)
        expected = hmac.new(self.token.encode(), body, hashlib.sha256).hexdigest()
        return same_secret(given.strip() if isinstance(given, str) else None, expected)

    def split(self, data: Any) -> list[InboxItem]:
        key = _identify(data)
        if key is None:
            return []
        event_id, address, inline = key
        return [InboxItem(event_id=event_id, address=address, body=orjson.dumps(data), inline=inline)]

    def parse(self, body: bytes) -> Inbound | None:
        return checked_parse(self.channel, self._parse, body)

    def _parse(self, body: bytes) -> Inbound | None:
        data = orjson.loads(body)
        key = _identify(data)  # the same ids and user that split() stored the event under
        if key is None:
            return None
        if data["event"] == "failed":
            data.setdefault("desc", None)  # viberbot insists on it; the reason is optional to us
        try:
            request = create_request(data)
        except Exception as exc:  # viberbot raises bare Exception for unknown message types
            log.info("viber.unparsed_event", extra={"event": data.get("event"), "error": str(exc)})
            return None
        base = {
            "channel": self.channel,
            "event_id": key[0],
            "address": key[1],
            "received_at": _from_millis(request.timestamp),
        }
        if isinstance(request, ViberMessageRequest):
            return _parse_message(request, data["message"], {**base, **_profile(request.sender)})
        if isinstance(request, ViberConversationStartedRequest):
            context = as_str(request.context) or None
            return Inbound(**base, kind=Kind.STARTED, context=context, **_profile(request.user))
        if isinstance(request, ViberSubscribedRequest):
            return Inbound(**base, kind=Kind.SUBSCRIBED, **_profile(request.user))
        if isinstance(request, ViberUnsubscribedRequest):
            return Inbound(**base, kind=Kind.UNSUBSCRIBED)
        if isinstance(request, (ViberDeliveredRequest, ViberSeenRequest, ViberFailedRequest)):
            receipt = Receipt(
                platform_message_id=str(request.message_token),
                status=RECEIPT_EVENTS[data["event"]],
                error=as_str(request.desc) if isinstance(request, ViberFailedRequest) else None,
            )
            return Inbound(**base, kind=Kind.RECEIPT, receipt=receipt)
        return None

    # --- outbound ----------------------------------------------------------

    def render(self, address: str, out: Outbound) -> list[dict[str, Any]]:
        return self._render(out, receiver=address)

    def _render(self, out: Outbound, receiver: str | None) -> list[dict[str, Any]]:
        text = out.text
        buttons = _reply_buttons(out)
        if out.buttons and (buttons is None or len(orjson.dumps(buttons)) > MAX_KEYBOARD_BYTES):
            text, buttons = numbered_choices(out), []
        buttons = buttons or []
        if out.request_location:
            label = visible(out.location_label, "📍")
            picker = {"ActionType": "location-picker", "ActionBody": "location", "Text": label}
            buttons.append({**picker, "Columns": 6, "Rows": 1})
        keyboard = {"Type": "keyboard", "DefaultHeight": False, "Buttons": buttons} if buttons else None
        sender = {"name": truncate(self.bot_name, MAX_SENDER_NAME)}
        envelope: dict[str, Any] = {"method": "send_message", "sender": sender}
        if receiver is not None:
            envelope["receiver"] = receiver
        min_api = LOCATION_PICKER_API_VERSION if out.request_location else None

        def message(chunk: str, last: bool) -> dict[str, Any]:
            built = TextMessage(
                text=chunk, keyboard=keyboard if last else None, min_api_version=min_api if last else None
            ).to_dict()
            return {**envelope, **built}

        # Budget the text by bytes of the encoded request so no part exceeds 30 KB.
        overhead = len(orjson.dumps(message("", last=True)))
        chunks = split_text_within(
            visible(text), self.limits.max_text, _json_len, MAX_REQUEST_BYTES - overhead
        )
        parts = [message(chunk, last=i == len(chunks) - 1) for i, chunk in enumerate(chunks)]
        if out.place is not None:
            location = {"type": "location", "location": {"lat": out.place.latitude, "lon": out.place.longitude}}
            parts.append({**envelope, **location})
        return parts

    async def send(self, address: str, out: Outbound, *, start_part: int = 0) -> SendResult:
        return await deliver_parts(self.render(address, out), start_part, self._post)

    async def _post(self, part: dict[str, Any]) -> SendResult:
        body = {k: v for k, v in part.items() if k != "method"}
        try:
            status, data, headers = await self._call(part["method"], body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult("retry", error=f"{type(exc).__name__}: {exc}")
        if status == 429:
            return SendResult("retry", retry_after=_seconds(headers.get("Retry-After")), error="HTTP 429")
        if status >= 500 or data is None:
            return SendResult("retry", error=f"HTTP {status}")
        if status != 200:
            return SendResult("failed", error=f"HTTP {status}")
        code = data.get("status")
        message = str(data.get("status_message") or "")
        if code == 0:
            return SendResult("sent", platform_message_id=str(data.get("message_token")))
        if code in BLOCKED_STATUSES:
            return SendResult("blocked", error=message)
        if code == TOO_MANY_REQUESTS:
            # 100 messages per user per hour without a reply: slow this chat down.
            return SendResult("retry", retry_after=60.0, scope="chat", error=message)
        if code in CONFIG_STATUSES:
            log.error("viber.configuration_problem", extra={"status": code, "status_message": message})
        return SendResult("failed", error=f"status {code}: {message}")

    async def _call(self, endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None, Mapping[str, str]]:
        """POST one API call; (HTTP status, parsed JSON body or None, headers)."""
        if self._session is None:
            raise RuntimeError("ViberAdapter.start() was not called")
        async with self._session.post(
            f"{self.api_url}/{endpoint}",
            data=orjson.dumps(body),
            headers={AUTH_HEADER: self.token, "Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        ) as response:
            raw = await response.read()
            try:
                data = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                data = None
            return response.status, data if isinstance(data, dict) else None, response.headers

    async def acknowledge(self, event: Inbound) -> None:
        return None

    def webhook_reply(self, out: Outbound) -> dict[str, Any] | None:
        """The welcome for ``conversation_started``: a send_message body without ``receiver``.

        Only one message may travel in the response; a text too long for one
        part keeps its last part (the one with the keyboard).
        """
        parts = self._render(out, receiver=None)
        if len(parts) > 1:
            log.warning("viber.welcome_truncated", extra={"parts": len(parts)})
        reply = dict(parts[-1])
        reply.pop("method")
        return reply

    async def register_webhook(self, url: str) -> str:
        body = {"url": url, "event_types": WEBHOOK_EVENTS, "send_name": True}
        status, data, _ = await self._call("set_webhook", body)
        if status != 200 or data is None or data.get("status") != 0:
            detail = (data or {}).get("status_message") or f"HTTP {status}"
            raise RuntimeError(
                f"viber set_webhook failed ({detail}, status {(data or {}).get('status')}); "
                "the webhook URL must already answer Viber's check with 200"
            )
        return f"viber: webhook set to {url} (events: {', '.join(data.get('event_types') or WEBHOOK_EVENTS)})"


def _identify(data: Any) -> tuple[str, str, bool] | None:
    """(dedupe key, user, answer inline?) of a raw callback; ``None`` for kinds we do not store.

    Cheap dict checks only (this runs before the 200). Raises ``WebhookError``
    when a token is not a 64-bit integer (a null token would make every later
    token-less callback a "duplicate") or the user id is not a usable string.
    """
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise WebhookError("viber callback without an event")
    event = data["event"]
    if event == "message":
        return f"message:{_token(data.get('message_token'))}", _user(as_dict(data.get("sender")).get("id")), False
    if event == "conversation_started":
        token = _token(data.get("message_token"))
        return f"conversation_started:{token}", _user(as_dict(data.get("user")).get("id")), True
    if event in ("subscribed", "unsubscribed"):
        user_id = as_dict(data.get("user")).get("id") if event == "subscribed" else data.get("user_id")
        return f"{event}:{_token(data.get('message_token') or data.get('timestamp'))}", _user(user_id), False
    if event in RECEIPT_EVENTS:
        address = _user(data.get("user_id"))
        # A seen must not be dropped as a duplicate of the delivered for the same token.
        return f"{event}:{_token(data.get('message_token'))}:{address}", address, False
    return None  # "webhook" registration check, and kinds we do not use


def _token(value: Any) -> int:
    token = as_int(value, INT64_MIN, UINT64_MAX)
    if token is None:
        raise WebhookError("viber callback without an integer message_token")
    return token


def _user(value: Any) -> str:
    address = as_address(value)
    if address is None:
        raise WebhookError("viber callback without a usable user id")
    return address


def _parse_message(request: ViberMessageRequest, raw: dict[str, Any], base: dict[str, Any]) -> Inbound | None:
    """The event a message callback stands for; ``None`` when a field it needs is missing or mistyped."""
    message = request.message
    if isinstance(message, TextMessage):
        text = as_str(message.text)
        if text is None:
            return None
        if text.startswith(BUTTON_PREFIX):
            return Inbound(**base, kind=Kind.BUTTON, payload=text[len(BUTTON_PREFIX) :])
        command = slash_command(text)
        if command is not None:
            name, args = command
            context = (args or None) if name == "start" else None
            return Inbound(**base, kind=Kind.COMMAND, command=name, text=args, context=context)
        return Inbound(**base, kind=Kind.TEXT, text=text)
    if isinstance(message, LocationMessage) and message.location is not None:
        location = as_coordinates(message.location.latitude, message.location.longitude)
        return Inbound(**base, kind=Kind.LOCATION, location=location) if location else None
    if isinstance(message, ContactMessage) and message.contact is not None:
        phone = as_str(message.contact.phone_number)
        return Inbound(**base, kind=Kind.CONTACT, contact_phone=phone) if phone else None
    if isinstance(message, (PictureMessage, VideoMessage, FileMessage)):
        ref = as_str(message.media)
        if not ref:
            return None
        if isinstance(message, PictureMessage):
            media = Media("photo", ref, None, as_str(raw.get("file_name")))  # bot.events names: "photo"
        elif isinstance(message, VideoMessage):
            media = Media("video", ref)
        else:
            media = Media("file", ref, None, as_str(message.file_name))
        caption = as_str(getattr(message, "text", None)) or ""  # files have no caption
        return Inbound(**base, kind=Kind.MEDIA, media=media, text=caption)
    return None  # sticker, url, rich_media: nothing a dialog can use


def _reply_buttons(out: Outbound) -> list[dict[str, Any]] | None:
    """Keyboard buttons for ``out``; ``None`` when there are too many for one keyboard."""
    if not out.buttons:
        return []
    if len(out.buttons) + (1 if out.request_location else 0) > MAX_KEYBOARD_BUTTONS:
        return None
    # Short labels side by side (3 of 6 columns) in pairs, the others full width.
    shorts = [out.style != "list" and len(b.label) <= SHORT_LABEL for b in out.buttons]
    columns = [6] * len(out.buttons)
    i = 0
    while i < len(shorts):
        if shorts[i] and i + 1 < len(shorts) and shorts[i + 1]:
            columns[i] = columns[i + 1] = 3
            i += 2
        else:
            i += 1
    return [
        {
            "ActionType": "reply",
            "ActionBody": BUTTON_PREFIX + button_token(b.id, i, ViberAdapter.limits.max_payload_bytes),
            "Text": truncate(visible(b.label), ViberAdapter.limits.max_button_label),
            "Columns": columns[i],
            "Rows": 1,
            "Silent": True,  # the raw "btn:..." body would otherwise appear in the chat
        }
        for i, b in enumerate(out.buttons)
    ]


def _profile(user: Any) -> dict[str, Any]:
    """first_name and language_code of a viberbot ``UserProfile``; a field of the wrong type is absent."""
    return {"first_name": first_word(user.name), "language_code": as_str(user.language, MAX_LANGUAGE)}


def _from_millis(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value) / 1000, timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(timezone.utc)


def _json_len(text: str) -> int:
    return len(orjson.dumps(text)) - 2


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
