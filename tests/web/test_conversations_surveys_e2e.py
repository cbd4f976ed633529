"""Order surveys end to end: the shop starts one, the customer answers through the real webhooks.

``bot.surveys.start_survey`` is the entry point the shop's order.delivered
event uses too: it stores a trigger in the inbox, the pipeline runs the
survey dialog and the questions go out through the outbox to the fake
platform APIs. Answers, status and the reward code are read from the
database; texts come from the catalogs and the survey definition in config.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.config import Survey
from bot.surveys import start_survey
from tests.conftest import Touchpoint
from tests.web.chat import PLATFORMS, PlatformUser, Reply, bot_speaks, sign_up_in, without_chat_pacing
from tests.web.test_conversations_e2e import codes, customer_id, day, everything, full_label, joined, link, percent
from tests.web.test_signup_e2e import config, t

SURVEY = "order_feedback"
ORDER = "A-10023"


@pytest.fixture
def tp(touchpoint: Touchpoint) -> Touchpoint:
    return without_chat_pacing(touchpoint)


def survey(tp: Touchpoint) -> Survey:
    found = config(tp).survey(SURVEY)
    assert found is not None
    return found


def question_text(tp: Touchpoint, locale: str, question_id: str) -> str:
    question = survey(tp).question(question_id)
    assert question is not None
    return question.text.get(locale)


def text_question(tp: Touchpoint, locale: str, question_id: str) -> str:
    """A free-text question: its text and the hint that it may be skipped."""
    hint = t(locale, "survey.text_hint", skip=t(locale, "survey.skip"))
    return "\n".join([question_text(tp, locale, question_id), hint])


async def start(tp: Touchpoint, user: PlatformUser, order: str = ORDER) -> tuple[Any, list[Reply]]:
    """The shop starts the survey for ``order``; (the start's result, what the customer received)."""
    result: dict[str, Any] = {}

    async def run() -> None:
        result["value"] = await start_survey(tp.pipeline, config(tp), await customer_id(tp, user), SURVEY, order)

    replies = await bot_speaks(user, run())
    return result["value"], replies


async def response(tp: Touchpoint, user: PlatformUser, order: str = ORDER) -> Any:
    rows = await tp.query(
        "SELECT status, answers, finished_at, channel FROM survey_response WHERE customer_id = :c AND order_ref = :o",
        c=await customer_id(tp, user),
        o=order,
    )
    return rows[0] if rows else None


def answers(row: Any) -> dict[str, str]:
    value = row.answers
    return json.loads(value) if isinstance(value, str) else dict(value)


async def check_reward(tp: Touchpoint, user: PlatformUser, locale: str, thanks: Reply) -> None:
    """Completed: thanks and one reward code, on the first catalog category (no favourites were picked)."""
    reward = survey(tp).reward
    assert reward is not None
    [code] = [c for c in await codes(tp, user) if c.source == "survey"]
    category = config(tp).categories[0]
    assert (code.category, code.percent, code.reference) == (category.id, reward.percent, f"{SURVEY}:{ORDER}")
    granted = t(
        locale,
        "survey.reward",
        percent=percent(locale, reward.percent),
        category=category.name.get(locale),
        code=code.code,
        date=day(locale, code.expires_at),
    )
    reward_lines = "\n".join([granted, t(locale, "survey.reward_link", link=link(tp, category.id, code.code))])
    assert thanks.text == joined(t(locale, "survey.thanks"), reward_lines)
    assert thanks.buttons == ()


async def check_once_per_order(tp: Touchpoint, user: PlatformUser) -> None:
    """The shop starts the same order's survey again: refused, nothing sent, no second reward."""
    again, replies = await start(tp, user)
    assert (again.started, again.reason) == (False, "already_started")
    assert replies == []
    assert len([c for c in await codes(tp, user) if c.source == "survey"]) == 1


LOW_RATING = {
    # platform: (locale, customer)
    "telegram": ("en", "Alice Novak"),
    "viber": ("de", "Jonas Weber"),
    "whatsapp": ("es", "Lucía Gómez"),
}


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_low_rating_asks_what_went_wrong_then_rewards_once(tp: Touchpoint, platform: str) -> None:
    locale, name = LOW_RATING[platform]
    user = PlatformUser(tp, platform, name=name, language_code=locale)
    await sign_up_in(user, locale, everything(tp))

    result, (first,) = await start(tp, user)
    assert (result.started, result.channel, result.address) == (True, platform, user.address)
    intro = t(locale, "survey.intro", title=survey(tp).title.get(locale), order=ORDER)
    assert first.text == joined(intro, question_text(tp, locale, "rating"))
    assert [full_label(b) for b in first.buttons] == ["1", "2", "3", "4", "5", t(locale, "survey.leave")]
    assert (await response(tp, user)).status == "started"

    (wrong,) = await user.press("2")
    what_wrong = survey(tp).question("what_wrong")
    assert what_wrong is not None
    assert wrong.text == question_text(tp, locale, "what_wrong")
    options = [o.get(locale) for o in what_wrong.options]
    assert [full_label(b) for b in wrong.buttons] == [*options, t(locale, "survey.leave")]
    assert answers(await response(tp, user)) == {"rating": "2"}  # kept as it comes

    (comment,) = await user.press(options[0])
    assert comment.text == text_question(tp, locale, "comment")
    assert comment.labels == [t(locale, "survey.skip"), t(locale, "survey.leave")]
    remark = {"en": "The box was soaked.", "de": "Der Karton war nass.", "es": "La caja llegó mojada."}[locale]
    (thanks,) = await user.say(remark)
    await check_reward(tp, user, locale, thanks)

    row = await response(tp, user)
    assert (row.status, row.channel) == ("completed", platform)
    assert row.finished_at is not None
    assert answers(row) == {"rating": "2", "what_wrong": "1", "comment": remark}
    await check_once_per_order(tp, user)


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_high_rating_asks_for_a_recommendation_answered_with_a_typed_seven(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    await sign_up_in(user, "en", everything(tp))
    await start(tp, user)

    (recommend,) = await user.press("5")
    labels = [str(n) for n in range(11)] + [t("en", "survey.leave")]
    if platform == "whatsapp":
        # twelve choices exceed a list's ten rows: a numbered text, where "8." stands before the label "7"
        assert recommend.widget == "text" and recommend.buttons == ()
        assert recommend.text.startswith(question_text(tp, "en", "recommend"))
        assert recommend.text.endswith("\n".join(f"{i}. {label}" for i, label in enumerate(labels, 1)))
    else:
        assert recommend.text == question_text(tp, "en", "recommend")
        assert recommend.labels == labels

    (comment,) = await user.say("7")  # the label 7, not the seventh choice (the label 6)
    assert comment.text == text_question(tp, "en", "comment")
    assert answers(await response(tp, user)) == {"rating": "5", "recommend": "7"}

    (thanks,) = await user.press(t("en", "survey.skip"))
    await check_reward(tp, user, "en", thanks)
    row = await response(tp, user)
    assert row.status == "completed"
    assert answers(row) == {"rating": "5", "recommend": "7"}  # a skipped question records nothing
    await check_once_per_order(tp, user)


async def test_no_survey_without_the_surveys_consent(tp: Touchpoint) -> None:
    user = PlatformUser(tp, "viber")
    await sign_up_in(user, "en", everything(tp, surveys=False))
    result, replies = await start(tp, user)
    assert (result.started, result.reason) == (False, "no_consent")
    assert replies == []
    assert await response(tp, user) is None
    assert [c for c in await codes(tp, user) if c.source == "survey"] == []
