"""Consent after sign-up: ``privacy`` shows and toggles each purpose, ``stop`` withdraws marketing.

Both only touch this channel's consents; every change is a ``ConsentChange``
effect that the pipeline appends to the consent log with its source.
"""

from __future__ import annotations

from bot.dialog import Context, Dialog, Step, Transition, button, choice_id, end, go, split_choice_id
from bot.turn import ConsentChange

# Button ids "on:<purpose>" / "off:<purpose>" say the state the customer asks for, as the
# label does, never "invert": a stale or double-tapped "Turn off X" must not turn X back on.
ON = "on"
OFF = "off"


def consent_lines(ctx: Context) -> list[str]:
    """One "✅ name: on" / "❌ name: off" line per configured purpose, as it stands now."""
    lines = []
    for purpose in ctx.config.consent_purposes:
        name = ctx.t(f"consent.{purpose.id}.name")
        msgid = "consent.line_on" if ctx.granted(purpose.id) else "consent.line_off"
        lines.append(ctx.t(msgid, name=name))
    return lines


# ----------------------------------------------------------------------------- privacy


def _privacy_prompt(ctx: Context) -> None:
    done = button("done", "buttons.done")
    toggles = []
    for purpose in ctx.config.consent_purposes:
        name = ctx.t(f"consent.{purpose.id}.name")
        if ctx.granted(purpose.id):
            toggles.append(button(choice_id(OFF, purpose.id), "privacy.turn_off", name=name))
        else:
            toggles.append(button(choice_id(ON, purpose.id), "privacy.turn_on", name=name))
    text = "\n".join(
        [ctx.t("privacy.title"), *consent_lines(ctx), "", ctx.t("privacy.howto", done=ctx.t("buttons.done"))]
    )
    ctx.ask_text(text, [*toggles, done])


def _privacy_chosen(ctx: Context, choice: str) -> Transition:
    if choice == "done":
        ctx.say("privacy.saved", privacy=ctx.command_word("privacy"))
        return end()
    setting, purpose_id = split_choice_id(choice)
    purpose = ctx.config.purpose(purpose_id)
    wanted = setting == ON
    # Already as asked (a second tap): nothing to record; the list is shown again as it stands.
    if purpose is not None and setting in (ON, OFF) and ctx.granted(purpose.id) != wanted:
        ctx.emit(
            ConsentChange(
                purpose=purpose.id,
                channel=ctx.customer.channel,
                granted=wanted,
                source="privacy",
                wording_version=purpose.version,
            )
        )
    return go("list")


PRIVACY = Dialog(
    name="privacy",
    commands=("privacy",),
    begin=lambda ctx: go("list"),
    steps={"list": Step(prompt=_privacy_prompt, on_choice=_privacy_chosen)},
)

# ----------------------------------------------------------------------------- stop


def _stop(ctx: Context) -> Transition:
    """Withdraw every granted marketing purpose on this channel at once; no question asked."""
    withdrawn = []
    for purpose in ctx.config.consent_purposes:
        current = ctx.consent(purpose.id)
        if purpose.marketing and current is not None and current[0]:
            ctx.emit(ConsentChange(purpose.id, ctx.customer.channel, False, "stop", current[1]))
            withdrawn.append(ctx.t("list.item", item=ctx.t(f"consent.{purpose.id}.name")))
    howto = ctx.t("stop.howto", privacy=ctx.command_word("privacy"))
    if withdrawn:
        head = ctx.tn("stop.done", "stop.done.plural", len(withdrawn))
        ctx.say_text("\n".join([head, *withdrawn, "", howto]))
    else:
        ctx.say_text("\n\n".join([ctx.t("stop.nothing"), howto]))
    return end(resume=False)


STOP = Dialog(name="stop", commands=("stop",), begin=_stop, resets=True)
