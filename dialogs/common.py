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


def _help(ctx: Context) -> Transition:
    ctx.say(
        "help.text",
        help=ctx.command_word("help"),
        menu=ctx.command_word("menu"),
        privacy=ctx.command_word("privacy"),
        language=ctx.command_word("language"),
        stop=ctx.command_word("stop"),
    )
    return end()


HELP = Dialog(name="help", commands=("help",), begin=_help)

# ----------------------------------------------------------------------------- menu

MENU_ITEMS = ("privacy", "language", "help")  # button ids are the names of the dialogs they start


def _menu_prompt(ctx: Context) -> None:
    buttons = [
        button("privacy", "menu.privacy"),
        button("language", "menu.language"),
        button("help", "menu.help"),
    ]
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
    ctx.ask_text("\n\n".join(parts), buttons)


def _menu_chosen(ctx: Context, choice: str) -> Transition:
    return switch(choice) if choice in MENU_ITEMS else go("choose")


MENU = Dialog(
    name="menu",
    commands=("menu",),
    begin=lambda ctx: go("choose"),
    steps={"choose": Step(prompt=_menu_prompt, on_choice=_menu_chosen)},
)
