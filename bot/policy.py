"""Whether, when and where a touchpoint may reach a customer: pure functions, no I/O.

The push service loads the facts (consents, identities, recent sends) and asks
these functions; the dry-run endpoint asks the same ones without sending, so
"why did this customer get nothing" has one answer. Every refusal is a short
reason code that ends up in the push's status history.

Times are aware datetimes in UTC; the customer's own time zone only decides
quiet hours, so a daylight-saving change moves the quiet window with the clock
on the customer's wall, not with UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.config import Caps, Policy, QuietHours

WHATSAPP_WINDOW = timedelta(hours=24)  # ../shared/PLATFORMS.md: free-form messages only within it
DAY = timedelta(days=1)
WEEK = timedelta(days=7)

# Reason codes (also documented in the README's push status table).
NO_CONSENT = "no_consent"
BLOCKED = "blocked"
NO_IDENTITY = "no_identity"
WINDOW_CLOSED = "whatsapp_window_closed"
CHANNEL_DISABLED = "channel_disabled"
QUIET_HOURS = "quiet_hours"
CAP_DAY = "frequency_cap_day"
CAP_WEEK = "frequency_cap_week"
NO_CHANNEL = "no_channel"
STOPPED = "stopped"
ERASED = "erased"


def zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The customer's zone, or the shop's default when missing or unknown (never raises)."""
    for candidate in (name, default, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def quiet_until(now: datetime, tz: ZoneInfo, quiet: QuietHours) -> datetime | None:
    """When the quiet hours around ``now`` end (UTC), or None when ``now`` is not quiet.

    The window may span midnight (21:00-09:00). Wall-clock times are resolved
    in ``tz`` on the day they fall, so the end moves with a DST change.
    """
    start, end = _clock(quiet.start), _clock(quiet.end)
    if start == end:
        return None
    local = now.astimezone(tz)
    wall = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= wall < end
        end_day = local.date()
    else:
        inside = wall >= start or wall < end
        end_day = local.date() + timedelta(days=1) if wall >= start else local.date()
    if not inside:
        return None
    ends = datetime.combine(end_day, end).replace(tzinfo=tz)
    # A wall time skipped by a DST jump does not exist; zoneinfo maps it past the gap.
    return ends.astimezone(timezone.utc)


def cap_reason(marketing_sent_at: Sequence[datetime], now: datetime, caps: Caps) -> tuple[str, datetime] | None:
    """(reason, when it frees up) if one more marketing send would break a cap, else None.

    Rolling windows: "2 a day" means at most 2 within any 24 hours.
    """
    for limit, window, reason in ((caps.per_day, DAY, CAP_DAY), (caps.per_week, WEEK, CAP_WEEK)):
        recent = sorted(t for t in marketing_sent_at if now - window < t <= now)
        if len(recent) >= limit:
            if limit == 0:
                return reason, now + window
            # The window frees when the oldest send that keeps it full drops out.
            return reason, recent[len(recent) - limit] + window
    return None


@dataclass(frozen=True, slots=True)
class Reachable:
    """One way to reach the customer, with the facts the channel choice needs."""

    channel: str
    address: str
    consented: bool  # the touchpoint's purpose is granted on this channel
    blocked: bool = False
    last_inbound_at: datetime | None = None  # WhatsApp's 24-hour window
    stopped: bool = False  # the customer said STOP here: reported as such rather than as missing consent


@dataclass(frozen=True, slots=True)
class Route:
    channel: str
    address: str
    form: str  # "text" or "template"


@dataclass(slots=True)
class ChannelPlan:
    routes: list[Route] = field(default_factory=list)  # in the order to try
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (channel, reason)


def channel_order(preferred: str | None, fallback: Sequence[str]) -> list[str]:
    """The preferred channel first, then the configured fallback order, each once."""
    ordered = [preferred, *fallback] if preferred else list(fallback)
    return [c for i, c in enumerate(ordered) if c and c not in ordered[:i]]


def plan_channels(
    reachable: Sequence[Reachable],
    *,
    preferred: str | None,
    policy: Policy,
    now: datetime,
    has_template: bool,
    enabled: Sequence[str] | None = None,
) -> ChannelPlan:
    """Every channel the touchpoint may use, best first, and why the others are out.

    WhatsApp outside the 24-hour window is allowed only as an approved template.
    """
    plan = ChannelPlan()
    by_channel: dict[str, list[Reachable]] = {}
    for item in reachable:
        by_channel.setdefault(item.channel, []).append(item)
    for channel in channel_order(preferred, policy.fallback_order):
        if enabled is not None and channel not in enabled:
            if channel in by_channel and not plan.routes:  # after a usable channel it does not matter
                plan.skipped.append((channel, CHANNEL_DISABLED))
            continue
        candidates = by_channel.get(channel)
        if not candidates:
            continue
        # The most recently active identity of that channel first.
        candidates = sorted(candidates, key=lambda r: r.last_inbound_at or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
        reason = None
        for item in candidates:
            if item.blocked:
                reason = BLOCKED
            elif not item.consented:
                reason = reason or (STOPPED if item.stopped else NO_CONSENT)
            elif channel == "whatsapp" and not _window_open(item.last_inbound_at, now):
                if has_template:
                    plan.routes.append(Route(channel, item.address, "template"))
                    reason = None
                    break
                reason = WINDOW_CLOSED
            else:
                plan.routes.append(Route(channel, item.address, "text"))
                reason = None
                break
        if reason and not plan.routes:  # held back before the first usable channel; later ones do not matter
            plan.skipped.append((channel, reason))
    return plan


def _window_open(last_inbound_at: datetime | None, now: datetime) -> bool:
    return last_inbound_at is not None and now - last_inbound_at < WHATSAPP_WINDOW
