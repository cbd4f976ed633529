"""The order survey, started by a trigger: branches, typed and pressed answers, leaving, expiry, reward."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.config import Survey
from bot.dialog import DialogEngine
from bot.turn import IssueCode, SurveyAnswer, SurveyStatus
from dialogs.survey import condition_holds, next_question, next_regular
from tests.dialogs.conftest import Chat, signed_up

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
SURVEY_CONSENT = ("no", "no", "no", "yes")  # marketing, personalised, location, surveys (no welcome offer)
RATING5 = [(f"{n}:rating", str(n)) for n in range(1, 6)]
RATING10 = [(f"{n}:recommend", str(n)) for n in range(0, 11)]
LEAVE = ("leave:order_feedback", "Stop survey")


async def surveyed(make_chat, signed_up_chat, **kwargs):
    """A signed-up customer who allowed surveys, with the clock at T0."""
    chat = make_chat(**kwargs)
    chat.now = T0
    return await signed_up_chat(chat, SURVEY_CONSENT)


@pytest.fixture
def q(config):
    """The default survey's question text in a language: ``q("rating", "de")``."""
    survey = config.survey("order_feedback")

    def text(question_id: str, lang: str = "en") -> str:
        return survey.question(question_id).text.get(lang)

    return text


@pytest.fixture
def comment_prompt(q, t):
    def prompt(lang: str = "en") -> str:
        return "\n".join([q("comment", lang), t(lang, "survey.text_hint", skip=t(lang, "survey.skip"))])

    return prompt


@pytest.fixture
def completion(t):
    """The completion message for the reward code the chat holds last, as the customer sees it."""

    def text(chat, lang: str, category: str, percent: str, date: str) -> str:
        code = chat.codes[-1].code
        link = f"https://shop.example/c/{chat.codes[-1].category}?code={code}"
        reward = t(lang, "survey.reward", percent=percent, category=category, code=code, date=date)
        return "\n\n".join([t(lang, "survey.thanks"), "\n".join([reward, t(lang, "survey.reward_link", link=link)])])

    return text


def answers(chat) -> list[tuple[str, str, str]]:
    return [(a.order, a.question, a.answer) for a in chat.survey_answers]


# ----------------------------------------------------------------------------- branches


async def test_a_low_rating_asks_what_went_wrong_then_the_comment_and_rewards(
    make_chat, signed_up_chat, t, q, comment_prompt, completion, joined
):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    intro = t("en", "survey.intro", title="How was your order?", order="A-1001")
    assert chat.texts == [joined(intro, q("rating"))]
    assert intro.startswith("How was your order?\nWe'd love to hear how your order A-1001 went")
    assert chat.buttons == [*RATING5, LEAVE]
    assert chat.effects == []

    await chat.press("2:rating")
    assert chat.texts == [q("what_wrong")]
    assert chat.buttons == [
        ("1:what_wrong", "Delivery"),
        ("2:what_wrong", "Product quality"),
        ("3:what_wrong", "Price"),
        ("4:what_wrong", "Something else"),
        LEAVE,
    ]
    assert chat.effects == [SurveyAnswer("order_feedback", "A-1001", "rating", "2")]

    await chat.press("1:what_wrong")
    assert chat.texts == [comment_prompt()]
    assert chat.buttons == [("skip:comment", "Skip"), LEAVE]

    await chat.send("The parcel came a week late.")
    assert answers(chat) == [
        ("A-1001", "rating", "2"),
        ("A-1001", "what_wrong", "1"),
        ("A-1001", "comment", "The parcel came a week late."),
    ]
    assert chat.survey_status == {("order_feedback", "A-1001"): "completed"}
    # No favourites: the reward is on the first catalog category, 5 % for 30 days.
    assert chat.codes == [
        IssueCode(
            code=chat.codes[0].code,
            category="shoes",
            percent=5,
            expires_at=T0 + timedelta(days=30),
            source="survey",
            reference="order_feedback:A-1001",
        )
    ]
    assert chat.texts == [completion(chat, "en", "Shoes", "5%", "Apr 1, 2026")]
    assert chat.state.dialog is None


async def test_a_high_rating_asks_for_a_recommendation_answered_by_a_typed_number(
    make_chat, signed_up_chat, q, comment_prompt
):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.press("5:rating")
    assert chat.texts == [q("recommend")]
    assert chat.buttons == [*RATING10, LEAVE]

    await chat.send("7")  # the button labelled 7, not the seventh button
    assert chat.effects == [SurveyAnswer("order_feedback", "A-1001", "recommend", "7")]
    assert chat.texts == [comment_prompt()]

    await chat.send("10")
    assert answers(chat)[-1] == ("A-1001", "comment", "10")  # a number typed at a text question is its answer
    assert answers(chat) == [("A-1001", "rating", "5"), ("A-1001", "recommend", "7"), ("A-1001", "comment", "10")]
    assert chat.survey_status == {("order_feedback", "A-1001"): "completed"}


async def test_a_middle_rating_has_no_follow_up(make_chat, signed_up_chat, comment_prompt):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.send("3")
    assert chat.texts == [comment_prompt()]
    assert answers(chat) == [("A-1001", "rating", "3")]


@pytest.mark.parametrize(("typed", "answer"), [("Price", "3"), ("price", "3"), ("2", "2"), ("Something else", "4")])
async def test_a_choice_can_be_typed_by_label_or_number(make_chat, signed_up_chat, comment_prompt, typed, answer):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.press("1:rating")
    await chat.send(typed)
    assert chat.effects == [SurveyAnswer("order_feedback", "A-1001", "what_wrong", answer)]
    assert chat.texts == [comment_prompt()]


async def test_skip_records_no_comment_and_completes(make_chat, signed_up_chat, t, completion):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.press("4:rating")
    await chat.press("9:recommend")
    await chat.press("skip:comment")
    assert answers(chat) == [("A-1001", "rating", "4"), ("A-1001", "recommend", "9")]
    assert chat.survey_status == {("order_feedback", "A-1001"): "completed"}
    assert chat.texts == [completion(chat, "en", "Shoes", "5%", "Apr 1, 2026")]


async def test_typing_skip_is_the_skip_button(make_chat, signed_up_chat):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.press("3:rating")
    await chat.send("skip")
    assert [e for e in chat.effects if isinstance(e, SurveyAnswer)] == []
    assert chat.survey_status == {("order_feedback", "A-1001"): "completed"}


async def test_typed_numbers_outside_the_scale_never_answer_or_leave(make_chat, signed_up_chat, t, q, joined):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    for typed in ("6", "0", "7", "-1", "-5", "+9"):  # "6" would be the sixth button, "Stop survey"; "-1" reads like "1"
        await chat.send(typed)
        assert chat.texts == [joined(t("en", "survey.rating_range", low=1, high=5), q("rating"))], typed
        assert chat.effects == []
        assert chat.state.dialog == "survey"

    await chat.press("1:rating")
    await chat.send("5")  # the fifth button of the choice is "Stop survey"
    assert chat.texts == [joined(t("en", "fallback.retry"), q("what_wrong"))]
    assert chat.effects == []
    assert chat.state.dialog == "survey"

    await chat.send("great")  # not an option at all: the engine's retry
    assert chat.texts == [joined(t("en", "fallback.retry"), q("what_wrong"))]


async def test_a_typed_rating_counts_by_its_value(make_chat, signed_up_chat):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.send(" +4 ")
    assert [(e.question, e.answer) for e in chat.effects if isinstance(e, SurveyAnswer)] == [("rating", "4")]


# ----------------------------------------------------------------------------- leaving, interruptions


async def test_leaving_keeps_the_answers_given_so_far(make_chat, signed_up_chat, t):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.press("1:rating")
    await chat.press_label("Stop survey")
    assert chat.texts == [t("en", "survey.left")]
    assert answers(chat) == [("A-1001", "rating", "1")]
    assert chat.survey_status == {("order_feedback", "A-1001"): "left"}  # the answers so far stay
    assert chat.codes == []
    assert chat.state.dialog is None


async def test_typing_the_leave_label_leaves(make_chat, signed_up_chat, t):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.send("stop survey")
    assert chat.texts == [t("en", "survey.left")]
    assert chat.consent_changes() == []  # not the stop command
    assert chat.granted("surveys") is True


@pytest.fixture
def is_help_then(t):
    """Whether a turn's messages are the help text followed by ``question`` (one message, as the engine joins them)."""

    def check(texts: list[str], question: str) -> bool:
        words = {c: t("en", f"commands.{c}").split("|")[0] for c in ("help", "menu", "privacy", "language", "stop")}
        [text] = texts
        return text.startswith(t("en", "help.text", **words)) and text.endswith("\n\n" + question)

    return check


async def test_help_interrupts_and_the_question_is_asked_again(make_chat, signed_up_chat, q, is_help_then):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.press("5:rating")
    await chat.send("help")
    assert is_help_then(chat.texts, q("recommend"))
    assert chat.buttons == [*RATING10, LEAVE]
    await chat.press("8:recommend")
    assert answers(chat) == [("A-1001", "rating", "5"), ("A-1001", "recommend", "8")]


async def test_the_menu_interrupts_and_the_survey_resumes_after_it(make_chat, signed_up_chat, t, q, is_help_then):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.send("menu")
    assert chat.state.dialog == "menu"
    assert chat.texts == [t("en", "menu.question")]
    await chat.press("help")
    assert is_help_then(chat.texts, q("rating"))
    assert chat.buttons == [*RATING5, LEAVE]
    assert chat.state.dialog == "survey"
    await chat.press("2:rating")
    assert answers(chat) == [("A-1001", "rating", "2")]


async def test_language_switches_the_survey_to_german_midway(make_chat, signed_up_chat, t, q, comment_prompt, completion):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.press("4:rating")
    await chat.send("language")
    await chat.press("de")
    assert chat.texts == ["\n\n".join([t("de", "language.changed"), q("recommend", "de")])]
    assert chat.buttons == [*RATING10[:], ("leave:order_feedback", "Umfrage beenden")]

    await chat.send("9")
    assert chat.texts == [comment_prompt("de")]
    assert chat.buttons == [("skip:comment", "Überspringen"), ("leave:order_feedback", "Umfrage beenden")]
    await chat.send("überspringen")
    assert answers(chat) == [("A-1001", "rating", "4"), ("A-1001", "recommend", "9")]
    assert chat.texts == [completion(chat, "de", "Schuhe", "5\xa0%", "01.04.2026")]


async def test_a_trigger_interrupts_a_running_dialog_which_resumes_afterwards(make_chat, signed_up_chat, t, q, joined):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.send("privacy")
    privacy_list, privacy_buttons = chat.texts, chat.buttons
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    assert chat.texts == [joined(t("en", "survey.intro", title="How was your order?", order="A-1001"), q("rating"))]
    await chat.press("leave:order_feedback")
    assert chat.texts == [joined(t("en", "survey.left"), *privacy_list)]
    assert chat.state.dialog == "privacy"
    assert chat.buttons == privacy_buttons


# ----------------------------------------------------------------------------- expiry, consent


async def test_an_answer_after_expire_hours_closes_the_survey(make_chat, signed_up_chat, t):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    chat.now = T0 + timedelta(hours=72)  # the last moment it is open
    await chat.press("5:rating")
    assert answers(chat) == [("A-1001", "rating", "5")]

    chat.now = T0 + timedelta(hours=72, seconds=1)
    await chat.press("9:recommend")
    assert chat.texts == [t("en", "survey.expired")]
    assert chat.effects == [SurveyStatus("order_feedback", "A-1001", "expired")]
    assert answers(chat) == [("A-1001", "rating", "5")]
    assert chat.codes == []
    assert chat.state.dialog is None


async def test_a_typed_comment_after_expiry_closes_the_survey(make_chat, signed_up_chat, t):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.press("3:rating")
    chat.now = T0 + timedelta(days=4)
    await chat.send("All good, thanks")
    assert chat.texts == [t("en", "survey.expired")]
    assert chat.survey_status == {("order_feedback", "A-1001"): "expired"}
    assert answers(chat) == [("A-1001", "rating", "3")]


async def test_without_survey_consent_nothing_is_sent(make_chat, signed_up_chat):
    chat = make_chat()
    await signed_up_chat(chat, ("no", "yes", "yes", "no"))
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    assert chat.messages == []
    assert chat.effects == []
    assert chat.state.dialog is None


async def test_an_unknown_survey_sends_nothing(make_chat, signed_up_chat):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="no_such_survey", order="A-1001")
    assert chat.messages == []
    assert chat.effects == []
    assert chat.state.dialog is None


# ----------------------------------------------------------------------------- reward once per order


async def run_through(chat, order: str) -> None:
    await chat.trigger("survey", survey="order_feedback", order=order)
    await chat.press("4:rating")
    await chat.press("8:recommend")
    await chat.press("skip:comment")


async def test_the_reward_is_issued_once_per_order(make_chat, signed_up_chat, t):
    chat = await surveyed(make_chat, signed_up_chat)
    await run_through(chat, "A-1001")
    first = chat.codes[0]
    assert first.code in chat.text

    chat.now = T0 + timedelta(days=1)
    await run_through(chat, "A-1001")  # a repeated trigger for the same order
    assert chat.codes == [first]
    assert [e for e in chat.effects if isinstance(e, IssueCode)] == []
    again = t("en", "survey.reward_again", code=first.code, percent="5%", category="Shoes", date="Apr 1, 2026")
    assert chat.texts == ["\n\n".join([t("en", "survey.thanks"), again])]

    await run_through(chat, "A-1002")  # another order earns its own reward
    assert [c.reference for c in chat.codes] == ["order_feedback:A-1001", "order_feedback:A-1002"]
    assert chat.codes[1].code != first.code
    assert chat.codes[1].code in chat.text


async def test_the_reward_goes_to_the_first_favourite(make_chat, signed_up_chat, completion):
    chat = await surveyed(make_chat, signed_up_chat)
    chat.categories = ("beauty", "books")
    await run_through(chat, "A-1001")
    assert (chat.codes[0].category, chat.codes[0].percent) == ("beauty", 5)
    assert chat.texts == [completion(chat, "en", "Beauty", "5%", "Apr 1, 2026")]


async def test_the_reward_passes_over_a_favourite_with_a_valid_code(make_chat, signed_up_chat):
    chat = await surveyed(make_chat, signed_up_chat)
    chat.categories = ("beauty", "books")
    chat.codes.append(IssueCode("WELC-OME0-BEA", "beauty", 15, T0 + timedelta(days=30), "welcome"))
    await run_through(chat, "A-1001")
    assert [c.category for c in chat.codes] == ["beauty", "books"]  # one valid code per category


async def test_a_configured_reward_category_wins_and_no_reward_means_thanks_only(config, i18n, t):
    survey = config.survey("order_feedback")
    with_books = survey.model_copy(update={"reward": survey.reward.model_copy(update={"category": "books", "percent": 10})})
    no_reward = survey.model_copy(update={"id": "no_reward", "reward": None})
    custom = config.model_copy(update={"surveys": [with_books, no_reward]})
    chat = Chat(DialogEngine(custom, i18n))
    chat.now = T0
    chat.categories = ("beauty",)
    await signed_up(chat, SURVEY_CONSENT)
    await run_through(chat, "A-1001")
    assert [(c.category, c.percent) for c in chat.codes] == [("books", 10)]
    assert "10% off Books" in chat.text

    await chat.trigger("survey", survey="no_reward", order="A-1001")
    await chat.press("3:rating")
    await chat.press("skip:comment")
    assert chat.texts == [t("en", "survey.thanks")]
    assert chat.survey_status[("no_reward", "A-1001")] == "completed"
    assert len(chat.codes) == 1


# ----------------------------------------------------------------------------- German and Spanish


async def test_the_whole_survey_in_german(make_chat, signed_up_chat, t, q, comment_prompt, completion, joined):
    chat = await surveyed(make_chat, signed_up_chat, language_code="de")
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    intro = t("de", "survey.intro", title="Wie war Ihre Bestellung?", order="A-1001")
    assert chat.texts == [joined(intro, q("rating", "de"))]
    assert chat.buttons == [*RATING5, ("leave:order_feedback", "Umfrage beenden")]

    await chat.press("2:rating")
    assert chat.texts == [q("what_wrong", "de")]
    assert chat.labels == ["Lieferung", "Produktqualität", "Preis", "Etwas anderes", "Umfrage beenden"]
    await chat.send("lieferung")
    assert chat.texts == [comment_prompt("de")]
    await chat.send("Das Paket kam eine Woche zu spät.")
    assert answers(chat) == [
        ("A-1001", "rating", "2"),
        ("A-1001", "what_wrong", "1"),
        ("A-1001", "comment", "Das Paket kam eine Woche zu spät."),
    ]
    assert chat.texts == [completion(chat, "de", "Schuhe", "5\xa0%", "01.04.2026")]
    assert "Als Dankeschön erhalten Sie 5\xa0% Rabatt auf Schuhe mit dem Code" in chat.text


async def test_the_whole_survey_in_spanish(make_chat, signed_up_chat, t, q, comment_prompt, completion, joined):
    chat = await surveyed(make_chat, signed_up_chat, language_code="es")
    chat.categories = ("beauty",)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    intro = t("es", "survey.intro", title="¿Qué tal su pedido?", order="A-1001")
    assert chat.texts == [joined(intro, q("rating", "es"))]
    assert chat.labels[-1] == "Terminar encuesta"

    await chat.send("5")
    assert chat.texts == [q("recommend", "es")]
    await chat.send("10")
    assert chat.texts == [comment_prompt("es")]
    assert chat.labels == ["Omitir", "Terminar encuesta"]
    await chat.send("omitir")
    assert answers(chat) == [("A-1001", "rating", "5"), ("A-1001", "recommend", "10")]
    assert chat.texts == [completion(chat, "es", "Belleza", "5\xa0%", "1 abr 2026")]


async def test_button_labels_fit_whatsapp_reply_buttons(i18n):
    for lang in ("en", "de", "es"):
        for msgid in ("survey.skip", "survey.leave"):
            assert len(i18n.text(lang, msgid)) <= 20, (lang, msgid)


async def test_the_default_survey_reads_in_every_language_with_short_option_rows(config):
    for survey in config.surveys:
        for lang in ("en", "de", "es"):
            assert survey.title.get(lang) != survey.title.en or lang == "en"
            for question in survey.questions:
                assert question.text.get(lang) != question.text.en or lang == "en", (lang, question.id)
                assert "skip" not in question.text.get(lang).lower()  # the Skip button says it
                assert all(len(option.get(lang)) <= 24 for option in question.options)


# ----------------------------------------------------------------------------- stale presses


async def test_stale_presses_record_nothing_and_show_the_open_question(make_chat, signed_up_chat, q, t):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    await chat.press("4:rating")
    await chat.press("4:rating")  # a double tap
    assert chat.effects == []
    assert chat.texts == [q("recommend")]
    await chat.press("2:rating")  # an older button of the same message
    assert chat.effects == []
    assert chat.state.step == "question"
    await chat.press("6:recommend")
    await chat.press("skip:comment")
    assert chat.survey_status == {("order_feedback", "A-1001"): "completed"}

    await chat.press("5:recommend")  # after the survey ended: the engine's idle answer, the menu
    assert chat.state.dialog == "menu"
    await chat.press("leave:order_feedback")  # stale at the menu: shown again
    assert chat.texts == [t("en", "menu.question")]
    assert chat.effects == []
    assert answers(chat) == [("A-1001", "rating", "4"), ("A-1001", "recommend", "6")]


# ----------------------------------------------------------------------------- the path through a survey


def test_conditions_compare_numbers_and_words():
    assert condition_holds("<=2", "2") and condition_holds("<= 2", "1") and not condition_holds("<=2", "3")
    assert condition_holds(">=4", "4") and not condition_holds(">4", "4") and condition_holds("<3", "0")
    assert condition_holds("==1", "1") and not condition_holds("==1", "2")
    assert condition_holds("==no", "No") and not condition_holds(">=no", "no")
    assert not condition_holds("<=2", "late delivery")


def test_follow_up_chains_return_to_the_question_after_the_branch():
    survey = Survey.model_validate(
        {
            "id": "chain",
            "title": {"en": "T"},
            "questions": [
                {"id": "a", "kind": "rating5", "text": {"en": "a"}, "followups": [{"when": "<=2", "ask": "x"}]},
                {"id": "b", "kind": "text", "text": {"en": "b"}},
                {"id": "x", "kind": "choice", "text": {"en": "x"}, "options": [{"en": "o"}, {"en": "p"}],
                 "followup_only": True, "followups": [{"when": "==2", "ask": "y"}]},
                {"id": "y", "kind": "text", "text": {"en": "y"}, "followup_only": True,
                 "followups": [{"when": "==again", "ask": "a"}]},
            ],
        }
    )  # fmt: skip
    a, b, x, y = (survey.question(i) for i in "abxy")
    assert next_regular(survey, None, []) is a
    assert next_question(survey, a, "1", "a", ["a"]) is x
    assert next_question(survey, a, "3", "a", ["a"]) is b
    assert next_question(survey, a, None, "a", ["a"]) is b  # skipped: no follow-up
    assert next_question(survey, x, "2", "a", ["a", "x"]) is y
    assert next_question(survey, x, "1", "a", ["a", "x"]) is b
    assert next_question(survey, y, "again", "a", ["a", "x", "y"]) is b  # never asks "a" twice
    assert next_question(survey, b, "fine", "b", ["a", "b"]) is None


async def test_a_survey_due_again_after_its_deadline_closes_instead_of_asking(make_chat, signed_up_chat, t):
    chat = await surveyed(make_chat, signed_up_chat)
    await chat.trigger("survey", survey="order_feedback", order="A-1001")
    chat.now = T0 + timedelta(hours=80)
    await chat.send("help")
    assert chat.texts[-1] == t("en", "survey.expired")
    assert chat.survey_status == {("order_feedback", "A-1001"): "expired"}
    await chat.send("4")
    assert t("en", "survey.expired") not in chat.text  # said once
