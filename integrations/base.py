"""The contract every channel adapter fulfils, and the shared degrade helpers.

An adapter is the only place that knows a platform's rules. It verifies a
webhook (constant time, no network), cuts an authentic body into inbox items
(cheap: ids and addresses only), parses one item into an ``Inbound`` (with the
platform library), renders an ``Outbound`` within the platform's ``Limits`` and
sends it. Rendering never fails: too many buttons become a list, then numbered
choices; too long a text is split on word boundaries.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Mapping, Protocol

import aiohttp

from bot.events import Inbound, Kind, Media, Receipt
from bot.messages import Outbound, SendResult

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limits:
    max_text: int  # characters per message
    max_buttons: int  # quick-reply buttons on one message
    max_button_label: int  # characters of a quick-reply label
    max_list_rows: int  # rows of a choice list (0: no list widget)
    max_list_label: int  # characters of a list row title
    max_payload_bytes: int  # bytes of a button id the platform echoes back


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One authentic event cut out of a webhook body, before full parsing.

    ``event_id`` is the deduplication key, ``address`` the conversation it
    belongs to (ordering key), ``body`` the JSON bytes the worker parses.
    ``inline`` marks events whose answer must travel in the HTTP response
    (Viber's conversation_started welcome).
    """

    event_id: str
    address: str
    body: bytes
    inline: bool = False


class WebhookError(Exception):
    """An authentic body that cannot be used; answered 200 and logged."""


class ChannelAdapter(Protocol):
    channel: str
    limits: Limits

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """True when the request provably comes from the platform."""

    def split(self, data: Any) -> list[InboxItem]:
        """Cut a parsed webhook body into inbox items (may be empty).

        Raises ``WebhookError`` for a body of the wrong shape; skips (and logs)
        single elements whose ids or addresses are not usable strings.
        """

    def parse(self, body: bytes) -> Inbound | None:
        """Parse one inbox item; ``None`` for an event ignored or unusable.

        Never raises, and every field of the result has its declared type
        (see ``checked_parse``).
        """

    def render(self, address: str, out: Outbound) -> list[dict[str, Any]]:
        """The API calls (one dict each, with a ``method`` key) that deliver ``out``."""

    async def send(self, address: str, out: Outbound, *, start_part: int = 0) -> SendResult:
        """Deliver ``out``, skipping parts already accepted."""

    async def acknowledge(self, event: Inbound) -> None:
        """Platform courtesy after handling an event (Telegram answerCallbackQuery)."""

    def webhook_reply(self, out: Outbound) -> dict[str, Any] | None:
        """The HTTP response body carrying ``out`` for inline events, if supported."""

    async def register_webhook(self, url: str) -> str:
        """Register ``url`` with the platform; returns a line for the operator."""

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Acquire network resources (called from the app's cleanup context)."""

    async def close(self) -> None:
        """Release them."""


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters.

    Prefers paragraph, then line, then word boundaries; only a single word
    longer than the limit is cut inside.
    """
    if len(text) <= limit:
        return [text]
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = window.rfind(sep, 0, limit + 1)
            if cut > 0:
                break
        if cut <= 0:
            chunks.append(rest[:limit])
            rest = rest[limit:]
            continue
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        chunks.append(rest)
    return [c for c in chunks if c]


def numbered_choices(out: Outbound) -> str:
    """The text of ``out`` followed by its buttons as a numbered list.

    The numbers follow the button order, so a typed "2" is resolved by the
    core exactly like a press of the second button on any platform.
    """
    if not out.buttons:
        return out.text
    lines = [out.text, ""] + [f"{i}. {b.label}" for i, b in enumerate(out.buttons, 1)]
    return "\n".join(lines)


def truncate(label: str, limit: int) -> str:
    """Shorten a label to ``limit`` characters with an ellipsis."""
    return label if len(label) <= limit else label[: max(1, limit - 1)].rstrip() + "…"


def button_token(button_id: str, index: int, max_bytes: int) -> str:
    """The payload to put on a button: its id, or ``#n`` when the id is too long.

    ``#n`` (1-based) is resolved by the core against the choices it offered.
    """
    return button_id if len(button_id.encode()) <= max_bytes else f"#{index + 1}"


# --- helpers shared by the adapters (added with the platform adapters) ---

# Neutral filler where a platform refuses an empty text (a dialog bug, but a
# send must never fail on it); no language, so no locale entry is needed.
PLACEHOLDER = "…"


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit Telegram counts in."""
    return len(text.encode("utf-16-le")) // 2


def split_text_within(text: str, limit: int, measure: Callable[[str], int], max_measure: int) -> list[str]:
    """Like ``split_text``, but every chunk also satisfies ``measure(chunk) <= max_measure``.

    Platforms count in units other than Python characters (Telegram: UTF-16
    code units, Viber: bytes of the whole request), so a chunk that fits by
    characters is split again, on the same boundaries, until it fits by measure.
    """
    chunks: list[str] = []
    for chunk in split_text(text, limit):
        size = measure(chunk)
        if size <= max_measure or len(chunk) <= 1:
            chunks.append(chunk)
            continue
        smaller = max(1, min(len(chunk) - 1, len(chunk) * max_measure // size))
        chunks.extend(split_text_within(chunk, smaller, measure, max_measure))
    return chunks


def split_tail(text: str, limit: int) -> tuple[str, str]:
    """Cut ``text`` into (head, tail) with ``len(tail) <= limit``, on a boundary.

    Used where only the last part of a long text may carry the widget and the
    widget's own text field is shorter than a plain message (WhatsApp's
    1024-character interactive body): the head goes first as plain text.
    """
    if len(text) <= limit:
        return "", text
    start = len(text) - limit
    for sep in ("\n\n", "\n", " "):
        # The earliest separator whose remainder still fits gives the longest tail.
        cut = text.find(sep, start - len(sep))
        if cut > 0:
            head, tail = text[:cut].rstrip(), text[cut:].lstrip()
            if tail and len(tail) <= limit:
                return head, tail
    return text[:start], text[start:]


def slash_command(text: str) -> tuple[str, str] | None:
    """``("start", "promo")`` for "/start promo" typed as text; ``None`` if not a command.

    Viber and WhatsApp have no command entities, so a leading "/" is the only
    signal. The command is lower-cased and loses an ``@botname`` suffix.
    """
    if not text.startswith("/"):
        return None
    head, _, rest = text.partition(" ")
    command = head[1:].split("@", 1)[0].lower()
    if not command:
        return None
    return command, rest.strip()


def first_word(name: Any) -> str | None:
    """The first word of a display name ("Alice Novak" -> "Alice"); ``None`` for a non-name."""
    words = name.split() if isinstance(name, str) else []
    return as_str(words[0], MAX_NAME) if words else None


async def deliver_parts(
    parts: list[dict[str, Any]],
    start_part: int,
    post: Callable[[dict[str, Any]], Awaitable[SendResult]],
) -> SendResult:
    """Post ``parts[start_part:]`` in order, stopping at the first part not sent.

    ``parts_sent`` counts from the first part overall, so the caller can store
    it and resume after a retry without sending an accepted part twice.
    """
    last_id: str | None = None
    for index in range(start_part, len(parts)):
        result = await post(parts[index])
        if result.status != "sent":
            return dataclasses.replace(result, parts_sent=index)
        last_id = result.platform_message_id
    return SendResult("sent", platform_message_id=last_id, parts_sent=len(parts))


# --- defensive reading of authentic but malformed input ----------------------
#
# A body that passed verify() is still only as well-formed as the platform (or
# whoever holds the secret) made it. The contract: nothing raises into the
# webhook handler, nothing mistyped reaches the inbox or the dialogs.

MAX_ADDRESS = 128  # characters of a platform user / chat id we accept
MAX_EVENT_ID = 256  # characters of a platform message id (WhatsApp wamid)
MAX_NAME = 256  # characters of a display name; longer is not a name
MAX_LANGUAGE = 35  # characters of a language tag (BCP 47 practical maximum)
INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time ``given == expected``; False when either is missing or empty.

    aiohttp decodes header bytes with surrogateescape, so a header may carry
    lone surrogates that a plain ``.encode()`` refuses with UnicodeEncodeError
    (a 500 instead of a 401/403); such a value is simply not the secret.
    """
    if not isinstance(given, str) or not given or not expected:
        return False
    encoding = ("utf-8", "surrogateescape")  # the bytes as they arrived, where aiohttp could not decode them
    try:
        return hmac.compare_digest(given.encode(*encoding), expected.encode(*encoding))
    except UnicodeEncodeError:  # surrogates outside the surrogateescape range
        return False


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (so ``.get`` chains cannot raise)."""
    return value if isinstance(value, dict) else {}


def as_str(value: Any, limit: int | None = None) -> str | None:
    """``value`` if it is a string of at most ``limit`` characters, else ``None``."""
    if not isinstance(value, str) or (limit is not None and len(value) > limit):
        return None
    return value


def as_int(value: Any, low: int = INT64_MIN, high: int = INT64_MAX) -> int | None:
    """``value`` if it is an integer within [low, high]; ``None`` for bools, floats and the rest."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def as_address(value: Any) -> str | None:
    """A usable platform user / chat id: a non-empty string of at most ``MAX_ADDRESS`` characters."""
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ADDRESS else None


def as_coordinates(latitude: Any, longitude: Any) -> tuple[float, float] | None:
    """(lat, lon) as floats when both are finite numbers on the globe, else ``None``."""
    numbers = []
    for value, bound in ((latitude, 90.0), (longitude, 180.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        number = float(value)
        if not math.isfinite(number) or abs(number) > bound:
            return None
        numbers.append(number)
    return numbers[0], numbers[1]


def visible(text: str | None, filler: str = PLACEHOLDER) -> str:
    """``text``, or ``filler`` when it is empty or whitespace (platforms reject both)."""
    return text if text and text.strip() else filler


def checked_parse(channel: str, parse: Callable[[bytes], Inbound | None], body: bytes) -> Inbound | None:
    """Run an adapter's parser so that an odd body yields ``None``: never an exception, never a mistyped event.

    Platform libraries build objects from whatever JSON they are given and
    fail in arbitrary ways on odd types; the adapters read fields defensively,
    and this is the net under both.
    """
    try:
        event = parse(body)
    except Exception as exc:  # noqa: BLE001 - any failure here means "unusable event"
        log.warning("inbound.unparsable channel=%s error=%r", channel, exc)
        return None
    if event is not None and not well_typed(event):
        log.warning("inbound.mistyped channel=%s event_id=%r", channel, event.event_id)
        return None
    return event


_OPTIONAL_TEXT = ("payload", "command", "first_name", "language_code", "contact_phone", "context", "reply_token")


def well_typed(event: Inbound) -> bool:
    """True when every field of ``event`` has the type (and range) ``Inbound`` promises."""
    if not (
        isinstance(event.channel, str)
        and as_address(event.address) is not None
        and isinstance(event.event_id, str)
        and 0 < len(event.event_id) <= 2 * MAX_EVENT_ID
        and isinstance(event.kind, Kind)
        and isinstance(event.received_at, datetime)
        and event.received_at.tzinfo is not None
        and isinstance(event.text, str)
        and event.chat_type in ("private", "group")
    ):
        return False
    if any(getattr(event, name) is not None and not isinstance(getattr(event, name), str) for name in _OPTIONAL_TEXT):
        return False
    if event.location is not None and (
        not isinstance(event.location, tuple)
        or len(event.location) != 2
        or not all(type(v) is float for v in event.location)
        or as_coordinates(*event.location) is None
    ):
        return False
    media = event.media
    if media is not None and not (
        isinstance(media, Media)
        and isinstance(media.type, str)
        and isinstance(media.ref, str)
        and media.ref
        and all(v is None or isinstance(v, str) for v in (media.mime_type, media.file_name))
    ):
        return False
    receipt = event.receipt
    if receipt is not None and not (
        isinstance(receipt, Receipt)
        and isinstance(receipt.platform_message_id, str)
        and receipt.platform_message_id
        and isinstance(receipt.status, str)
        and all(v is None or isinstance(v, str) for v in (receipt.error_code, receipt.error))
        and isinstance(receipt.unreachable, bool)
    ):
        return False
    return True
