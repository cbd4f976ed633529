"""Consent after sign-up: ``privacy`` shows and toggles each purpose, ``stop`` withdraws marketing.

Both only touch this channel's consents; every change is a ``ConsentChange``
effect that the pipeline appends to the consent log with its source.
"""

from __future__ import annotations

from bot.dialog import Context, Dialog, Step, Transition, button, end, go
from bot.turn import ConsentChange

TOGGLE_PREFIX = "t:"  # button id "t:<purpose>"; purpose ids are at most 32 ASCII characters


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
        msgid = "privacy.turn_off" if ctx.granted(purpose.id) else "privacy.turn_on"
        toggles.append(button(TOGGLE_PREFIX + purpose.id, msgid, name=ctx.t(f"consent.{purpose.id}.name")))
    text = "\n".join(
        [ctx.t("privacy.title"), *consent_lines(ctx), "", ctx.t("privacy.howto", done=ctx.t("buttons.done"))]
    )
    ctx.ask_text(text, [*toggles, done])


def _privacy_chosen(ctx: Context, choice: str) -> Transition:
    if choice == "done":
        ctx.say("privacy.saved", privacy=ctx.command_word("privacy"))
        return end()
    purpose = ctx.config.purpose(choice.removeprefix(TOGGLE_PREFIX))
    if purpose is not None:
        ctx.emit(
            ConsentChange(
                purpose=purpose.id,
                channel=ctx.customer.channel,
                granted=not ctx.granted(purpose.id),
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
