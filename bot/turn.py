"""The seam between the pipeline and the dialogs: a snapshot in, changes out.

As in rasa-sdk, a dialog turn is a function of a snapshot (the event, the
conversation state, the customer) that returns the messages to send, the new
state and a list of effects. The pipeline persists all of it in one unit of
work, so dialogs never touch the database, the network or a platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.events import Inbound
from bot.messages import Outbound


@dataclass(slots=True)
class ConversationState:
    """What the bot remembers about one conversation (channel + address)."""

    dialog: str | None = None  # active dialog, None when idle
    step: str | None = None  # active step of that dialog
    slots: dict[str, Any] = field(default_factory=dict)  # the dialog's answers so far
    locale: str | None = None
    mode: str = "bot"  # "bot" or "agent" (a person has taken over; the bot stays silent)
    offered: list[dict[str, str]] = field(default_factory=list)  # buttons of the last question
    misses: int = 0  # consecutive answers that matched nothing
    version: int = 0  # optimistic-concurrency token, bumped on every save


@dataclass(frozen=True, slots=True)
class ConsentState:
    purpose: str
    channel: str
    granted: bool
    updated_at: datetime
    wording_version: str


@dataclass(frozen=True, slots=True)
class CustomerSnapshot:
    id: int
    first_name: str | None
    locale: str | None
    channel: str  # the channel of this conversation
    consents: tuple[ConsentState, ...] = ()
    is_new: bool = False  # the identity was first seen with this event

    def consent(self, purpose: str, channel: str | None = None) -> ConsentState | None:
        channel = channel or self.channel
        return next((c for c in self.consents if c.purpose == purpose and c.channel == channel), None)


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """Append one row to the consent log."""

    purpose: str
    channel: str
    granted: bool
    source: str  # e.g. "signup", "privacy", "stop", "platform"
    wording_version: str


@dataclass(frozen=True, slots=True)
class SetCustomer:
    """Update profile fields of the customer (None leaves a field alone)."""

    locale: str | None = None
    first_name: str | None = None


@dataclass(frozen=True, slots=True)
class SetIdentity:
    """Update the channel identity of this conversation."""

    blocked: bool | None = None
    deep_link: str | None = None


Effect = ConsentChange | SetCustomer | SetIdentity


@dataclass(slots=True)
class TurnResult:
    state: ConversationState
    messages: list[Outbound] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TurnInput:
    event: Inbound
    state: ConversationState
    customer: CustomerSnapshot
