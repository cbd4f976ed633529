"""The seam between the pipeline and the dialogs: a snapshot in, changes out.

As in rasa-sdk, a dialog turn is a function of a snapshot (the event, the
conversation state, the customer) that returns the messages to send, the new
state and a list of effects. The pipeline persists all of it in one unit of
work, so dialogs never touch the database, the network or a platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

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
    # The customer's previous message in this conversation (before this event): a flow
    # left for longer than the configured resume time restarts instead of resuming.
    last_inbound_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ConsentState:
    purpose: str
    channel: str
    granted: bool
    updated_at: datetime
    wording_version: str


@dataclass(frozen=True, slots=True)
class CodeState:
    """A discount code the customer holds that is still usable (not redeemed, not expired)."""

    code: str
    category: str
    percent: int
    expires_at: datetime
    source: str  # welcome, loyalty, survey, campaign
    reference: str | None = None  # what a once-only code was issued for ("survey:order_feedback:A-1001")


@dataclass(frozen=True, slots=True)
class CustomerSnapshot:
    id: int
    first_name: str | None
    locale: str | None
    channel: str  # the channel of this conversation
    consents: tuple[ConsentState, ...] = ()
    is_new: bool = False  # the identity was first seen with this event
    categories: tuple[str, ...] = ()  # favourite category ids, in the order picked
    codes: tuple[CodeState, ...] = ()  # usable codes only
    # The shop's own facts about the customer (shop API upsert): "order_count",
    # "customer_since" (ISO date) and anything else the shop sends.
    attributes: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    marketing_paused_until: datetime | None = None

    def code_for(self, category: str) -> CodeState | None:
        return next((c for c in self.codes if c.category == category), None)

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


@dataclass(frozen=True, slots=True)
class SaveCategories:
    """Replace the customer's favourite categories (ids, in the order picked)."""

    categories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IssueCode:
    """Store a discount code the dialog generated (``bot.codes.new_code``) and already told the customer.

    ``reference`` makes an issue once-only: the store keeps one code per
    (customer, source, reference), e.g. the survey reward of one order.
    """

    code: str
    category: str
    percent: int
    expires_at: datetime
    source: str
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class OpenTicket:
    """A complaint or a request for a person; ``number`` is short and shown to the customer."""

    number: str
    kind: str  # discount_low, coupon_failed, delivery, quality, other, handoff
    description: str = ""
    order_number: str | None = None
    attachments: tuple[dict[str, Any], ...] = ()  # {"type", "ref", "mime_type", "file_name"}
    refund_requested: bool = False


@dataclass(frozen=True, slots=True)
class Handoff:
    """A person takes over: the conversation's mode is "agent" and the ticket waits for one.

    The dialog also sets ``state.mode = "agent"``; ``ticket`` names the ticket
    that waits (None: the store opens a "handoff" ticket).
    """

    ticket: str | None = None
    reason: str = "customer_request"


@dataclass(frozen=True, slots=True)
class SurveyAnswer:
    """One answer of a running survey; partial answers are kept."""

    survey: str
    order: str
    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class SurveyStatus:
    """The survey of one order ended: "completed" or "expired" (started rows are created by the trigger)."""

    survey: str
    order: str
    status: str


@dataclass(frozen=True, slots=True)
class PauseMarketing:
    """Withdraw every granted marketing purpose on every channel until ``until``; restored by itself."""

    until: datetime


@dataclass(frozen=True, slots=True)
class SendMyData:
    """Send the customer a readable summary of everything stored about them (built by the store)."""


@dataclass(frozen=True, slots=True)
class EraseCustomer:
    """Erase the customer's personal data everywhere; only an anonymised consent-withdrawn record stays."""


Effect = (
    ConsentChange
    | SetCustomer
    | SetIdentity
    | SaveCategories
    | IssueCode
    | OpenTicket
    | Handoff
    | SurveyAnswer
    | SurveyStatus
    | PauseMarketing
    | SendMyData
    | EraseCustomer
)


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
