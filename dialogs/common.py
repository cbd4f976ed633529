"""Dialogs every conversation can reach at any time: help, menu and language.

They interrupt whatever runs; when they end, the engine resumes the
interrupted dialog and asks its question again (in the new language, after a
language change).
"""

from __future__ import annotations

from bot.dialog import Choice, Context, Dialog, Step, Transition, button, end, go, literal_button, switch
from bot.turn import SetCustomer

# ----------------------------------------------------------------------------- language


def language_buttons(ctx: Context, *, exclude: str | None = None) -> list[Choice]:
    """The shop's languages, each labelled in its own language (the one label not from a catalog)."""
    return [
        literal_button(code, ctx.i18n.native_name(code))
        for code in ctx.config.locales
        if code in ctx.i18n.locales and code != exclude
    ]


def apply_language(ctx: Context, locale: str) -> None:
    """Switch the conversation and the customer's profile to ``locale`` and confirm in it."""
    ctx.set_locale(locale)
    ctx.emit(SetCustomer(locale=locale))
    ctx.say("language.changed")


def _language_prompt(ctx: Context) -> None:
    ctx.ask("language.question", language_buttons(ctx))


def _language_chosen(ctx: Context, choice: str) -> Transition:
    apply_language(ctx, choice)
    return end()


LANGUAGE = Dialog(
    name="language",
    commands=("language",),
    begin=lambda ctx: go("choose"),
    steps={"choose": Step(prompt=_language_prompt, on_choice=_language_chosen)},
)

# ----------------------------------------------------------------------------- help


# Help lines of flows that may or may not be installed: (dialog, command, message id).
OPTIONAL_HELP = (
    ("categories", "categories", "help.categories"),
    ("complaint", "complaint", "help.complaint"),
    ("handoff", "human", "help.human"),
)


def _help(ctx: Context) -> Transition:
    lines = [
        ctx.t(
            "help.text",
            help=ctx.command_word("help"),
            menu=ctx.command_word("menu"),
            privacy=ctx.command_word("privacy"),
            language=ctx.command_word("language"),
            stop=ctx.command_word("stop"),
        )
    ]
    # Only what this installation can do: a word that starts nothing would be a broken promise.
    for dialog, command, msgid in OPTIONAL_HELP:
        if ctx.has_dialog(dialog):
            lines.append(ctx.t(msgid, **{command: ctx.command_word(command)}))
    ctx.say_text("\n".join(lines) + "\n\n" + ctx.t("help.footer"))
    return end()


HELP = Dialog(name="help", commands=("help",), begin=_help)

# ----------------------------------------------------------------------------- menu

# What the customer can do, in this order: (button id = the dialog it starts, label).
# Flows another release may leave out are offered only when registered.
MENU_ITEMS = (
    ("categories", "menu.categories"),
    ("complaint", "menu.complaint"),
    ("privacy", "menu.privacy"),
    ("handoff", "menu.handoff"),
    ("language", "menu.language"),
    ("help", "menu.help"),
)


def menu_buttons(ctx: Context) -> list[Choice]:
    return [button(name, msgid) for name, msgid in MENU_ITEMS if ctx.has_dialog(name)]


def _menu_prompt(ctx: Context) -> None:
    greeting = ctx.slots.pop("greeting", None)  # only on the first showing, not on a re-ask
    parts = []
    if greeting == "back":
        name = ctx.first_name
        parts.append(ctx.t("menu.welcome_back_name", name=name) if name else ctx.t("menu.welcome_back"))
    elif greeting == "new":
        name = ctx.first_name
        shop = ctx.config.shop_name
        parts.append(ctx.t("signup.hello_name", name=name, shop=shop) if name else ctx.t("signup.hello", shop=shop))
    parts.append(ctx.t("menu.question"))
    ctx.ask_text("\n\n".join(parts), menu_buttons(ctx))


def _menu_chosen(ctx: Context, choice: str) -> Transition:
    offered = choice in dict(MENU_ITEMS) and ctx.has_dialog(choice)
    return switch(choice) if offered else go("choose")


MENU = Dialog(
    name="menu",
    commands=("menu",),
    begin=lambda ctx: go("choose"),
    steps={"choose": Step(prompt=_menu_prompt, on_choice=_menu_chosen)},
)
