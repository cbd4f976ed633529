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
class Place:
    """A location to share (a store): adapters send it as a map pin after the text."""

    latitude: float
    longitude: float
    name: str = ""
    address: str = ""


@dataclass(frozen=True, slots=True)
class Template:
    """A pre-approved WhatsApp template, the only form allowed outside the 24-hour window.

    ``params`` fill the body's {{1}}, {{2}} ... in order.
    """

    name: str
    language: str
    params: tuple[str, ...] = ()


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
    subject: str | None = None  # e-mail subject (other channels ignore it)
    place: Place | None = None  # a location shared after the text
    template: Template | None = None  # WhatsApp: send this approved template instead of the text

    def to_dict(self) -> dict[str, Any]:
        # By hand rather than dataclasses.asdict, which deep-copies: this runs for every message.
        data: dict[str, Any] = {
            "text": self.text,
            "buttons": [{"id": b.id, "label": b.label} for b in self.buttons],
            "style": self.style,
            "list_label": self.list_label,
            "request_location": self.request_location,
            "location_label": self.location_label,
            "transactional": self.transactional,
        }
        if self.subject is not None:
            data["subject"] = self.subject
        if self.place is not None:
            data["place"] = [self.place.latitude, self.place.longitude, self.place.name, self.place.address]
        if self.template is not None:
            data["template"] = {"name": self.template.name, "language": self.template.language, "params": list(self.template.params)}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Outbound":
        data = dict(data)
        data["buttons"] = tuple(Button(**b) for b in data.get("buttons", ()))
        if data.get("place") is not None:
            data["place"] = Place(*data["place"])
        if data.get("template") is not None:
            template = data["template"]
            data["template"] = Template(template["name"], template["language"], tuple(template.get("params", ())))
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
