"""Complaint intake: kind, order number, description, attachments, summary, ticket, follow-up.

Started from the menu, the ``complaint`` command, or free text the intent
matcher reads as a complaint. A sentence that started it ("my coupon didn't
work") is kept as a draft description: the customer is shown it and may keep
it or type a fuller one, so nobody has to repeat themselves.

Photos and documents are welcome at every step before the summary (people
send the screenshot first); only the platform's media reference is stored.

After "Send" the ticket exists; the rules in ``bot.complaints`` decide the
follow-up: a coupon that did not work opens a refund request, a loyal
customer is offered a loyalty code on one category (unless one is still
usable: a complaint is not a way to collect codes), and everyone is offered
a person, which hands the conversation over with this ticket.
"""

from __future__ import annotations

from typing import Any

from bot.codes import code_link
from bot.complaints import (
    KINDS,
    LOYALTY_SOURCE,
    clean_order_number,
    follow_up,
    loyalty_code,
    new_ticket_number,
    valid_order_number,
)
from bot.dialog import (
    NO,
    YES,
    Choice,
    Context,
    Dialog,
    Step,
    Transition,
    button,
    choice_id,
    end,
    go,
    literal_button,
    normalise,
    split_choice_id,
    switch,
)
from bot.events import Kind
from bot.turn import OpenTicket

ATTACHABLE = ("photo", "document", "file", "video")  # stickers and voice notes are no evidence
MAX_ATTACHMENTS = 5
MAX_LOYALTY_CATEGORIES = 9  # plus "No thanks": a WhatsApp list holds 10 rows
MIN_DRAFT_WORDS = 2  # "complaint" or "problem" alone started the dialog; it describes nothing

SEND = choice_id("send", "complaint")
CANCEL = choice_id("cancel", "complaint")
SKIP_ORDER = choice_id("skip", "order")
KEEP_DESCRIPTION = choice_id("keep", "description")
NO_ATTACHMENT = choice_id("skip", "attachment")
ATTACHMENTS_DONE = choice_id("done", "attachment")
NO_LOYALTY = choice_id(NO, "loyalty")
TALK_TO_PERSON = choice_id("handoff", "complaint")
ALL_DONE = choice_id("done", "complaint")
EDITABLE = ("kind", "order", "description")


def _begin(ctx: Context) -> Transition:
    ctx.slots.setdefault("attachments", [])
    ctx.slots.setdefault("order_number", None)
    draft = _typed_draft(ctx)
    if draft:
        ctx.slots["description"] = draft
    ctx.say("complaint.intro")
    return go("kind") if ctx.slots.get("kind") not in KINDS else go("order")


def _typed_draft(ctx: Context) -> str | None:
    """The sentence the customer started with, when it says more than the command word."""
    event = ctx.event
    if event.kind not in (Kind.TEXT, Kind.COMMAND):
        return None
    text = event.text.strip()
    if event.kind is Kind.TEXT and text.startswith("/"):
        text = text.partition(" ")[2].strip()  # "/complaint my coupon failed"
    if len(normalise(text).split()) < MIN_DRAFT_WORDS:
        return None
    words = {normalise(w) for lang in ctx.config.locales for w in ctx.i18n.words(lang, "commands.complaint")}
    return None if normalise(text) in words else text


def _next(ctx: Context, step: str) -> Transition:
    """Go on to ``step``, or back to the summary when the customer came from there to edit."""
    return go("summary") if ctx.slots.get("editing") else go(step)


def _attachments(ctx: Context) -> list[dict[str, Any]]:
    return ctx.slots.setdefault("attachments", [])


def _keep_media(ctx: Context) -> bool | None:
    """Store this event's photo or document: True when stored, False when there is no room
    (the customer is told), None when the event is not one."""
    media = ctx.event.media
    if ctx.event.kind is not Kind.MEDIA or media is None or media.type not in ATTACHABLE:
        return None
    attachments = _attachments(ctx)
    if len(attachments) >= MAX_ATTACHMENTS:
        ctx.say("complaint.attachments_full")
        return False
    attachments.append(
        {"type": media.type, "ref": media.ref, "mime_type": media.mime_type, "file_name": media.file_name}
    )
    return True


def _media_aside(ctx: Context, step: str) -> Transition | None:
    """A photo sent while another question is open: keep it, say so, ask the question again."""
    kept = _keep_media(ctx)
    if kept is None:
        return None
    if kept:
        ctx.say("complaint.attachment_kept")
    return go(step)


# ----------------------------------------------------------------------------- kind


def _kind_prompt(ctx: Context) -> None:
    buttons = [button(choice_id("kind", kind), f"complaint.kind.{kind}") for kind in KINDS]
    ctx.ask("complaint.kind_question", buttons, coupon=ctx.t("complaint.kind.coupon_failed"))


def _kind_chosen(ctx: Context, choice: str) -> Transition:
    _, kind = split_choice_id(choice)
    ctx.slots["kind"] = kind if kind in KINDS else "other"
    return _next(ctx, "order")


# ----------------------------------------------------------------------------- order number


def _order_prompt(ctx: Context) -> None:
    skip = button(SKIP_ORDER, "complaint.skip", means=NO)  # "no" / "nope": there is no order number
    ctx.ask("complaint.order_question", [skip], skip=ctx.t("complaint.skip"))


def _order_chosen(ctx: Context, choice: str) -> Transition:
    ctx.slots["order_number"] = None
    return _next(ctx, "description")


def _order_typed(ctx: Context) -> Transition | None:
    if ctx.event.kind is not Kind.TEXT:
        return _media_aside(ctx, "order")
    number = clean_order_number(ctx.event.text)
    if not valid_order_number(ctx.config, number):
        ctx.say("complaint.order_invalid", skip=ctx.t("complaint.skip"))
        return go("order")
    ctx.slots["order_number"] = number
    return _next(ctx, "description")


# ----------------------------------------------------------------------------- description


def _description_prompt(ctx: Context) -> None:
    current = ctx.slots.get("description")
    if current:
        keep = ctx.t("complaint.keep")
        ctx.ask(
            "complaint.description_draft",
            [button(KEEP_DESCRIPTION, "complaint.keep", means=YES)],
            text=current,
            keep=keep,
        )
    else:
        ctx.ask("complaint.description_question", [])


def _description_chosen(ctx: Context, choice: str) -> Transition:
    return _next(ctx, "attachment")


def _description_typed(ctx: Context) -> Transition | None:
    event = ctx.event
    if event.kind is Kind.TEXT and event.text.strip():
        ctx.slots["description"] = event.text.strip()
        return _next(ctx, "attachment")
    if event.kind is Kind.MEDIA and event.text.strip() and _keep_media(ctx) is not None:
        ctx.slots["description"] = event.text.strip()  # the caption says what the photo shows
        return _next(ctx, "attachment")
    return _media_aside(ctx, "description")


# ----------------------------------------------------------------------------- attachments


def _attachment_prompt(ctx: Context) -> None:
    count = len(_attachments(ctx))
    if count == 0:
        skip = button(NO_ATTACHMENT, "complaint.no_attachment", means=NO)
        ctx.ask("complaint.attachment_question", [skip], skip=ctx.t("complaint.no_attachment"))
    else:
        done = button(ATTACHMENTS_DONE, "buttons.done", means=YES)
        text = ctx.tn(
            "complaint.attachment_more", "complaint.attachment_more.plural", count, done=ctx.t("buttons.done")
        )
        ctx.ask_text(text, [done])


def _attachment_chosen(ctx: Context, choice: str) -> Transition:
    return go("summary")


def _attachment_sent(ctx: Context) -> Transition | None:
    if _keep_media(ctx) is None:
        return None
    return go("summary") if len(_attachments(ctx)) >= MAX_ATTACHMENTS else go("attachment")


# ----------------------------------------------------------------------------- summary


def _summary_prompt(ctx: Context) -> None:
    slots = ctx.slots
    order = slots.get("order_number")
    count = len(_attachments(ctx))
    lines = [
        ctx.t("complaint.summary_title"),
        "",
        ctx.t("complaint.summary_kind", kind=ctx.t(f"complaint.kind.{slots.get('kind', 'other')}")),
        ctx.t("complaint.summary_order", order=order) if order else ctx.t("complaint.summary_no_order"),
        ctx.t("complaint.summary_description", description=slots.get("description", "")),
        ctx.tn("complaint.summary_attachments", "complaint.summary_attachments.plural", count)
        if count
        else ctx.t("complaint.summary_no_attachments"),
    ]
    buttons: list[Choice] = [
        button(SEND, "complaint.send", means=YES),
        button(choice_id("edit", "kind"), "complaint.edit_kind"),
        button(choice_id("edit", "order"), "complaint.edit_order"),
        button(choice_id("edit", "description"), "complaint.edit_description"),
        button(CANCEL, "complaint.cancel"),
    ]
    ctx.ask_text("\n".join(lines), buttons)


def _summary_chosen(ctx: Context, choice: str) -> Transition:
    action, subject = split_choice_id(choice)
    if choice == CANCEL:
        ctx.say("complaint.cancelled", complaint=ctx.command_word("complaint"))
        return end()
    if action == "edit" and subject in EDITABLE:
        ctx.slots["editing"] = True
        return go(subject)
    if choice == SEND:
        return _send(ctx)
    return go("summary")


def _send(ctx: Context) -> Transition:
    slots = ctx.slots
    kind = slots.get("kind", "other")
    number = new_ticket_number()
    rules = follow_up(ctx.config, kind, ctx.customer.attributes, ctx.customer.created_at, ctx.now)
    ctx.emit(
        OpenTicket(
            number=number,
            kind=kind,
            description=slots.get("description", ""),
            order_number=slots.get("order_number"),
            attachments=tuple(_attachments(ctx)),
            refund_requested=rules.refund,
        )
    )
    # What is left of the dialog is the follow-up about this ticket.
    ctx.state.slots[ctx.state.dialog or "complaint"] = {"ticket": number}
    parts = [ctx.t("complaint.sent", number=number)]
    if rules.refund:
        parts.append(ctx.t("complaint.refund"))
    ctx.say_text("\n\n".join(parts))
    if rules.loyalty_percent and _may_offer_loyalty(ctx):
        ctx.slots.update(loyalty_percent=rules.loyalty_percent, loyalty_days=rules.loyalty_valid_days)
        return go("loyalty")
    return go("person")


def _may_offer_loyalty(ctx: Context) -> bool:
    holds_one = any(code.source == LOYALTY_SOURCE for code in ctx.customer.codes)
    return bool(_loyalty_categories(ctx)) and not holds_one


# ----------------------------------------------------------------------------- loyalty offer


def _loyalty_categories(ctx: Context) -> list[str]:
    """Favourites first, then the catalog; never a category the customer already holds a valid code for."""
    favourites = [c for c in ctx.customer.categories if ctx.config.category(c) is not None]
    ordered = favourites + [c.id for c in ctx.config.categories if c.id not in favourites]
    return [c for c in ordered if ctx.customer.code_for(c) is None]


def _loyalty_prompt(ctx: Context) -> None:
    categories = [ctx.config.category(c) for c in _loyalty_categories(ctx)[:MAX_LOYALTY_CATEGORIES]]
    buttons = [literal_button(choice_id("loyalty", c.id), ctx.local(c.name)) for c in categories if c]
    buttons.append(button(NO_LOYALTY, "complaint.no_thanks", means=NO))
    percent = ctx.percent(ctx.slots.get("loyalty_percent", ctx.config.complaints.loyalty_percent))
    days = ctx.slots.get("loyalty_days", ctx.config.complaints.loyalty_valid_days)
    text = ctx.tn("complaint.loyalty_offer", "complaint.loyalty_offer.plural", days, percent=percent)
    ctx.ask_text(text, buttons)


def _loyalty_chosen(ctx: Context, choice: str) -> Transition:
    action, category_id = split_choice_id(choice)
    category = ctx.config.category(category_id) if action == "loyalty" else None
    if category is None:
        return go("person")
    ticket = ctx.slots.get("ticket")
    code = loyalty_code(ctx.config, category.id, ctx.now, reference=ticket)
    ctx.emit(code)
    lines = [
        ctx.t(
            "complaint.loyalty_code",
            code=code.code,
            percent=ctx.percent(code.percent),
            category=ctx.local(category.name),
            date=ctx.date(code.expires_at),
        )
    ]
    link = code_link(ctx.config, category.id, code.code)
    if link:
        lines.append(ctx.t("complaint.loyalty_link", link=link))
    ctx.say_text("\n".join(lines))
    return go("person")


# ----------------------------------------------------------------------------- a person?


def _person_prompt(ctx: Context) -> None:
    buttons = [
        button(TALK_TO_PERSON, "complaint.talk_to_person", means=YES),
        button(ALL_DONE, "complaint.all_done", means=NO),
    ]
    ctx.ask("complaint.person_question", buttons, number=ctx.slots.get("ticket", ""))


def _person_chosen(ctx: Context, choice: str) -> Transition:
    ticket = ctx.slots.get("ticket")
    if choice == TALK_TO_PERSON:
        return switch("handoff", ticket=ticket, reason="complaint")
    ctx.say("complaint.closing", number=ticket or "")
    return end()


COMPLAINT = Dialog(
    name="complaint",
    commands=("complaint",),
    begin=_begin,
    steps={
        "kind": Step(prompt=_kind_prompt, on_choice=_kind_chosen, on_input=lambda ctx: _media_aside(ctx, "kind")),
        "order": Step(prompt=_order_prompt, on_choice=_order_chosen, on_input=_order_typed),
        "description": Step(prompt=_description_prompt, on_choice=_description_chosen, on_input=_description_typed),
        "attachment": Step(prompt=_attachment_prompt, on_choice=_attachment_chosen, on_input=_attachment_sent),
        "summary": Step(prompt=_summary_prompt, on_choice=_summary_chosen),
        "loyalty": Step(prompt=_loyalty_prompt, on_choice=_loyalty_chosen),
        "person": Step(prompt=_person_prompt, on_choice=_person_chosen),
    },
)
