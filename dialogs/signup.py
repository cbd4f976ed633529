"""Sign-up: greet, settle the language, ask one Yes/No question per consent purpose, summarise.

With marketing granted, the summary leads into the welcome offer: the
``categories`` dialog, where each favourite earns a discount code.

Started by /start, Viber's conversation_started and subscribed, and the first
message of a new channel identity. Purposes already answered on this channel
with the current wording version are not asked again, so /start after a
finished sign-up is a short welcome-back with the menu, and a bumped wording
version re-asks exactly that purpose.

Viber's conversation_started may get one reply only: the ``welcome`` step
puts the greeting, a "Let's start" button and the other languages into a
single message and waits for the press.

Each consent question's buttons name their purpose ("yes:marketing"), so a
double tap or a press on an earlier question's button never answers a
question the customer has not seen (the engine re-shows the current one).
"""

from __future__ import annotations

from bot.dialog import NO, YES, Context, Dialog, Step, Transition, button, end, go, split_choice_id, switch, yes_no
from bot.events import Kind
from bot.turn import ConsentChange, SetCustomer, SetIdentity
from dialogs.common import apply_language, language_buttons
from dialogs.privacy import consent_lines

MARKETING = "marketing"  # the purpose whose yes earns the welcome offer


def pending_purposes(ctx: Context) -> list[str]:
    """Purposes never answered on this channel, or answered under an older wording."""
    pending = []
    for purpose in ctx.config.consent_purposes:
        current = ctx.consent(purpose.id)
        if current is None or current[1] != purpose.version:
            pending.append(purpose.id)
    return pending


def _remember_customer(ctx: Context) -> None:
    """Store the language in use and the platform's first name on a profile that lacks them."""
    locale = ctx.locale if ctx.customer.locale != ctx.locale else None
    first_name = ctx.event.first_name if not ctx.customer.first_name and ctx.event.first_name else None
    if locale or first_name:
        ctx.emit(SetCustomer(locale=locale, first_name=first_name))


def _begin(ctx: Context) -> Transition:
    if ctx.event.context:
        ctx.emit(SetIdentity(deep_link=ctx.event.context))
    pending = pending_purposes(ctx)
    if not pending:
        if ctx.customer.is_new:
            _remember_customer(ctx)
        return switch("menu", greeting="new" if ctx.customer.is_new else "back")
    _remember_customer(ctx)
    ctx.slots.update(pending=pending, index=0)
    if ctx.event.kind is Kind.STARTED:
        return go("welcome")
    name, shop = ctx.first_name, ctx.config.shop_name
    if name:
        ctx.say("signup.hello_name", name=name, shop=shop)
    else:
        ctx.say("signup.hello", shop=shop)
    return go("intro")


# ----------------------------------------------------------------------------- welcome (Viber)


def _welcome_prompt(ctx: Context) -> None:
    name, shop, start = ctx.first_name, ctx.config.shop_name, ctx.t("signup.start")
    if name:
        text = ctx.t("signup.welcome_name", name=name, shop=shop, start=start)
    else:
        text = ctx.t("signup.welcome", shop=shop, start=start)
    buttons = [button("go", "signup.start", means=YES), *language_buttons(ctx, exclude=ctx.locale)]
    ctx.ask_text(text, buttons)


def _welcome_chosen(ctx: Context, choice: str) -> Transition:
    if choice != "go":
        apply_language(ctx, choice)
    return go("consent")


def _welcome_typed(ctx: Context) -> Transition | None:
    # Whoever writes instead of pressing has shown up to talk: carry on with the questions.
    return go("consent") if ctx.event.kind is Kind.TEXT else None


# ----------------------------------------------------------------------------- language check


def _intro_prompt(ctx: Context) -> None:
    ctx.ask(
        "signup.language_check",
        [button("continue", "signup.continue", means=YES), button("language", "signup.change_language", means=NO)],
    )


def _intro_chosen(ctx: Context, choice: str) -> Transition:
    return go("pick_language") if choice == "language" else go("consent")


def _pick_language_prompt(ctx: Context) -> None:
    ctx.ask("language.question", language_buttons(ctx))


def _pick_language_chosen(ctx: Context, choice: str) -> Transition:
    apply_language(ctx, choice)
    return go("consent")


# ----------------------------------------------------------------------------- consents


def _current_purpose(ctx: Context) -> str | None:
    pending, index = ctx.slots.get("pending", []), ctx.slots.get("index", 0)
    return pending[index] if index < len(pending) else None


def _consent_prompt(ctx: Context) -> None:
    purpose = _current_purpose(ctx)
    if purpose is not None:
        ctx.ask(f"consent.{purpose}.question", yes_no(purpose), shop=ctx.config.shop_name)


def _consent_chosen(ctx: Context, choice: str) -> Transition:
    answer, about = split_choice_id(choice)
    current = _current_purpose(ctx)
    if current is not None and about != current:
        # The engine offers only the current question's buttons, so this cannot come from
        # a press; recording it would answer a question the customer has not seen.
        return go("consent")
    purpose = ctx.config.purpose(current or "")
    if purpose is not None:
        ctx.emit(
            ConsentChange(
                purpose=purpose.id,
                channel=ctx.customer.channel,
                granted=answer == YES,
                source="signup",
                wording_version=purpose.version,
            )
        )
    ctx.slots["index"] = ctx.slots.get("index", 0) + 1
    if _current_purpose(ctx) is not None:
        return go("consent")
    _summary(ctx)
    if _welcome_offer_due(ctx):
        return switch("categories", welcome=True)
    return end()


def _welcome_offer_due(ctx: Context) -> bool:
    """Marketing granted just now and nothing picked yet: invite the customer to the welcome codes.

    Only when this run asked for marketing: a returning customer re-asked
    another purpose (a new wording) is not invited again, nor is one who
    already has favourites; "My categories" in the menu is there for them.
    """
    return (
        MARKETING in ctx.slots.get("pending", [])
        and ctx.granted(MARKETING)
        and not ctx.customer.categories
        and bool(ctx.config.categories)
        and ctx.has_dialog("categories")
    )


def _summary(ctx: Context) -> None:
    howto = ctx.t("signup.summary_howto", privacy=ctx.command_word("privacy"), stop=ctx.command_word("stop"))
    ctx.say_text("\n".join([ctx.t("signup.summary"), *consent_lines(ctx), "", howto]))


SIGNUP = Dialog(
    name="signup",
    commands=("start",),
    begin=_begin,
    resets=True,
    steps={
        "welcome": Step(prompt=_welcome_prompt, on_choice=_welcome_chosen, on_input=_welcome_typed),
        "intro": Step(prompt=_intro_prompt, on_choice=_intro_chosen),
        "pick_language": Step(prompt=_pick_language_prompt, on_choice=_pick_language_chosen),
        "consent": Step(prompt=_consent_prompt, on_choice=_consent_chosen),
    },
)
