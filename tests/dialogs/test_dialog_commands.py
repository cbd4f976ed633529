"""Global commands and the engine's fixed behaviour, at any step and in every language."""

from __future__ import annotations

import pytest

from bot.events import Kind, Media
from bot.turn import ConsentChange, SetCustomer, SetIdentity

PURPOSES = ["marketing", "personalised", "location", "surveys"]
# The main menu with every flow installed: (button id = the dialog it starts) and its English labels.
MENU = ["categories", "complaint", "privacy", "handoff", "language", "help"]
MENU_LABELS = ["My categories", "Report a problem", "Privacy & data", "Talk to a person", "Language", "Help"]


async def test_stop_withdraws_granted_marketing_consents_and_confirms(make_chat, signed_up_chat):
    chat = await signed_up_chat(make_chat())  # marketing and location granted
    await chat.send("STOP")
    # every marketing purpose gets a "stop" row, granted or not: the channel is stopped
    assert sorted(chat.consent_changes()) == [("location", False, "stop"), ("marketing", False, "stop"), ("personalised", False, "stop"), ("surveys", False, "stop")]
    assert chat.texts == [
        "Done. I've switched off 2 options in this chat:\n"
        "• Marketing messages\n"
        "• Offers nearby\n"
        "\n"
        "You can switch things back on any time — just type privacy."
    ]
    assert [chat.granted(p) for p in PURPOSES] == [False, False, False, False]
    assert chat.state.dialog is None


async def test_stop_with_nothing_granted_says_so(make_chat, signed_up_chat, t):
    chat = await signed_up_chat(make_chat(), ("no", "no", "no", "no"))
    await chat.command("stop")
    assert sorted(chat.consent_changes()) == [("location", False, "stop"), ("marketing", False, "stop"), ("personalised", False, "stop"), ("surveys", False, "stop")]  # recorded all the same
    assert chat.texts[0].startswith(t("en", "stop.nothing"))


async def test_stop_in_german_uses_the_singular_and_german_words(make_chat, signed_up_chat):
    chat = await signed_up_chat(make_chat(language_code="de"), ("ja", "nein", "nein", "nein"))
    await chat.send("stopp")
    assert sorted(chat.consent_changes()) == [("location", False, "stop"), ("marketing", False, "stop"), ("personalised", False, "stop"), ("surveys", False, "stop")]
    assert chat.texts[0].startswith("Erledigt. Ich habe 1 Option in diesem Chat ausgeschaltet:\n• Werbenachrichten")
    assert "schreiben Sie einfach datenschutz" in chat.texts[0]


async def test_stop_is_always_the_stop_command_but_no_is_an_answer(make_chat, t):
    chat = make_chat()
    await chat.command("start")
    await chat.press("continue")
    await chat.send("no")  # answers the marketing question
    assert chat.consent_changes() == [("marketing", False, "signup")]
    await chat.send("yes")  # personalised granted
    await chat.send("stop")  # the command, even though a Yes/No question is open
    assert sorted(chat.consent_changes()) == [("location", False, "stop"), ("marketing", False, "stop"), ("personalised", False, "stop"), ("surveys", False, "stop")]
    assert chat.state.dialog is None


async def test_privacy_toggles_a_consent_and_shows_the_list_again(make_chat, signed_up_chat, t):
    chat = await signed_up_chat(make_chat())
    await chat.send("privacy")
    assert chat.texts[0].startswith("Here's what I may send you in this chat:\n✅ Marketing messages: on\n❌ Personal offers: off")
    assert chat.buttons == [
        ("off:marketing", "Stop Marketing messages"),
        ("on:personalised", "Allow Personal offers"),
        ("off:location", "Stop Offers nearby"),
        ("on:surveys", "Allow Surveys"),
        ("privacy:my_data", "My data"),
        ("privacy:pause", "Pause offers"),
        ("privacy:erase", "Delete me"),
        ("done", "Done"),
    ]
    await chat.press("on:personalised")
    assert chat.consent_changes() == [("personalised", True, "privacy")]
    assert chat.effects == [ConsentChange("personalised", "telegram", True, "privacy", "1")]
    assert "✅ Personal offers: on" in chat.texts[0]
    assert ("off:personalised", "Stop Personal offers") in chat.buttons

    await chat.send("1")  # the first button: turn off marketing
    assert chat.consent_changes() == [("marketing", False, "privacy")]
    await chat.send("done")
    assert chat.texts == [t("en", "privacy.saved", privacy="privacy")]
    assert chat.state.dialog is None
    assert [chat.granted(p) for p in PURPOSES] == [False, True, True, False]


async def test_privacy_in_the_middle_of_signup_resumes_the_question(make_chat, t, joined):
    chat = make_chat()
    await chat.command("start")
    await chat.press("continue")
    await chat.press("yes:marketing")
    await chat.command("privacy")
    assert len(chat.texts) == 1 and "✅ Marketing messages: on" in chat.texts[0]
    await chat.press("off:marketing")
    await chat.press("done")
    # the confirmation and the resumed question travel as one message
    assert chat.texts == [
        joined(t("en", "privacy.saved", privacy="privacy"), t("en", "consent.personalised.question", shop="Shop"))
    ]
    assert chat.buttons == [("yes:personalised", "Yes"), ("no:personalised", "No")]
    assert chat.granted("marketing") is False
    await chat.press("yes:personalised")
    assert chat.texts == [t("en", "consent.location.question", shop="Shop")]


async def test_help_shows_command_words_and_reasks_the_current_question(make_chat, t, joined, help_text):
    chat = make_chat(language_code="de")
    await chat.command("start")
    await chat.press("continue")
    await chat.send("Hilfe")
    shown = help_text("de")
    assert "• datenschutz – ansehen und ändern" in shown
    assert "• stopp –" in shown and "• sprache –" in shown
    assert "• kategorien –" in shown and "• beschwerde –" in shown
    assert chat.texts == [joined(shown, t("de", "consent.marketing.question", shop="Shop"))]
    assert chat.buttons == [("yes:marketing", "Ja"), ("no:marketing", "Nein")]


async def test_help_in_english_works_for_a_spanish_customer(make_chat, t, joined, help_text):
    chat = make_chat(language_code="es")
    await chat.command("start")
    await chat.send("help")
    assert "• privacidad:" in help_text("es") and "• parar:" in help_text("es")
    assert chat.texts == [joined(help_text("es"), t("es", "signup.language_check"))]
    assert chat.button_ids == ["continue", "language"]
    assert chat.labels == [t("es", "signup.continue"), t("es", "signup.change_language")]


async def test_slash_command_typed_as_text(make_chat, signed_up_chat, t, joined):
    chat = await signed_up_chat(make_chat(channel="whatsapp"))
    await chat.send("/help")
    assert len(chat.texts) == 1 and chat.texts[0].startswith("Here's what I can do:")
    assert chat.buttons == []
    await chat.send("/start")
    assert chat.texts == [joined("Welcome back, Alice!", t("en", "menu.question"))]
    assert chat.button_ids == MENU


async def test_menu_buttons_run_their_dialog_and_return_to_the_interrupted_step(make_chat, t, joined):
    chat = make_chat()
    await chat.command("start")
    await chat.press("continue")
    await chat.send("menu")
    assert chat.texts == [t("en", "menu.question")]
    assert chat.labels == MENU_LABELS
    await chat.press("language")
    assert chat.texts == [t("en", "language.question")]
    await chat.press("de")
    assert chat.texts == [joined(t("de", "language.changed"), t("de", "consent.marketing.question", shop="Shop"))]
    assert chat.buttons == [("yes:marketing", "Ja"), ("no:marketing", "Nein")]


async def test_stale_menu_button_still_works_when_idle(make_chat, signed_up_chat, help_text):
    chat = await signed_up_chat(make_chat())
    await chat.press("help")
    assert chat.texts == [help_text("en")]
    assert chat.buttons == []
    assert chat.state.dialog is None


async def test_language_command_when_idle_confirms_in_the_new_language(make_chat, signed_up_chat):
    chat = await signed_up_chat(make_chat())
    await chat.send("idioma")  # a Spanish command word works for an English customer
    await chat.send("Español")
    assert chat.texts == ["De acuerdo, a partir de ahora le escribiré en español."]  # formal "usted"
    assert chat.effects == [SetCustomer(locale="es")]
    assert chat.state.dialog is None and chat.state.locale == "es"
    await chat.send("ayuda")
    assert chat.texts[0].startswith("Esto es lo que puedo hacer:")


async def test_unknown_text_when_idle_explains_and_shows_the_menu(make_chat, signed_up_chat, t, joined):
    chat = await signed_up_chat(make_chat())
    await chat.send("purple")  # means nothing: no command, no intent
    assert chat.texts == [joined(t("en", "fallback.idle"), t("en", "menu.question"))]
    assert chat.button_ids == MENU
    assert chat.labels == MENU_LABELS


async def test_unsubscribe_withdraws_granted_consents_silently_and_blocks(make_chat, signed_up_chat):
    chat = await signed_up_chat(make_chat())
    await chat.event(Kind.UNSUBSCRIBED)
    assert chat.messages == []
    assert sorted(chat.consent_changes()) == [("location", False, "platform"), ("marketing", False, "platform")]
    assert SetIdentity(blocked=True) in chat.effects and chat.blocked

    await chat.event(Kind.RESUBSCRIBED)
    assert chat.messages == []
    assert chat.effects == [SetIdentity(blocked=False)] and not chat.blocked
    assert [chat.granted(p) for p in PURPOSES] == [False, False, False, False]


async def test_edited_message_changes_nothing(make_chat, t):
    chat = make_chat()
    await chat.command("start")
    await chat.press("continue")
    before = chat.state
    await chat.event(Kind.EDITED, text="yes")
    assert chat.messages == [] and chat.effects == []
    assert (chat.state.dialog, chat.state.step, chat.state.slots, chat.state.offered) == (
        before.dialog,
        before.step,
        before.slots,
        before.offered,
    )
    assert chat.granted("marketing") is None


async def test_agent_mode_keeps_the_bot_silent(make_chat):
    chat = make_chat()
    await chat.command("start")
    await chat.press("continue")
    await chat.press("yes:marketing")
    chat.state.mode = "agent"
    for text in ("yes", "help", "menu", "hello?"):
        await chat.send(text)
        assert chat.messages == [] and chat.effects == []
    await chat.command("start")
    assert chat.messages == []
    # stop is still honoured (consent law does not wait for the agent), without a word
    await chat.send("stop")
    assert chat.messages == []
    assert ("marketing", False, "stop") in chat.consent_changes()
    assert chat.state.step == "consent"


async def test_group_chat_only_answers_help(make_chat, help_text):
    chat = make_chat(chat_type="group", address="-1001234567890")
    await chat.send("hi everyone")
    assert chat.messages == [] and chat.effects == []
    await chat.command("start")
    assert chat.messages == []
    await chat.command("help")
    assert chat.texts == [help_text("en")]
    await chat.send("menu")
    assert chat.texts[0].startswith("Here's what I can do:")
    assert chat.state.dialog is None and chat.effects == []


@pytest.mark.parametrize(
    ("kind", "fields", "msgid"),
    [
        (Kind.MEDIA, {"media": Media(type="photo", ref="AgACAgQ")}, "fallback.photo"),
        (Kind.MEDIA, {"media": Media(type="document", ref="BQACAgQ")}, "fallback.document"),
        (Kind.MEDIA, {"media": Media(type="sticker", ref="CAACAgQ")}, "fallback.media"),
        (Kind.LOCATION, {"location": (48.2, 16.37)}, "fallback.location"),
        (Kind.CONTACT, {"contact_phone": "+15550100123"}, "fallback.contact"),
    ],
)
async def test_media_at_a_choice_step_gets_a_helpful_answer(make_chat, t, joined, kind, fields, msgid):
    chat = make_chat()
    await chat.command("start")
    await chat.press("continue")
    answer = joined(t("en", msgid), t("en", "consent.marketing.question", shop="Shop"))
    await chat.event(kind, **fields)
    assert chat.texts == [answer]
    assert chat.buttons == [("yes:marketing", "Yes"), ("no:marketing", "No")]
    await chat.event(kind, **fields)
    assert chat.texts == [answer]  # never escalates to the "still didn't get that" hint
    assert chat.buttons == [("yes:marketing", "Yes"), ("no:marketing", "No")]
    assert chat.state.misses == 0


async def test_photo_in_spanish(make_chat, t, joined):
    chat = make_chat(language_code="es")
    await chat.command("start")
    await chat.event(Kind.MEDIA, media=Media(type="photo", ref="x"), text="mira")
    assert chat.texts == [joined(t("es", "fallback.photo"), t("es", "signup.language_check"))]
    assert chat.texts[0].startswith("Aquí no puedo usar una foto; elija una de las opciones")  # formal "usted"
    assert chat.labels == ["Continuar", "Cambiar idioma"]


async def test_unknown_slash_command_is_a_miss(make_chat, t, joined):
    chat = make_chat()
    await chat.command("start")
    await chat.command("frobnicate")
    assert chat.texts == [joined(t("en", "fallback.retry"), t("en", "signup.language_check"))]
    assert chat.labels == ["Continue", "Change language"]
    assert chat.state.misses == 1


async def test_interrupted_dialogs_nest_and_unwind(make_chat, t, joined):
    chat = make_chat()
    await chat.command("start")
    await chat.press("continue")
    await chat.send("language")  # signup -> language
    await chat.send("privacy")  # language -> privacy
    await chat.press("done")  # back to the language question
    assert chat.texts == [joined(t("en", "privacy.saved", privacy="privacy"), t("en", "language.question"))]
    assert chat.buttons == [("en", "English"), ("de", "Deutsch"), ("es", "Español")]
    await chat.press("es")  # back to the consent question, in Spanish
    assert chat.texts == [joined(t("es", "language.changed"), t("es", "consent.marketing.question", shop="Shop"))]
    assert chat.buttons == [("yes:marketing", "Sí"), ("no:marketing", "No")]
    assert chat.state.dialog == "signup"


async def test_whatsapp_stop_promos_quick_reply_is_the_stop_command(make_chat, signed_up_chat):
    chat = await signed_up_chat(make_chat(channel="whatsapp", address="15550100201"))
    await chat.press("STOP_PROMOS")  # a template quick-reply payload, never offered by a dialog
    # every marketing purpose gets a "stop" row, granted or not: the channel is stopped
    assert sorted(chat.consent_changes()) == [("location", False, "stop"), ("marketing", False, "stop"), ("personalised", False, "stop"), ("surveys", False, "stop")]


async def test_viber_keyboard_reply_arrives_as_text_with_the_button_id(make_chat):
    chat = make_chat(channel="viber")
    await chat.command("start")
    await chat.send("continue")  # Viber echoes a reply button's ActionBody as plain text
    await chat.send("no:marketing")
    assert chat.granted("marketing") is False
    await chat.send("no:marketing")  # an older message's button, echoed as text: not an answer
    assert chat.granted("personalised") is None and chat.state.misses == 1


async def test_yes_and_no_words_of_every_language_answer_in_any_chat(make_chat):
    chat = make_chat()  # an English chat
    await chat.command("start")
    await chat.press("continue")
    await chat.send("nein")
    assert chat.consent_changes() == [("marketing", False, "signup")]
    await chat.send("ja")
    assert chat.consent_changes() == [("personalised", True, "signup")]
    await chat.send("sí")
    assert chat.consent_changes() == [("location", True, "signup")]
