"""Buttons that outlive their question: a double tap, or a press on an older message.

Telegram inline buttons and WhatsApp reply buttons stay pressable on old
messages, and a quick second tap arrives after the question has moved on.
Such a press must never record a consent the customer did not give to the
question shown, and a privacy button must do what its label says.
"""

from __future__ import annotations

import pytest

from bot.turn import ConsentChange


def question(t, purpose: str, locale: str = "en") -> str:
    return t(locale, f"consent.{purpose}.question", shop="Shop")


async def at_marketing_question(make_chat):
    chat = make_chat()
    await chat.command("start")
    await chat.press("continue")
    return chat


async def test_double_tap_does_not_answer_the_next_question(make_chat, t):
    """The reported repro: "no" then a quick "yes" meant for nothing yet shown."""
    chat = await at_marketing_question(make_chat)
    marketing_buttons = chat.button_ids
    await chat.press(marketing_buttons[1])  # No
    assert chat.consent_changes() == [("marketing", False, "signup")]
    assert chat.texts == [question(t, "personalised")]

    for stale in (marketing_buttons[0], marketing_buttons[1]):  # Yes, and No again, on the old message
        await chat.press(stale)
        assert chat.effects == []
        assert chat.texts == [question(t, "personalised")]  # shown again, no "didn't get that"
        assert chat.button_ids == ["yes:personalised", "no:personalised"]
        assert chat.state.misses == 0
    assert chat.granted("personalised") is None
    assert [(c.purpose, c.granted) for c in chat.consent_log] == [("marketing", False)]

    await chat.answer("yes")  # the question actually shown
    assert chat.effects == [ConsentChange("personalised", "telegram", True, "signup", "1")]
    assert chat.texts == [question(t, "location")]


async def test_an_earlier_questions_button_later_in_the_signup_records_nothing(make_chat, t):
    chat = await at_marketing_question(make_chat)
    await chat.press("no:marketing")
    await chat.press("no:personalised")
    assert chat.texts == [question(t, "location")]
    await chat.press("yes:marketing")  # scrolled up, changed their mind on the first message
    assert chat.effects == [] and chat.granted("marketing") is False
    await chat.press("yes:personalised")
    assert chat.effects == [] and chat.granted("personalised") is False
    assert chat.texts == [question(t, "location")]
    assert chat.granted("location") is None


async def test_a_later_questions_button_cannot_answer_ahead(make_chat, t):
    """An id for a question not yet asked (forged, or from an earlier sign-up) is not an answer either."""
    chat = await at_marketing_question(make_chat)
    await chat.press("yes:surveys")
    assert chat.effects == [] and chat.granted("surveys") is None
    assert chat.texts == [question(t, "marketing")]


async def test_double_tapped_continue_shows_the_first_question_again(make_chat, t):
    chat = await at_marketing_question(make_chat)
    await chat.press("continue")
    assert chat.effects == [] and chat.texts == [question(t, "marketing")]
    assert chat.state.step == "consent"


async def test_typed_answers_still_answer_the_open_question(make_chat, t):
    chat = make_chat(language_code="de")
    await chat.command("start")
    await chat.send("ja")  # Continue
    await chat.send("nein")
    await chat.send("ja")
    assert [(c.purpose, c.granted) for c in chat.consent_log] == [("marketing", False), ("personalised", True)]
    assert chat.texts == [question(t, "location", "de")]


async def test_old_signup_button_after_signup_records_nothing(make_chat, signed_up_chat, t, joined):
    chat = await signed_up_chat(make_chat())  # marketing yes, personalised no, ...
    await chat.press("yes:personalised")
    assert chat.effects == [] and chat.granted("personalised") is False
    assert chat.texts == [joined(t("en", "fallback.idle"), t("en", "menu.question"))]


async def test_old_signup_button_during_privacy_records_nothing(make_chat, t):
    chat = await at_marketing_question(make_chat)
    await chat.press("yes:marketing")
    await chat.send("privacy")
    await chat.press("yes:personalised")  # the sign-up question below the privacy list
    assert chat.effects == [] and chat.granted("personalised") is None
    assert chat.texts[0].startswith(t("en", "privacy.title"))
    await chat.press("done")
    assert chat.texts[0].endswith(question(t, "personalised"))


# ----------------------------------------------------------------------------- privacy


@pytest.mark.parametrize("taps", [2, 3])
async def test_double_tapped_turn_off_stays_off(make_chat, signed_up_chat, t, taps):
    chat = await signed_up_chat(make_chat())
    await chat.send("privacy")
    assert ("off:marketing", "Stop Marketing messages") in chat.buttons
    for _ in range(taps):
        await chat.press("off:marketing")
    assert chat.effects == []  # the extra taps recorded nothing
    assert chat.granted("marketing") is False
    assert [c for c in chat.consent_log if c.source == "privacy"] == [
        ConsentChange("marketing", "telegram", False, "privacy", "1")
    ]
    assert "❌ Marketing messages: off" in chat.texts[0]
    assert ("on:marketing", "Allow Marketing messages") in chat.buttons


async def test_double_tapped_turn_on_stays_on(make_chat, signed_up_chat):
    chat = await signed_up_chat(make_chat())  # personalised refused
    await chat.send("privacy")
    await chat.press("on:personalised")
    await chat.press("on:personalised")
    assert chat.effects == [] and chat.granted("personalised") is True
    assert [c.granted for c in chat.consent_log if c.source == "privacy"] == [True]


async def test_turn_off_from_an_older_list_does_not_turn_it_back_on(make_chat, signed_up_chat):
    chat = await signed_up_chat(make_chat())
    await chat.send("privacy")
    old_list = chat.button_ids  # "off:marketing" on this message
    await chat.press("off:marketing")
    await chat.send("done")
    await chat.send("privacy")  # a new list: "Allow Marketing messages"
    await chat.press(old_list[0])  # "Stop Marketing messages" on the old message
    assert chat.effects == [] and chat.granted("marketing") is False
    assert ("on:marketing", "Allow Marketing messages") in chat.buttons


async def test_a_turn_off_button_offered_before_a_silent_stop_records_nothing(make_chat, signed_up_chat):
    """The label's state is what counts, even when the offered list is out of date.

    While an agent has the chat, "stop" withdraws marketing without a word and
    the bot's privacy list (offering "Stop") stays the open question.
    """
    chat = await signed_up_chat(make_chat())
    await chat.send("privacy")
    assert "off:marketing" in chat.button_ids
    chat.state.mode = "agent"
    await chat.send("stop")
    assert chat.granted("marketing") is False
    chat.state.mode = "bot"
    await chat.press("off:marketing")
    assert chat.effects == [] and chat.granted("marketing") is False
    assert "❌ Marketing messages: off" in chat.texts[0]


async def test_stale_privacy_button_during_signup_records_nothing(make_chat, signed_up_chat, config, i18n, t):
    from bot.dialog import DialogEngine

    chat = await signed_up_chat(make_chat())
    await chat.send("privacy")
    old_list = chat.button_ids  # includes "on:personalised"
    await chat.send("done")
    bumped = config.model_copy(deep=True)
    bumped.consent_purposes[2].version = "2"  # location is asked again
    chat.engine = DialogEngine(bumped, i18n)
    await chat.command("start")
    await chat.press("continue")
    assert chat.texts == [question(t, "location")]
    await chat.press(old_list[1])  # "Allow Personal offers"
    assert chat.effects == [] and chat.granted("personalised") is False
    assert chat.texts == [question(t, "location")]
