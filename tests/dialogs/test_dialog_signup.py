"""Sign-up as a customer experiences it: greeting, language, one question per purpose, summary."""

from __future__ import annotations

import pytest

from bot.events import Kind
from bot.turn import ConsentChange, SetCustomer, SetIdentity

PURPOSES = ["marketing", "personalised", "location", "surveys"]
# The main menu with every flow installed: (button id = the dialog it starts) and its English labels.
MENU = ["categories", "complaint", "privacy", "handoff", "language", "help"]
MENU_LABELS = ["My categories", "Report a problem", "Privacy & data", "Talk to a person", "Language", "Help"]
CATEGORY_NAMES = ["Shoes", "Clothing", "Electronics", "Home & garden", "Beauty", "Sports", "Toys", "Books"]


def consent_question(t, locale: str, purpose: str) -> str:
    return t(locale, f"consent.{purpose}.question", shop="Shop")


async def test_whole_signup_by_button_presses(make_chat, t, joined, i18n):
    chat = make_chat(first_name="Alice", language_code="en")
    await chat.command("start")
    # greeting and language check are one message, with the language check's buttons
    assert chat.texts == [joined("Hi Alice! 👋 Welcome to Shop.", t("en", "signup.language_check"))]
    assert "I'll write to you in English" in chat.texts[0]
    assert chat.buttons == [("continue", "Continue"), ("language", "Change language")]
    assert SetCustomer(locale="en", first_name="Alice") in chat.effects

    await chat.press("continue")
    answers = {"marketing": "yes", "personalised": "no", "location": "yes", "surveys": "no"}
    for purpose in PURPOSES:
        assert chat.texts == [consent_question(t, "en", purpose)]
        assert chat.buttons == [(f"yes:{purpose}", "Yes"), (f"no:{purpose}", "No")]
        await chat.press(f"{answers[purpose]}:{purpose}")
        granted = answers[purpose] == "yes"
        assert chat.effects[0] == ConsentChange(purpose, "telegram", granted, "signup", "1")

    # marketing was granted, so the summary leads into the welcome offer: one message, with its list
    assert len(chat.messages) == 1
    summary, offer = chat.text.split("\n\n🎁 ", 1)
    assert summary.startswith("All set!")
    assert "✅ Marketing messages: on" in summary
    assert "❌ Personal offers: off" in summary
    assert "✅ Offers nearby: on" in summary
    assert "❌ Surveys: off" in summary
    assert "type privacy" in summary and "Type stop" in summary
    welcome = i18n.plural("en", "categories.welcome", "categories.welcome.plural", 5, done="Done")  # limit 5
    assert "🎁 " + offer == welcome + "\n\n" + "0 categories picked out of 5"
    assert chat.labels == [*CATEGORY_NAMES, "Done"]
    assert chat.button_ids[-1] == "done:categories"
    assert chat.state.dialog == "categories"
    assert [chat.granted(p) for p in PURPOSES] == [True, False, True, False]

    await chat.press("done:categories")  # nothing picked: the offer ends without a code
    assert chat.state.dialog is None and chat.state.offered == []
    assert chat.categories == () and chat.codes == []


@pytest.mark.parametrize(
    ("language_code", "yes", "no", "expect_locale", "summary_on"),
    [
        ("de", "ja", "nein", "de", "✅ Werbenachrichten: an"),
        ("es", "sí", "no", "es", "✅ Mensajes promocionales: sí"),
        ("en", "yeah", "nope", "en", "✅ Marketing messages: on"),
    ],
)
async def test_whole_signup_by_typed_answers(make_chat, t, joined, language_code, yes, no, expect_locale, summary_on):
    chat = make_chat(language_code=language_code)
    await chat.send("hi")  # the first message of a new identity starts the sign-up
    hello = t(expect_locale, "signup.hello_name", name="Alice", shop="Shop")
    assert chat.texts == [joined(hello, t(expect_locale, "signup.language_check"))]
    await chat.send(t(expect_locale, "signup.continue").upper())  # a typed label, any case
    for purpose, answer in zip(PURPOSES, [yes, no, yes, "2"]):
        assert chat.texts == [consent_question(t, expect_locale, purpose)]
        await chat.send(answer)
    assert [chat.granted(p) for p in PURPOSES] == [True, False, True, False]
    assert summary_on in chat.text
    assert chat.locale == expect_locale


async def test_typed_answers_forgive_accents_case_and_punctuation(make_chat):
    chat = make_chat(language_code="es")
    await chat.send("hola")
    await chat.send("ok")  # yes-synonym continues
    await chat.send("¡Si!")
    await chat.send("Sí 👍")
    await chat.send("1")
    await chat.send("No, gracias")
    assert [chat.granted(p) for p in PURPOSES] == [True, True, True, False]


async def test_english_yes_counts_in_german_and_german_no_only_in_german(make_chat, t):
    chat = make_chat(language_code="de")
    await chat.command("start")
    await chat.send("ja")
    await chat.send("yes")
    assert chat.granted("marketing") is True
    await chat.send("nein")
    assert chat.granted("personalised") is False
    assert chat.texts == [consent_question(t, "de", "location")]


@pytest.mark.parametrize(
    ("language_code", "locale"),
    [("de", "de"), ("de-AT", "de"), ("es-MX", "es"), ("uk", "en"), (None, "en")],
)
async def test_language_picked_from_language_code(make_chat, t, joined, language_code, locale):
    chat = make_chat(language_code=language_code)
    await chat.command("start")
    hello = t(locale, "signup.hello_name", name="Alice", shop="Shop")
    assert chat.texts == [joined(hello, t(locale, "signup.language_check"))]
    assert chat.labels == [t(locale, "signup.continue"), t(locale, "signup.change_language")]
    assert SetCustomer(locale=locale, first_name="Alice") in chat.effects


async def test_change_language_at_the_start_of_signup(make_chat, t, joined):
    chat = make_chat(language_code="en")
    await chat.command("start")
    await chat.press("language")
    assert chat.texts == [t("en", "language.question")]
    assert chat.buttons == [("en", "English"), ("de", "Deutsch"), ("es", "Español")]
    await chat.send("deutsch")  # a typed language name picks it
    changed = "Alles klar, ich schreibe Ihnen ab jetzt auf Deutsch."  # formal "Sie", like every German text
    assert chat.texts == [joined(changed, consent_question(t, "de", "marketing"))]
    assert chat.buttons == [("yes:marketing", "Ja"), ("no:marketing", "Nein")]
    assert chat.locale == "de" and chat.state.locale == "de"


async def test_changing_language_mid_signup_reasks_the_same_question(make_chat, t, joined):
    chat = make_chat(language_code="en")
    await chat.command("start")
    await chat.press("continue")
    await chat.press("yes:marketing")
    assert chat.texts == [consent_question(t, "en", "personalised")]

    await chat.send("language")
    assert chat.texts == [t("en", "language.question")]
    await chat.press("es")
    assert chat.texts == [joined(t("es", "language.changed"), consent_question(t, "es", "personalised"))]
    assert chat.buttons == [("yes:personalised", "Sí"), ("no:personalised", "No")]
    assert SetCustomer(locale="es") in chat.effects

    await chat.send("si")
    assert chat.granted("personalised") is True
    assert chat.texts == [consent_question(t, "es", "location")]


async def test_a_miss_reasks_once_then_offers_a_person_then_help(make_chat, t, joined):
    chat = make_chat()
    await chat.command("start")
    await chat.press("continue")
    question = consent_question(t, "en", "marketing")

    await chat.send("what is this about?")
    assert chat.texts == [joined(t("en", "fallback.retry"), question)]
    assert chat.buttons == [("yes:marketing", "Yes"), ("no:marketing", "No")]
    assert chat.state.misses == 1

    await chat.send("purple")  # the second miss in a row: a person may help better than a third try
    assert chat.texts == [t("en", "engine.offer_person")]
    assert chat.buttons == [("handoff", "Talk to a person"), ("menu", "Menu")]
    assert chat.state.misses == 2

    await chat.send("grape")  # not taking the offer: the question again, with the help hint
    hint = t("en", "fallback.help_hint", help="help", menu="menu")
    assert "type help or menu" in hint
    assert chat.texts == [joined(hint, question)]
    assert chat.buttons == [("yes:marketing", "Yes"), ("no:marketing", "No")]
    assert chat.state.misses == 3

    await chat.send("yes")
    assert chat.state.misses == 0
    assert chat.granted("marketing") is True


async def test_typed_numbers_pick_offered_buttons(make_chat):
    chat = make_chat()
    await chat.command("start")
    await chat.send("1")  # Continue
    await chat.send("2")  # No
    assert chat.granted("marketing") is False
    await chat.send("3")  # out of range: a miss
    assert chat.state.misses == 1
    await chat.send("#1")  # typed, so read as the number 1
    assert chat.granted("personalised") is True


async def test_a_pressed_hash_token_never_picks_a_short_consent_button(make_chat, t):
    """Consent ids always travel as themselves, so a "#n" press comes from another message."""
    chat = make_chat()
    await chat.command("start")
    await chat.press("continue")
    await chat.press("#1")
    assert chat.texts == [consent_question(t, "en", "marketing")]
    assert chat.effects == [] and chat.granted("marketing") is None
    assert chat.state.misses == 0


async def test_viber_conversation_started_gets_exactly_one_message(make_chat, t):
    chat = make_chat(channel="viber", address="tR9vQm2XbL8sKp4fWc1uJg==", first_name="Alice")
    messages = await chat.event(Kind.STARTED, context="promo_AUTUMN26")
    assert len(messages) == 1
    welcome = messages[0]
    assert welcome.text.startswith("Hi Alice! 👋 Welcome to Shop.")
    assert "Let's start" in welcome.text
    assert [(b.id, b.label) for b in welcome.buttons] == [("go", "Let's start"), ("de", "Deutsch"), ("es", "Español")]
    assert SetIdentity(deep_link="promo_AUTUMN26") in chat.effects
    assert chat.state.dialog == "signup" and chat.state.step == "welcome"

    await chat.press("go")
    assert chat.texts == [consent_question(t, "en", "marketing")]


async def test_viber_welcome_language_button_switches_and_continues(make_chat, t, joined):
    chat = make_chat(channel="viber", language_code="en")
    await chat.event(Kind.STARTED)
    await chat.press("de")
    assert chat.texts == [joined(t("de", "language.changed"), consent_question(t, "de", "marketing"))]
    assert chat.buttons == [("yes:marketing", "Ja"), ("no:marketing", "Nein")]


async def test_viber_subscribed_starts_signup_when_nothing_runs(make_chat, t, joined):
    chat = make_chat(channel="viber")
    await chat.event(Kind.SUBSCRIBED)
    assert chat.texts == [joined("Hi Alice! 👋 Welcome to Shop.", t("en", "signup.language_check"))]
    assert chat.button_ids == ["continue", "language"]
    # a second subscribed while the sign-up runs says nothing and keeps the question
    await chat.event(Kind.SUBSCRIBED)
    assert chat.messages == [] and chat.state.step == "intro"


async def test_started_for_a_signed_up_customer_is_one_welcome_back_with_menu(make_chat, signed_up_chat):
    chat = await signed_up_chat(make_chat(channel="viber"))
    messages = await chat.event(Kind.STARTED)
    assert len(messages) == 1
    assert messages[0].text.startswith("Welcome back, Alice!")
    assert chat.labels == MENU_LABELS


async def test_start_with_payload_stores_the_deep_link(make_chat):
    chat = make_chat()
    await chat.command("start", "promo_AUTUMN26")
    assert SetIdentity(deep_link="promo_AUTUMN26") in chat.effects
    assert chat.deep_link == "promo_AUTUMN26"
    assert chat.state.dialog == "signup"


async def test_start_after_signup_welcomes_back_and_still_stores_the_link(make_chat, signed_up_chat, t, joined):
    chat = await signed_up_chat(make_chat())
    await chat.command("start", "summer")
    assert chat.texts == [joined(t("en", "menu.welcome_back_name", name="Alice"), t("en", "menu.question"))]
    assert chat.button_ids == MENU
    assert chat.deep_link == "summer"
    assert not any(isinstance(e, ConsentChange) for e in chat.effects)


async def test_first_message_of_new_identity_starts_signup_without_a_name(make_chat, t, joined):
    chat = make_chat(channel="whatsapp", address="15550100201", first_name=None, language_code=None)
    await chat.send("hi")
    assert chat.texts == [joined("Hi! 👋 Welcome to Shop.", t("en", "signup.language_check"))]
    assert chat.button_ids == ["continue", "language"]
    assert SetCustomer(locale="en") in chat.effects


async def test_second_message_of_known_identity_does_not_restart_signup(make_chat, signed_up_chat, t, joined):
    chat = await signed_up_chat(make_chat())
    await chat.send("hello again")  # a greeting: welcomed back with the menu, not a new sign-up
    assert chat.texts == ["Welcome back, Alice!\n\nWhat would you like to do?"]
    assert chat.button_ids == MENU
    assert chat.state.dialog == "menu"
    assert not any(isinstance(e, ConsentChange) for e in chat.effects)

    await chat.send("purple")  # not a menu choice: the menu is asked again
    assert chat.texts == [joined(t("en", "fallback.retry"), t("en", "menu.question"))]
    assert chat.button_ids == MENU
    assert chat.state.dialog == "menu"


async def test_start_mid_signup_asks_only_what_is_still_open(make_chat, t):
    chat = make_chat()
    await chat.command("start")
    await chat.press("continue")
    await chat.press("yes:marketing")
    await chat.press("no:personalised")
    await chat.command("start")
    await chat.press("continue")
    assert chat.texts == [consent_question(t, "en", "location")]


async def test_changed_wording_version_reasks_only_that_purpose(make_chat, signed_up_chat, config, i18n, t):
    from bot.dialog import DialogEngine

    chat = await signed_up_chat(make_chat())
    bumped = config.model_copy(deep=True)
    bumped.consent_purposes[2].version = "2"  # location
    chat.engine = DialogEngine(bumped, i18n)
    await chat.command("start")
    await chat.press("continue")
    assert chat.texts == [consent_question(t, "en", "location")]
    await chat.press("no:location")
    assert chat.effects[0] == ConsentChange("location", "telegram", False, "signup", "2")
    assert chat.state.dialog is None
