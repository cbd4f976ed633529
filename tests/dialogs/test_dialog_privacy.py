"""Privacy in the chat: consents per channel, my data, delete me, pause offers, typed in three languages.

The customer signed up on Telegram; consents on other channels are appended
to ``chat.consent_log`` directly, as the pipeline would have recorded them
from those chats.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.config import ConsentPurpose
from bot.dialog import COMMANDS, DialogEngine, normalise
from bot.turn import ConsentChange, EraseCustomer, PauseMarketing, SendMyData
from tests.dialogs.conftest import Chat

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=timezone.utc)
RESUME = NOW + timedelta(days=30)  # 9 April 2025
DEFAULT = {"marketing": True, "personalised": False, "location": True, "surveys": False}
ACTIONS = [("privacy:my_data", "My data"), ("privacy:pause", "Pause offers"), ("privacy:erase", "Delete me")]


def on_telegram(make_chat, lang: str = "en", **granted: bool) -> Chat:
    """A known customer on Telegram; by default marketing and location granted, the rest refused.

    The consents are put in the log directly, as sign-up would have recorded
    them, so these tests do not depend on what follows the sign-up.
    """
    chat = make_chat(language_code=lang)
    chat.turns, chat.locale, chat.first_name, chat.now = 1, lang, "Alice", NOW
    answered_on(chat, "telegram", **(granted or DEFAULT))
    return chat


def answered_on(chat: Chat, channel: str, version: str = "1", **granted: bool) -> None:
    """Consents the customer gave in another chat (the newest state per purpose and channel counts)."""
    for purpose, value in granted.items():
        chat.consent_log.append(ConsentChange(purpose, channel, value, "signup", version))


def privacy_word(t, lang: str) -> str:
    """The word that opens the privacy screen in ``lang`` ("datenschutz")."""
    return t(lang, "commands.privacy").split("|")[0]


def withdrawals(chat: Chat) -> list[tuple[str, str, str, str]]:
    """(purpose, channel, source, wording version) of the last turn's withdrawals."""
    return [(e.purpose, e.channel, e.source, e.wording_version) for e in chat.effects if isinstance(e, ConsentChange) and not e.granted]


# ----------------------------------------------------------------------------- per channel


async def test_the_screen_shows_this_chat_and_a_line_per_other_channel(make_chat):
    chat = on_telegram(make_chat)
    answered_on(chat, "whatsapp", marketing=True, surveys=False)
    await chat.send("privacy")
    assert chat.texts == [
        ("Here's what I may send you in this chat:\n"
        "✅ Marketing messages: on\n"
        "❌ Personal offers: off\n"
        "✅ Offers nearby: on\n"
        "❌ Surveys: off\n"
        "\n"
        "In your other chats with us:\n"
        "WhatsApp: Marketing messages ✅, Personal offers ❌, Offers nearby ❌, Surveys ❌\n"
        "\n"
        "Tap an option to switch it on or off, then tap “Done”.")
    ]
    assert chat.buttons == [
        ("off:marketing", "Stop Marketing messages"),
        ("on:personalised", "Allow Personal offers"),
        ("off:location", "Stop Offers nearby"),
        ("on:surveys", "Allow Surveys"),
        ("privacy:channels", "Other chats"),
        *ACTIONS,
        ("done", "Done"),
    ]


async def test_without_other_channels_there_is_no_other_chats_button(make_chat, t):
    chat = on_telegram(make_chat)
    await chat.send("privacy")
    assert t("en", "privacy.other_title") not in chat.text
    assert "privacy:channels" not in chat.button_ids


async def test_another_channel_can_be_switched_off_but_not_on_from_here(make_chat, t, joined):
    chat = on_telegram(make_chat)
    answered_on(chat, "whatsapp", marketing=True, personalised=True, surveys=False)
    await chat.send("privacy")
    await chat.press("privacy:channels")  # the only other channel opens at once
    howto = t("en", "privacy.channel_howto", channel="WhatsApp")
    assert chat.texts == [
        "Here's what I may send you on WhatsApp:\n"
        "✅ Marketing messages: on\n"
        "✅ Personal offers: on\n"
        "❌ Offers nearby: off\n"
        "❌ Surveys: off\n"
        "\n" + howto
    ]
    assert chat.buttons == [
        ("off:marketing@whatsapp", "Stop Marketing messages"),
        ("off:personalised@whatsapp", "Stop Personal offers"),
        ("back:privacy", "Back"),
    ]

    await chat.press("off:marketing@whatsapp")
    assert chat.effects == [ConsentChange("marketing", "whatsapp", False, "privacy", "1")]
    assert "❌ Marketing messages: off" in chat.texts[0]
    assert chat.button_ids == ["off:personalised@whatsapp", "back:privacy"]
    assert chat.snapshot().consent("marketing", "telegram").granted is True  # this chat untouched

    await chat.press("off:marketing@whatsapp")  # a double tap: no longer offered, nothing recorded
    assert chat.effects == []

    await chat.press("back:privacy")
    assert "WhatsApp: Marketing messages ❌, Personal offers ✅" in chat.texts[0]
    assert chat.texts[0].startswith(t("en", "privacy.title"))


async def test_several_other_channels_are_picked_first(make_chat):
    chat = on_telegram(make_chat)
    answered_on(chat, "whatsapp", marketing=True)
    answered_on(chat, "viber", surveys=True)
    await chat.send("privacy")
    assert "Viber: Marketing messages ❌, Personal offers ❌, Offers nearby ❌, Surveys ✅" in chat.texts[0]
    assert "WhatsApp: Marketing messages ✅, Personal offers ❌, Offers nearby ❌, Surveys ❌" in chat.texts[0]
    await chat.press("privacy:channels")
    assert chat.texts == ["Which chat would you like to look at?"]
    assert chat.buttons == [("channel:viber", "Viber"), ("channel:whatsapp", "WhatsApp"), ("back:privacy", "Back")]
    await chat.send("viber")  # a typed label picks the channel
    assert chat.buttons == [("off:surveys@viber", "Stop Surveys"), ("back:privacy", "Back")]
    await chat.press("off:surveys@viber")
    assert chat.effects == [ConsentChange("surveys", "viber", False, "privacy", "1")]


async def test_this_chat_toggles_still_work_and_done_saves(make_chat, t):
    chat = on_telegram(make_chat)
    answered_on(chat, "whatsapp", personalised=True)
    await chat.send("privacy")
    await chat.press("on:personalised")
    assert chat.effects == [ConsentChange("personalised", "telegram", True, "privacy", "1")]
    assert chat.snapshot().consent("personalised", "whatsapp").granted is True
    await chat.press("done")
    assert chat.texts == [t("en", "privacy.saved", privacy="privacy")]
    assert chat.state.dialog is None


async def test_too_many_purposes_for_one_list_get_a_screen_of_their_own(make_chat, config, i18n):
    crowded = config.model_copy(deep=True)
    crowded.consent_purposes += [ConsentPurpose(id=f"extra{i}") for i in range(3)]  # 7 purposes
    chat = on_telegram(make_chat)
    chat.engine = DialogEngine(crowded, i18n)
    await chat.send("privacy")
    assert len(chat.buttons) <= 10
    assert chat.button_ids == ["privacy:here", *[i for i, _ in ACTIONS], "done"]
    await chat.press("privacy:here")
    assert chat.button_ids[:2] == ["off:marketing", "on:personalised"] and len(chat.buttons) == 8
    await chat.press("on:extra2")
    assert chat.effects == [ConsentChange("extra2", "telegram", True, "privacy", "1")]
    assert chat.button_ids[-1] == "back:privacy"


def test_button_labels_fit_whatsapp_in_every_language(config, i18n):
    """Reply-button labels ≤ 20 characters, toggle labels (list rows) ≤ 24."""
    actions = ["privacy.my_data", "privacy.pause", "privacy.erase", "privacy.back", "privacy.other_channels",
               "privacy.this_channel", "privacy.erase_yes", "privacy.erase_no"]  # fmt: skip
    actions += [f"privacy.channel.{c}" for c in ("telegram", "viber", "whatsapp", "sms", "email")]  # chooser buttons
    for lang in ("en", "de", "es"):
        for msgid in actions:
            assert len(i18n.text(lang, msgid)) <= 20, (lang, msgid)
        for purpose in config.consent_purposes:
            short = i18n.text(lang, f"consent.{purpose.id}.short")
            for toggle in ("privacy.turn_on", "privacy.turn_off"):
                assert len(i18n.text(lang, toggle, name=short)) <= 24, (lang, toggle, purpose.id)


def test_typed_action_words_mean_one_thing(i18n):
    """No privacy action word is a yes/no word, a command or another action's word, in any language."""
    meanings: dict[str, set[str]] = {}
    groups = ["words.yes", "words.no", *(f"commands.{c}" for c in COMMANDS)]
    groups += ["privacy.words.my_data", "privacy.words.pause", "privacy.words.erase"]
    for lang in ("en", "de", "es"):
        for group in groups:
            for word in i18n.words(lang, group):
                meanings.setdefault(normalise(word), set()).add(group)
    assert {word: g for word, g in meanings.items() if len(g) > 1} == {}


# ----------------------------------------------------------------------------- my data


async def test_my_data_asks_the_store_for_the_report_and_ends(make_chat, t):
    chat = on_telegram(make_chat)
    await chat.send("privacy")
    await chat.press("privacy:my_data")
    assert chat.effects == [SendMyData()]
    assert chat.other_effects == [SendMyData()]
    assert chat.texts == [t("en", "privacy.my_data_sent")]
    assert chat.state.dialog is None

    await chat.press("privacy:my_data")  # a second tap on the old screen: no second report
    assert chat.other_effects == [SendMyData()]


@pytest.mark.parametrize("lang,typed", [("en", "my data"), ("de", "Meine Daten"), ("es", "mis datos"), ("de", "auskunft")])
async def test_my_data_typed_on_the_privacy_screen(make_chat, t, lang, typed):
    chat = on_telegram(make_chat, lang)
    await chat.send(privacy_word(t, lang))
    await chat.send(typed)
    assert chat.other_effects == [SendMyData()]
    assert chat.texts == [t(lang, "privacy.my_data_sent")]


# ----------------------------------------------------------------------------- delete me


async def test_delete_me_no_goes_back_and_records_nothing(make_chat, t, joined):
    chat = on_telegram(make_chat)
    await chat.send("privacy")
    listing = chat.texts[0]
    await chat.press("privacy:erase")
    assert chat.texts == [t("en", "privacy.erase_question")]
    assert chat.buttons == [("yes:erase", "Yes, delete me"), ("no:erase", "No, keep my data")]
    await chat.press("no:erase")
    assert chat.effects == []
    assert chat.texts == [joined(t("en", "privacy.erase_kept"), listing)]

    await chat.press("yes:erase")  # the old question's Yes, pressed after No: stale
    assert chat.effects == [] and not chat.erased
    assert chat.texts == [listing]


async def test_delete_me_yes_withdraws_everything_everywhere_then_erases(make_chat, t):
    chat = on_telegram(make_chat)
    answered_on(chat, "whatsapp", version="2", marketing=True, surveys=True, location=False)
    await chat.send("privacy")
    await chat.press("privacy:erase")
    await chat.send("yes")
    assert sorted(withdrawals(chat)) == [
        ("location", "telegram", "erasure", "1"),
        ("marketing", "telegram", "erasure", "1"),
        ("marketing", "whatsapp", "erasure", "2"),
        ("surveys", "whatsapp", "erasure", "2"),
    ]
    assert isinstance(chat.effects[-1], EraseCustomer)
    assert chat.erased
    assert not any(c.granted for c in chat.snapshot().consents)
    assert chat.texts == [t("en", "privacy.erased")]
    assert chat.state.dialog is None and chat.state.step is None
    assert chat.state.slots == {} and chat.state.offered == []

    await chat.press("yes:erase")  # a second tap on the old question: nothing more
    assert not any(isinstance(e, (ConsentChange, EraseCustomer)) for e in chat.effects)


async def test_delete_me_during_signup_does_not_resume_it(make_chat, t):
    chat = make_chat()
    await chat.command("start")
    await chat.press("continue")
    await chat.answer("yes")  # marketing granted, now asked about personalised
    await chat.send("privacy")
    await chat.press("privacy:erase")
    await chat.answer("yes")
    assert withdrawals(chat) == [("marketing", "telegram", "erasure", "1")]
    assert chat.texts == [t("en", "privacy.erased")]
    assert chat.state.dialog is None and chat.state.slots == {}


@pytest.mark.parametrize("lang,typed,yes", [("de", "Lösche mich", "ja"), ("es", "borrar mis datos", "sí"), ("de", "delete me", "ja")])
async def test_delete_me_typed_and_confirmed_in_every_language(make_chat, t, lang, typed, yes):
    chat = on_telegram(make_chat, lang, marketing=True, personalised=False, location=True, surveys=True)
    await chat.send(privacy_word(t, lang))
    await chat.send(typed)
    assert chat.texts == [t(lang, "privacy.erase_question")]
    await chat.send(yes)
    assert sorted(p for p, _, _, _ in withdrawals(chat)) == ["location", "marketing", "surveys"]
    assert chat.erased
    assert chat.texts == [t(lang, "privacy.erased")]


# ----------------------------------------------------------------------------- pause offers


async def test_pause_withdraws_marketing_on_every_channel_for_thirty_days(make_chat, config, i18n, t):
    mixed = config.model_copy(deep=True)
    mixed.consent_purposes[3].marketing = False  # surveys are not marketing in this shop
    chat = on_telegram(make_chat, marketing=True, personalised=False, location=True, surveys=True)
    chat.engine = DialogEngine(mixed, i18n)
    answered_on(chat, "whatsapp", version="2", marketing=True, personalised=True)
    await chat.send("privacy")
    await chat.press("privacy:pause")
    assert sorted(withdrawals(chat)) == [
        ("location", "telegram", "pause", "1"),
        ("marketing", "telegram", "pause", "1"),
        ("marketing", "whatsapp", "pause", "2"),
        ("personalised", "whatsapp", "pause", "2"),
    ]
    assert chat.effects[-1] == PauseMarketing(until=RESUME)
    assert chat.paused_until == RESUME
    assert chat.snapshot().consent("surveys").granted is True
    assert chat.texts == [
        ("Done. I've paused these until Apr 9, 2025:\n"
        "• Marketing messages\n"
        "• Personal offers\n"
        "• Offers nearby\n"
        "\n"
        "They switch back on by themselves on that day. To turn them on earlier, type privacy.")
    ]
    assert chat.state.dialog is None

    await chat.send("privacy")  # while paused, the screen says until when
    assert t("en", "privacy.paused_line", date="Apr 9, 2025") in chat.texts[0]
    chat.now = RESUME + timedelta(minutes=1)
    await chat.send("privacy")
    assert "⏸" not in chat.texts[0]


@pytest.mark.parametrize("lang,typed,day", [("de", "Angebote pausieren", "09.04.2025"), ("es", "pausar ofertas", "9 abr 2025")])
async def test_pause_typed_says_the_date_in_the_customers_language(make_chat, i18n, t, lang, typed, day):
    chat = on_telegram(make_chat, lang, marketing=True, personalised=False, location=False, surveys=False)
    await chat.send(privacy_word(t, lang))
    await chat.send(typed)
    assert withdrawals(chat) == [("marketing", "telegram", "pause", "1")]
    assert i18n.format_date(lang, RESUME) == day  # Babel's medium date
    name = t(lang, "consent.marketing.name")
    howto = t(lang, "privacy.paused_howto", privacy=privacy_word(t, lang))
    assert chat.texts == [f"{t(lang, 'privacy.paused', date=day)}\n• {name}\n\n{howto}"]
    await chat.send(privacy_word(t, lang))
    assert t(lang, "privacy.paused_line", date=day) in chat.texts[0]


async def test_nothing_to_pause_says_so_and_shows_the_screen_again(make_chat, t, joined):
    chat = on_telegram(make_chat, marketing=False, personalised=False, location=False, surveys=False)
    await chat.send("privacy")
    listing = chat.texts[0]
    await chat.send("pause offers")
    assert chat.effects == [] and chat.paused_until is None
    assert chat.texts == [joined(t("en", "privacy.nothing_to_pause"), listing)]
    assert chat.state.step == "list"


async def test_stale_pause_press_after_the_screen_closed_records_nothing(make_chat):
    chat = on_telegram(make_chat)
    await chat.send("privacy")
    await chat.press("done")
    await chat.press("privacy:pause")
    assert chat.effects == [] and chat.paused_until is None
    assert chat.granted("marketing") is True


async def test_unknown_text_on_the_screen_is_a_miss(make_chat, t):
    chat = on_telegram(make_chat)
    await chat.send("privacy")
    await chat.send("banana")
    assert chat.effects == []
    assert chat.texts[0].startswith(t("en", "fallback.retry"))
    assert chat.state.step == "list"


# ----------------------------------------------------------------------------- stop


async def test_stop_withdraws_marketing_on_this_channel_only(make_chat):
    chat = on_telegram(make_chat)
    answered_on(chat, "whatsapp", marketing=True)
    await chat.send("stop")
    assert {(p, c, src) for p, c, src, _ in withdrawals(chat)} == {
        (p, "telegram", "stop") for p in ("location", "marketing", "personalised", "surveys")
    }
    assert chat.snapshot().consent("marketing", "whatsapp").granted is True

