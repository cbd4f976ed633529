"""The platform-neutral inbound event.

Every adapter in ``integrations/`` turns a platform payload into zero or more
``Inbound`` values; everything after that point (inbox, pipeline, dialogs) is
platform-free. Values are plain, frozen and JSON-serialisable so that they can
be stored and replayed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """What happened, independent of the platform."""

    TEXT = "text"  # typed text (also Viber keyboard replies, which look like text)
    BUTTON = "button"  # a button press carrying our payload
    COMMAND = "command"  # /start, /help ... (Telegram entities, or "/start" typed elsewhere)
    LOCATION = "location"
    MEDIA = "media"  # photo, document, sticker, video, audio
    CONTACT = "contact"
    STARTED = "started"  # Viber conversation_started: may get exactly one reply, in the HTTP response
    SUBSCRIBED = "subscribed"  # Viber subscribed
    UNSUBSCRIBED = "unsubscribed"  # Viber unsubscribed, Telegram my_chat_member -> kicked
    RESUBSCRIBED = "resubscribed"  # Telegram my_chat_member kicked -> member
    RECEIPT = "receipt"  # delivered / read / failed for one of our messages
    EDITED = "edited"  # an edited message: never re-runs a step
    # Not from a platform: the shop or a timer starts a dialog in this conversation
    # (an order survey). ``payload`` is JSON {"dialog": name, "slots": {...}}. It goes
    # through the inbox like a webhook, so it is deduplicated, ordered and durable.
    TRIGGER = "trigger"


@dataclass(frozen=True, slots=True)
class Media:
    """A reference to media the customer sent (the platform keeps the bytes)."""

    type: str  # photo, document, sticker, video, audio, file
    ref: str  # Telegram file_id, WhatsApp media id, Viber media URL
    mime_type: str | None = None
    file_name: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A status for one of *our* outbound messages."""

    platform_message_id: str
    status: str  # sent, delivered, read, failed
    error_code: str | None = None
    error: str | None = None
    # True when the platform says the recipient cannot be reached at all
    # (WhatsApp 131026); the identity is then marked blocked.
    unreachable: bool = False


@dataclass(frozen=True, slots=True)
class Inbound:
    """One event from one customer on one channel.

    ``event_id`` is the platform's idempotency key (update_id, message_token,
    wamid, wamid+status); the inbox deduplicates on (channel, event_id).
    ``address`` is the chat to answer (Telegram chat id, Viber user id,
    WhatsApp wa_id); ``user_id`` is the person when it differs (groups).
    """

    channel: str
    address: str
    event_id: str
    kind: Kind
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    text: str = ""  # text, caption, or command arguments
    payload: str | None = None  # button id pressed
    command: str | None = None  # "start", "help" ... without slash or @botname
    first_name: str | None = None
    language_code: str | None = None
    chat_type: str = "private"  # private or group
    location: tuple[float, float] | None = None
    media: Media | None = None
    contact_phone: str | None = None
    context: str | None = None  # deep-link payload (/start <payload>, Viber context)
    reply_token: str | None = None  # Telegram callback_query id to answer
    receipt: Receipt | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["received_at"] = self.received_at.isoformat()
        data["kind"] = str(self.kind)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Inbound":
        data = dict(data)
        data["kind"] = Kind(data["kind"])
        data["received_at"] = datetime.fromisoformat(data["received_at"])
        if data.get("location") is not None:
            data["location"] = tuple(data["location"])
        if data.get("media") is not None:
            data["media"] = Media(**data["media"])
        if data.get("receipt") is not None:
            data["receipt"] = Receipt(**data["receipt"])
        return cls(**data)
