"""The platform-neutral outbound message.

Dialogs produce ``Outbound`` values; each adapter renders them within its own
limits (button counts, title lengths, callback-data bytes, text length) and
degrades instead of failing: a list, pages, or numbered choices. Button order
is significant: when an adapter falls back to numbered choices, "1" is the
first button, and the core resolves a typed number against the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Button:
    id: str  # what comes back when pressed; short, ASCII
    label: str  # localised text shown to the customer


@dataclass(frozen=True, slots=True)
class Outbound:
    text: str
    buttons: tuple[Button, ...] = ()
    # "buttons": quick replies; "list": a choice list (WhatsApp list message,
    # a vertical keyboard elsewhere). Adapters may pick "list" themselves
    # when there are more buttons than quick replies allow.
    style: str = "buttons"
    list_label: str | None = None  # the button that opens a WhatsApp list, e.g. "Choose"
    request_location: bool = False  # ask the client to share its location
    location_label: str | None = None  # label of the "share location" button
    transactional: bool = False  # replies and receipts; marketing caps never apply

    def to_dict(self) -> dict[str, Any]:
        # By hand rather than dataclasses.asdict, which deep-copies: this runs for every message.
        return {
            "text": self.text,
            "buttons": [{"id": b.id, "label": b.label} for b in self.buttons],
            "style": self.style,
            "list_label": self.list_label,
            "request_location": self.request_location,
            "location_label": self.location_label,
            "transactional": self.transactional,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Outbound":
        data = dict(data)
        data["buttons"] = tuple(Button(**b) for b in data.get("buttons", ()))
        return cls(**data)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened when an adapter tried to deliver one ``Outbound``.

    status:
      * ``sent``: every part accepted; ``platform_message_id`` is the last part's id.
      * ``retry``: transient (5xx, timeout, 429); ``retry_after`` seconds when the
        platform named it, and ``scope`` ("chat" or "channel") tells what to slow.
      * ``blocked``: the recipient blocked us / unsubscribed; never send again.
      * ``failed``: permanent for this message (bad request); do not retry.
    ``parts_sent`` counts parts already accepted (long texts are split), so a
    retry resumes after them instead of sending them twice.
    """

    status: str
    platform_message_id: str | None = None
    retry_after: float | None = None
    scope: str = "chat"
    error: str | None = None
    parts_sent: int = 0
