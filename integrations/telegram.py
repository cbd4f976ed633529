"""Telegram Bot API adapter: python-telegram-bot's types for parsing, its ``Bot`` for sending.

Platform rules that live here (see PLATFORMS.md §1): the webhook is
authenticated by a shared secret header (no HMAC); entity offsets are UTF-16
code units; ``callback_data`` is at most 64 *bytes*; a text is at most 4096
characters; a blocked bot shows up as ``my_chat_member`` -> ``kicked`` or as a
403 on send.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import aiohttp
import orjson
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    MessageEntity,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.warnings import PTBDeprecationWarning

from bot.events import Inbound, Kind, Media
from bot.messages import Button, Outbound, SendResult
from integrations.base import (
    MAX_LANGUAGE,
    MAX_NAME,
    InboxItem,
    Limits,
    WebhookError,
    as_coordinates,
    as_dict,
    as_int,
    as_str,
    button_token,
    checked_parse,
    deliver_parts,
    numbered_choices,
    same_secret,
    split_text_within,
    truncate,
    utf16_len,
    visible,
)
from integrations.telegram_http import AiohttpRequest

log = logging.getLogger(__name__)


class _SendingBot(Bot):
    """python-telegram-bot's ``Bot``, plus a call that keeps the reply as JSON.

    ``render()`` already produces the Bot API's JSON (validated through PTB's
    own types), and all the sender needs back is the ``message_id``. Going
    through ``send_message`` would rebuild PTB objects from that JSON and parse
    the whole returned ``Message`` (a tenth of the server's CPU per reply in
    bench/inbound.py). ``_post`` is the request path every PTB method uses:
    defaults, the request object, and PTB's error mapping (RetryAfter,
    Forbidden, BadRequest ...) all stay in force. Pinned by the version range
    in pyproject.toml and covered by the adapter tests.
    """

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        return await self._post(method, api_kwargs=params)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Update kinds we store; everything else (channel_post, inline_query, poll, ...
# and kinds added by future Bot API releases) is acknowledged and dropped.
HANDLED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]
MAX_INLINE_BUTTONS = 100
SHORT_LABEL = 16  # labels up to this many characters sit two to a row
# 403 descriptions that mean "this chat will never accept a message again".
BLOCKED_MARKERS = ("blocked by the user", "user is deactivated", "bot was kicked", "can't initiate conversation")


class TelegramAdapter:
    channel = "telegram"
    limits = Limits(
        max_text=4096,
        max_buttons=MAX_INLINE_BUTTONS,
        max_button_label=64,
        max_list_rows=MAX_INLINE_BUTTONS,
        max_list_label=64,
        max_payload_bytes=64,
    )

    def __init__(self, token: str, secret: str, api_url: str, *, timeout: float = 10.0) -> None:
        self.secret = secret
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout  # total seconds for one API call, so a stuck API cannot hang the sender
        # PTB's Bot over aiohttp: its httpx transport was the biggest CPU cost under load.
        self._request = AiohttpRequest(timeout=timeout)
        # Webhooks only, so getUpdates never long-polls: one client serves both slots.
        request = self._request
        self.bot = _SendingBot(token, base_url=f"{self.api_url}/bot", request=request, get_updates_request=request)

    # --- lifecycle -------------------------------------------------------

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Open PTB's HTTP client and call ``getMe`` (PTB's own token check).

        A rejected token is a configuration error and stops start-up; an
        unreachable API must not (the webhook keeps storing updates, and the
        outbox retries sends until Telegram answers again). PTB sends through
        the app's shared ``session``, which ``close()`` leaves open.
        """
        self._request.use_session(session)
        try:
            await self.bot.initialize()
        except InvalidToken:
            raise
        except TelegramError as exc:
            log.warning("telegram.get_me_failed error=%r; starting anyway, sends will be retried", exc)

    async def close(self) -> None:
        await self.bot.shutdown()

    # --- inbound -----------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        if not self.secret:
            return True  # no secret configured; the app warns at start-up
        return same_secret(headers.get(SECRET_HEADER), self.secret)

    def split(self, data: Any) -> list[InboxItem]:
        key = _identify(data)
        if key is None:
            return []
        event_id, address = key
        return [InboxItem(event_id=event_id, address=address, body=orjson.dumps(data))]

    def parse(self, body: bytes) -> Inbound | None:
        return checked_parse(self.channel, self._parse, body)

    def _parse(self, body: bytes) -> Inbound | None:
        data = orjson.loads(body)
        key = _identify(data)  # the same ids and chat that split() stored the event under
        if key is None:
            return None
        update = Update.de_json(data, self.bot)
        base = {"channel": self.channel, "event_id": key[0], "address": key[1]}
        if update.message is not None:
            return self._parse_message(update.message, base, edited=False)
        if update.edited_message is not None:
            return self._parse_message(update.edited_message, base, edited=True)
        if update.callback_query is not None:
            query = update.callback_query
            payload = as_str(query.data)
            if payload is None:
                return None  # a game button (we never send those), or not a string
            chat = query.message.chat if query.message is not None else None
            return Inbound(
                **base,
                kind=Kind.BUTTON,
                payload=payload,
                reply_token=as_str(query.id),
                chat_type=_chat_type(chat.type) if chat is not None else "private",
                **_profile(query.from_user),
            )
        if update.my_chat_member is not None:
            member = update.my_chat_member
            if member.chat.type != "private":
                return None
            status = as_str(member.new_chat_member.status)
            kind = {"kicked": Kind.UNSUBSCRIBED, "member": Kind.RESUBSCRIBED}.get(status or "")
            if kind is None:
                return None
            return Inbound(**base, kind=kind, received_at=_utc(member.date), **_profile(member.from_user))
        return None

    def _parse_message(self, message: Message, base: dict[str, Any], *, edited: bool) -> Inbound | None:
        common: dict[str, Any] = {
            **base,
            "received_at": _utc(message.date),
            "chat_type": _chat_type(message.chat.type),
            **_profile(message.from_user),
        }
        # A field of the wrong type is treated as absent.
        text, caption = as_str(message.text), as_str(message.caption)
        if edited:
            return Inbound(**common, kind=Kind.EDITED, text=text or caption or "")
        if text is not None:
            command = self._command(message, text)
            if command is not None:
                name, mention, args = command
                if mention and mention.lower() != (self._username() or mention).lower():
                    return None  # "/help@OtherBot" in a group is for another bot
                return Inbound(
                    **common,
                    kind=Kind.COMMAND,
                    command=name,
                    text=args,
                    context=(args or None) if name == "start" else None,
                )
            return Inbound(**common, kind=Kind.TEXT, text=text)
        if message.location is not None:
            location = as_coordinates(message.location.latitude, message.location.longitude)
            return Inbound(**common, kind=Kind.LOCATION, location=location) if location else None
        if message.contact is not None:
            phone = as_str(message.contact.phone_number)
            return Inbound(**common, kind=Kind.CONTACT, contact_phone=phone) if phone else None
        media = _media(message)
        if media is not None:
            return Inbound(**common, kind=Kind.MEDIA, media=media, text=caption or "")
        return None

    def _command(self, message: Message, text: str) -> tuple[str, str, str] | None:
        """(command, @mention, arguments) when the text starts with a ``bot_command`` entity."""
        entity = next((e for e in message.entities if e.offset == 0), None)
        if entity is None or entity.type != MessageEntity.BOT_COMMAND:
            return None
        units = text.encode("utf-16-le")
        length = as_int(entity.length, 2, len(units) // 2)  # "/" and at least one letter, within the text
        if length is None:
            return None
        raw = units[:2 * length].decode("utf-16-le")  # entity offsets count UTF-16 units
        name, _, mention = raw[1:].partition("@")
        args = units[2 * length :].decode("utf-16-le").strip()
        return name.lower(), mention, args

    def _username(self) -> str | None:
        try:
            return self.bot.username  # known after initialize()
        except RuntimeError:
            return None

    # --- outbound ----------------------------------------------------------

    def render(self, address: str, out: Outbound) -> list[dict[str, Any]]:
        markup: dict[str, Any] | None = None
        text = out.text
        if out.request_location:
            # One reply keyboard per message: the location button wins and any
            # choices become numbered text, which the core resolves the same way.
            text = numbered_choices(out)
            button = KeyboardButton(visible(out.location_label, "📍"), request_location=True)
            markup = ReplyKeyboardMarkup([[button]], one_time_keyboard=True, resize_keyboard=True).to_dict()
        elif len(out.buttons) > MAX_INLINE_BUTTONS:
            text = numbered_choices(out)
        elif out.buttons:
            markup = InlineKeyboardMarkup(_inline_rows(out)).to_dict()
        chunks = split_text_within(visible(text), self.limits.max_text, utf16_len, self.limits.max_text)
        chat_id = _chat_id(address)
        parts: list[dict[str, Any]] = [{"method": "sendMessage", "chat_id": chat_id, "text": c} for c in chunks]
        if markup is not None:
            parts[-1]["reply_markup"] = markup
        if out.place is not None:
            # The store's pin after the text that names it (sendLocation has no caption).
            parts.append(
                {"method": "sendLocation", "chat_id": chat_id, "latitude": out.place.latitude, "longitude": out.place.longitude}
            )
        return parts

    async def send(self, address: str, out: Outbound, *, start_part: int = 0) -> SendResult:
        return await deliver_parts(self.render(address, out), start_part, self._post)

    async def _post(self, part: dict[str, Any]) -> SendResult:
        params = {k: v for k, v in part.items() if k != "method"}
        try:
            async with asyncio.timeout(self.timeout):
                message = await self.bot.call(part["method"], params)
        except RetryAfter as exc:
            return SendResult("retry", retry_after=_retry_after_seconds(exc), error=exc.message)
        except Forbidden as exc:
            blocked = any(marker in exc.message.lower() for marker in BLOCKED_MARKERS)
            return SendResult("blocked" if blocked else "failed", error=exc.message)
        except ChatMigrated as exc:
            return SendResult("failed", error=f"chat migrated to {exc.new_chat_id}")
        except BadRequest as exc:
            return SendResult("failed", error=exc.message)
        except (TimedOut, NetworkError, TimeoutError) as exc:  # PTB maps 5xx to NetworkError
            return SendResult("retry", error=str(exc) or "timeout")
        except TelegramError as exc:
            return SendResult("retry", error=exc.message)
        return SendResult("sent", platform_message_id=str(message["message_id"]))

    async def acknowledge(self, event: Inbound) -> None:
        """Stop the spinner on a pressed inline button; failures only cost cosmetics."""
        if event.kind is not Kind.BUTTON or not event.reply_token:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self.bot.answer_callback_query(event.reply_token)
        except (TelegramError, TimeoutError) as exc:
            log.warning("telegram.answer_callback_failed", extra={"error": str(exc)})

    def webhook_reply(self, out: Outbound) -> dict[str, Any] | None:
        return None

    async def register_webhook(self, url: str) -> str:
        await self.bot.set_webhook(
            url=url,
            secret_token=self.secret or None,
            allowed_updates=HANDLED_UPDATES,
            max_connections=40,
        )
        secret = "with secret token" if self.secret else "WITHOUT a secret token (set TELEGRAM_WEBHOOK_SECRET)"
        return f"telegram: webhook set to {url} {secret}"


def _identify(data: Any) -> tuple[str, str] | None:
    """(update_id, chat to answer) of a raw update; ``None`` for kinds we do not store.

    Cheap dict checks only (this runs before the 200). Raises ``WebhookError``
    when the update or its chat has no proper integer id.
    """
    if not isinstance(data, dict):
        raise WebhookError("telegram update is not an object")
    update_id = as_int(data.get("update_id"))
    if update_id is None:
        raise WebhookError("telegram update without an integer update_id")
    for key in ("message", "edited_message"):
        if key in data:
            return str(update_id), _chat_address(as_dict(data[key]).get("chat"))
    if "callback_query" in data:
        query = as_dict(data["callback_query"])
        chat = as_dict(query.get("message")).get("chat")
        return str(update_id), _chat_address(chat if chat is not None else query.get("from"))
    if "my_chat_member" in data:
        chat = as_dict(as_dict(data["my_chat_member"]).get("chat"))
        return (str(update_id), _chat_address(chat)) if chat.get("type") == "private" else None
    return None


def _chat_address(chat: Any) -> str:
    """The id of a chat or user object as an address; ``WebhookError`` unless it is a 64-bit integer."""
    chat_id = as_int(as_dict(chat).get("id"))
    if chat_id is None:
        raise WebhookError("telegram chat or user without an integer id")
    return str(chat_id)


def _profile(user: Any) -> dict[str, str | None]:
    """first_name and language_code of a PTB ``User``; a field of the wrong type is absent."""
    if user is None:
        return {"first_name": None, "language_code": None}
    return {"first_name": as_str(user.first_name, MAX_NAME), "language_code": as_str(user.language_code, MAX_LANGUAGE)}


def _inline_rows(out: Outbound) -> list[list[InlineKeyboardButton]]:
    """Short labels two per row, long ones (or a list) alone, in button order."""

    def button(index: int, b: Button) -> InlineKeyboardButton:
        return InlineKeyboardButton(truncate(visible(b.label), 64), callback_data=button_token(b.id, index, 64))

    rows: list[list[InlineKeyboardButton]] = []
    pending: InlineKeyboardButton | None = None
    for index, b in enumerate(out.buttons):
        short = out.style != "list" and len(b.label) <= SHORT_LABEL
        if short and pending is not None:
            rows.append([pending, button(index, b)])
            pending = None
        elif short:
            pending = button(index, b)
        else:
            if pending is not None:
                rows.append([pending])
                pending = None
            rows.append([button(index, b)])
    if pending is not None:
        rows.append([pending])
    return rows


def _media(message: Message) -> Media | None:
    """The media reference of ``message``; ``None`` when there is none or its file_id is not a string."""
    if message.photo:
        item, kind = message.photo[-1], "photo"  # the last size is the largest
    elif message.animation is not None:
        item, kind = message.animation, "video"
    else:
        kinds = (("document", "document"), ("video", "video"), ("audio", "audio"), ("audio", "voice"))
        kinds += (("video", "video_note"), ("sticker", "sticker"))
        found = next(((k, getattr(message, a)) for k, a in kinds if getattr(message, a) is not None), None)
        if found is None:
            return None
        kind, item = found
    file_id = as_str(item.file_id)
    if not file_id:
        return None
    return Media(kind, file_id, as_str(getattr(item, "mime_type", None)), as_str(getattr(item, "file_name", None)))


def _chat_type(chat_type: str) -> str:
    return "group" if chat_type in ("group", "supergroup") else "private"


def _chat_id(address: str) -> int | str:
    return int(address) if address.lstrip("-").isdigit() else address


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _retry_after_seconds(exc: RetryAfter) -> float:
    # PTB 22 returns int or timedelta depending on PTB_TIMEDELTA and warns about the change.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
