"""The main menu and the help: what the customer can do, in every language, with whatever is installed."""

from __future__ import annotations

import pytest

from bot.dialog import DialogEngine, Registry
from bot.i18n import I18n
from dialogs import DIALOGS
from dialogs.common import MENU_ITEMS
from tests.dialogs.conftest import LOCALES_DIR, Chat

EVERYTHING = ["categories", "complaint", "privacy", "handoff", "language", "help"]
LABELS = {
    "en": ["My categories", "Report a problem", "Privacy & data", "Talk to a person", "Language", "Help"],
    "de": ["Meine Kategorien", "Problem melden", "Datenschutz & Daten", "Kundenservice", "Sprache", "Hilfe"],
    "es": ["Mis categorías", "Reportar un problema", "Privacidad y datos", "Hablar con alguien", "Idioma", "Ayuda"],
}
QUESTION = {"en": "What would you like to do?", "de": "Was möchten Sie tun?", "es": "¿Qué desea hacer?"}


def without(*names: str) -> Registry:
    return Registry([d for d in DIALOGS if d.name not in names])


async def idle(chat: Chat) -> Chat:
    """Signed up with nothing granted (so no welcome offer): the conversation is idle."""
    await chat.command("start")
    await chat.press("continue")
    while chat.buttons and chat.button_ids[0].startswith("yes:"):
        await chat.answer("no")
    assert chat.state.dialog is None
    return chat


@pytest.fixture
def chat_with(config, i18n):
    def make(registry: Registry | None = None, **kwargs) -> Chat:
        return Chat(DialogEngine(config, i18n, registry), **kwargs)

    return make


def test_every_menu_label_fits_a_whatsapp_reply_button():
    i18n = I18n.load(LOCALES_DIR)
    assert [name for name, _ in MENU_ITEMS] == EVERYTHING
    for lang in LABELS:
        assert [i18n.text(lang, msgid) for _, msgid in MENU_ITEMS] == LABELS[lang]
        assert all(len(i18n.text(lang, msgid)) <= 20 for _, msgid in MENU_ITEMS), lang


@pytest.mark.parametrize(("language_code", "word"), [("en", "menu"), ("de", "Menü"), ("es", "menú")])
async def test_the_menu_lists_every_installed_flow_in_each_language(chat_with, language_code, word):
    installed = without("complaint", "handoff")  # flows a shop may run without
    chat = await idle(chat_with(installed, language_code=language_code))
    await chat.send(word)
    assert chat.texts == [QUESTION[language_code]]
    assert chat.button_ids == ["categories", "privacy", "language", "help"]
    labels = LABELS[language_code]
    assert chat.labels == [labels[0], labels[2], labels[4], labels[5]]


async def test_the_menu_offers_complaint_and_handoff_once_registered(chat_with):
    chat = await idle(chat_with())
    await chat.send("menu")
    registered = [name for name in EVERYTHING if name in chat.engine.registry.names]
    assert {"categories", "privacy", "language", "help"} <= set(registered)
    assert chat.button_ids == registered and chat.labels == [LABELS["en"][EVERYTHING.index(n)] for n in registered]


async def test_a_menu_without_categories_leaves_the_button_out(chat_with):
    chat = await idle(chat_with(without("categories", "complaint", "handoff")))
    await chat.send("menu")
    assert chat.button_ids == ["privacy", "language", "help"]


@pytest.mark.parametrize("name", EVERYTHING)
async def test_each_menu_button_starts_its_flow(chat_with, name):
    chat = await idle(chat_with())
    await chat.send("menu")
    if name not in chat.engine.registry.names:
        assert name not in chat.button_ids  # a flow this build lacks is never offered
        return
    await chat.press(name)
    started = {
        "categories": lambda: chat.state.dialog == "categories" and chat.texts[0].startswith("Pick up to 5 favourite"),
        "privacy": lambda: chat.texts[0].startswith("Here's what I may send you in this chat:"),
        "language": lambda: chat.texts == ["Which language would you like me to use?"],
        "help": lambda: chat.texts[0].startswith("Here's what I can do:"),
        # Other flows' own tests check their wording; here: the press reached them and they answered.
        "complaint": lambda: chat.state.dialog == "complaint" and chat.texts != [],
        "handoff": lambda: chat.texts != [] and chat.state.dialog != "menu",
    }
    assert started[name](), chat.text


async def test_the_menu_interrupts_the_categories_and_they_resume_with_the_picks(chat_with):
    chat = chat_with(language_code="de")
    await chat.command("start")
    await chat.press("continue")
    await chat.answer("yes")  # marketing: the welcome offer follows the sign-up
    for _ in range(3):
        await chat.answer("no")
    await chat.send("Bücher")
    await chat.send("menü")
    assert chat.texts == ["Was möchten Sie tun?"] and chat.button_ids[0] == "categories"
    await chat.press("help")
    assert chat.texts[0].startswith("Das kann ich für Sie tun:")
    assert chat.texts[0].endswith("\n\n1 Kategorie gewählt (höchstens 5)\n✅ Bücher")
    await chat.send("fertig")
    assert chat.categories == ("books",)


async def test_help_names_the_command_word_of_each_installed_flow(chat_with):
    chat = await idle(chat_with(without("complaint", "handoff")))
    await chat.send("help")
    assert chat.texts == [
        "Here's what I can do:\n"
        "• privacy — see and change what I may send you\n"
        "• language — choose the language I write in\n"
        "• menu — show the main menu\n"
        "• stop — stop all marketing messages in this chat\n"
        "• help — show this help\n"
        "• categories — pick your favourite categories and get discount codes\n"
        "\n"
        "Just type one of these words at any time."
    ]

    chat = await idle(chat_with(without("categories", "complaint", "handoff"), language_code="es"))
    await chat.send("ayuda")
    assert "categorías" not in chat.text
    assert chat.text.endswith("• ayuda: mostrar esta ayuda\n\nEscriba una de estas palabras cuando quiera.")


@pytest.mark.parametrize(
    ("language_code", "word", "lines"),
    [
        (
            "en",
            "help",
            [
                "• categories — pick your favourite categories and get discount codes",
                "• complaint — report a problem with an order or a code",
                "• human — talk to a person",
            ],
        ),
        (
            "de",
            "hilfe",
            [
                "• kategorien – Lieblingskategorien wählen und Rabattcodes erhalten",
                "• beschwerde – ein Problem mit einer Bestellung oder einem Code melden",
                "• mitarbeiter – mit einer Person sprechen",
            ],
        ),
        (
            "es",
            "ayuda",
            [
                "• categorías: elegir sus categorías favoritas y recibir códigos de descuento",
                "• queja: informar de un problema con un pedido o un código",
                "• humano: hablar con una persona",
            ],
        ),
    ],
)
async def test_help_lists_the_optional_flows_after_the_fixed_commands(chat_with, language_code, word, lines):
    chat = await idle(chat_with(language_code=language_code))
    await chat.send(word)
    names = chat.engine.registry.names
    expected = [line for line, dialog in zip(lines, ("categories", "complaint", "handoff")) if dialog in names]
    shown = chat.text.split("\n")
    assert shown[6 : 6 + len(expected)] == expected  # right after the five fixed lines
    assert shown[6 + len(expected) :] == ["", shown[-1]] and shown[-1]  # then the footer
