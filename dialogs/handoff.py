"""Talk to a person: the conversation switches to agent mode and the bot falls silent.

Started by the ``human`` command (or its intent), the menu (button id
"handoff"), the complaint dialog (slots ``ticket`` and ``reason``) and the
engine's own "talk to a person" offer after two misunderstandings. Every one
of these is the customer asking for a person, so nobody is asked to confirm:
the handover happens at once.

The customer is told when to expect an answer, from the support hours in
the shop's config, in the support team's time zone; the engine keeps the bot
quiet in agent mode (``DialogEngine._silent``) until a person hands back.
"""

from __future__ import annotations

from datetime import datetime, timezone
from math import ceil

from babel.dates import format_time

from bot.dialog import Context, Dialog, Transition, end
from bot.support_hours import is_open, next_opening, next_reply_at
from bot.turn import Handoff

CUSTOMER_REQUEST = "customer_request"


def _hand_over(ctx: Context) -> Transition:
    ticket = ctx.slots.get("ticket")
    reason = ctx.slots.get("reason") or ("complaint" if ticket else CUSTOMER_REQUEST)
    ctx.state.mode = "agent"
    ctx.emit(Handoff(ticket=ticket, reason=reason))
    parts = [
        ctx.t("handoff.passed_ticket", ticket=ticket) if ticket else ctx.t("handoff.passed"),
        expected_reply(ctx),
        ctx.t("handoff.quiet", stop=ctx.command_word("stop")),
    ]
    ctx.say_text("\n\n".join(parts))
    # Nothing to resume: re-asking an interrupted question would break the promised silence.
    return end(resume=False)


def expected_reply(ctx: Context) -> str:
    """ "within about 60 minutes", or "on Monday from 09:00" outside opening hours."""
    support = ctx.config.support
    now = ctx.now if ctx.now.tzinfo else ctx.now.replace(tzinfo=timezone.utc)
    if is_open(support, now):
        minutes = max(1, ceil((next_reply_at(support, now) - now).total_seconds() / 60))
        return ctx.tn("handoff.reply_within", "handoff.reply_within.plural", minutes)
    opening = next_opening(support, now)
    if opening is None:
        return ctx.t("handoff.reply_later")
    time = _time(ctx, opening)
    days_ahead = (opening.date() - now.astimezone(opening.tzinfo).date()).days
    if days_ahead == 0:
        return ctx.t("handoff.reply_today", time=time)
    if days_ahead == 1:
        return ctx.t("handoff.reply_tomorrow", time=time)
    weekday = ctx.i18n.format_date(ctx.locale, opening, "EEEE")
    return ctx.t("handoff.reply_on_day", day=weekday, time=time)


def _time(ctx: Context, moment: datetime) -> str:
    """A wall time as the customer's language writes it ("9:00 AM", "09:00"), in ``moment``'s zone."""
    return format_time(moment, "short", tzinfo=moment.tzinfo, locale=ctx.locale)


HANDOFF = Dialog(
    name="handoff",
    commands=("human",),
    begin=_hand_over,
)
