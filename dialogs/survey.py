"""Order surveys: run a survey definition from the shop's config for one order.

Started only by a trigger (``bot.surveys.start_survey`` delivers
``{"dialog": "survey", "slots": {"survey": <id>, "order": <ref>}}``), never by
a command. Without the customer's "surveys" consent, or for a survey the
config does not define, it ends at once and says nothing.

One step, ``question``, asks whichever question ``slots["question"]`` names.
Each answer is emitted as a ``SurveyAnswer`` right away, so the answers given
before the customer leaves are kept. The next question is the first
follow-up whose condition holds, else the next regular (not
``followup_only``) question after the one that started the branch: the
*anchor*, the last regular question asked. Keeping the anchor through a chain
of follow-ups means a branch always returns to the main line, wherever the
shop lists its follow-up questions. No question is asked twice, so a
follow-up that points back cannot loop.

Button ids name the question they answer ("4:rating", "2:what_wrong",
"skip:comment", "leave:order_feedback"), so a double tap or a press on an
earlier question's buttons is a stale press the engine ignores.

Once per order reward: the store keeps one code per (source, reference) and
``start_survey`` starts a survey once per order, so a second run for an order
only comes from a repeated trigger. The dialog then must not promise a code
the store will not keep: when the customer still holds a usable survey code
with this order's reference, it is shown again instead of a new one. A code
already redeemed or expired is not in the snapshot; for that case the
trigger's once-per-order check is the guard.
"""

from __future__ import annotations

import logging
import operator
import re
from datetime import datetime, timedelta

from bot.codes import code_link, new_code
from bot.config import Category, Survey, SurveyQuestion, SurveyReward
from bot.dialog import (
    Choice,
    Context,
    Dialog,
    Step,
    Transition,
    button,
    choice_id,
    end,
    go,
    literal_button,
    normalise,
    split_choice_id,
)
from bot.events import Kind
from bot.turn import CodeState, IssueCode, SurveyAnswer, SurveyStatus

log = logging.getLogger(__name__)

CONSENT = "surveys"
CODE_SOURCE = "survey"
LEAVE = "leave"
SKIP = "skip"
SCALES = {"rating5": range(1, 6), "rating10": range(0, 11)}
MAX_TEXT_ANSWER = 1000  # characters kept of a free-text answer
TYPED_NUMBER = re.compile(r"[+-]?[0-9]{1,6}")
COMPARE = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt, ">": operator.gt}
CONDITION_RE = re.compile(r"^(<=|>=|==|<|>)\s*(\S+)$")


# ----------------------------------------------------------------------------- the survey's path


def condition_holds(when: str, answer: str) -> bool:
    """Whether ``answer`` satisfies a follow-up condition like "<=2", ">=4" or "==1".

    Numbers compare as numbers (ratings, a choice's 1-based index); anything
    else only matches "==" with the same word, ignoring case and accents.
    """
    match = CONDITION_RE.match(when.strip())
    if match is None:
        return False
    op, target = match.groups()
    try:
        return COMPARE[op](float(answer), float(target))
    except ValueError:
        return op == "==" and normalise(answer) == normalise(target)


def next_regular(survey: Survey, after: str | None, asked: list[str]) -> SurveyQuestion | None:
    """The first question not ``followup_only`` and not asked yet, after question ``after`` (None: from the start)."""
    ids = [q.id for q in survey.questions]
    start = ids.index(after) + 1 if after in ids else 0
    return next((q for q in survey.questions[start:] if not q.followup_only and q.id not in asked), None)


def next_question(
    survey: Survey, question: SurveyQuestion, answer: str | None, anchor: str, asked: list[str]
) -> SurveyQuestion | None:
    """The question after ``question`` was answered (``answer`` None: skipped); None when the survey is done."""
    if answer is not None:
        for followup in question.followups:
            if followup.ask not in asked and condition_holds(followup.when, answer):
                return survey.question(followup.ask)
    return next_regular(survey, anchor, asked)


def _current(ctx: Context) -> tuple[Survey, SurveyQuestion] | None:
    """The running survey and its open question, or None when the config no longer has them."""
    survey = ctx.config.survey(str(ctx.slots.get("survey", "")))
    question = survey.question(str(ctx.slots.get("question", ""))) if survey else None
    return (survey, question) if survey and question else None


def _expired(ctx: Context, survey: Survey) -> bool:
    started_at = datetime.fromisoformat(str(ctx.slots["started_at"]))
    return ctx.now > started_at + timedelta(hours=survey.expire_hours)


# ----------------------------------------------------------------------------- begin


def _begin(ctx: Context) -> Transition:
    survey = ctx.config.survey(str(ctx.slots.get("survey") or ""))
    order = str(ctx.slots.get("order") or "")
    if survey is None or not order or not ctx.granted(CONSENT):
        log.info("survey.refused survey=%s order=%s", ctx.slots.get("survey"), order)
        return end()
    first = next_regular(survey, None, [])
    if first is None:
        log.warning("survey.no_regular_question %s", survey.id)
        return end()
    ctx.slots.update(
        survey=survey.id,
        order=order,
        started_at=ctx.now.isoformat(),
        question=first.id,
        anchor=first.id,
        asked=[first.id],
    )
    ctx.say("survey.intro", title=ctx.local(survey.title), order=order)
    return go("question")


# ----------------------------------------------------------------------------- the question step


def _prompt(ctx: Context) -> None:
    current = _current(ctx)
    if current is None:
        return  # the survey left the config while it ran; the next message ends it
    survey, question = current
    if _expired(ctx, survey):
        # Asked again after an interruption, but too late: close it now rather than ask.
        if not ctx.slots.get("closed"):
            ctx.slots["closed"] = True
            ctx.emit(SurveyStatus(survey=survey.id, order=ctx.slots["order"], status="expired"))
            ctx.say("survey.expired")
        return
    text = ctx.local(question.text)
    answers: list[Choice]
    if question.kind in SCALES:
        answers = [literal_button(choice_id(str(n), question.id), str(n)) for n in SCALES[question.kind]]
    elif question.kind == "choice":
        answers = [
            literal_button(choice_id(str(index), question.id), ctx.local(option))
            for index, option in enumerate(question.options, 1)
        ]
    else:
        answers = [button(choice_id(SKIP, question.id), "survey.skip")]
        text = "\n".join([text, ctx.t("survey.text_hint", skip=ctx.t("survey.skip"))])
    ctx.ask_text(text, [*answers, button(choice_id(LEAVE, survey.id), "survey.leave")])


def _picked_by_position(ctx: Context, choice: str) -> bool:
    """A typed number that picked a button by its position, not by its label ("6" on a 1-5 rating)."""
    if ctx.event.kind is not Kind.TEXT:
        return False
    typed = normalise(ctx.event.text)
    label = next((o.get("label", "") for o in ctx.state.offered if o["id"] == choice), "")
    return typed.isascii() and typed.isdigit() and typed != normalise(label)


def _on_choice(ctx: Context, choice: str) -> Transition:
    current = _current(ctx)
    if current is None:
        return end()
    survey, question = current
    if _expired(ctx, survey):
        return _expire(ctx, survey)
    action, _ = split_choice_id(choice)
    if question.kind in SCALES and (typed := _typed_number(ctx)) is not None:
        return _rate(ctx, survey, question, typed)  # "-1" is not "1", "7" is seven
    if _picked_by_position(ctx, choice):
        # Typed numbers answer a rating by their value and never leave the survey;
        # at a text question the number is the customer's answer.
        if question.kind == "text":
            return _answer(ctx, survey, question, ctx.event.text.strip())
        if question.kind in SCALES:
            scale = SCALES[question.kind]
            ctx.say("survey.rating_range", low=scale[0], high=scale[-1])
            return go("question")
        if action == LEAVE:
            ctx.say("fallback.retry")
            return go("question")
    if action == LEAVE:
        log.info("survey.left %s order=%s at=%s", survey.id, ctx.slots["order"], question.id)
        ctx.emit(SurveyStatus(survey=survey.id, order=ctx.slots["order"], status="left"))
        ctx.say("survey.left")
        return end()
    if action == SKIP:
        return _advance(ctx, survey, question, None)
    return _answer(ctx, survey, question, action)


def _on_input(ctx: Context) -> Transition | None:
    """Free text answers a text question; any message after the deadline closes the survey."""
    current = _current(ctx)
    if current is None:
        return end()
    survey, question = current
    if _expired(ctx, survey):
        return _expire(ctx, survey)
    if question.kind in SCALES and (typed := _typed_number(ctx)) is not None:
        return _rate(ctx, survey, question, typed)  # "0" or "11" typed where no button has that label
    if question.kind != "text" or ctx.event.kind is not Kind.TEXT or not ctx.event.text.strip():
        return None  # not an answer: the engine says so and asks again
    return _answer(ctx, survey, question, ctx.event.text.strip()[:MAX_TEXT_ANSWER])


def _typed_number(ctx: Context) -> int | None:
    """A whole number typed as the whole message ("7", "-1", "+3"), else None."""
    if ctx.event.kind is not Kind.TEXT:
        return None
    text = ctx.event.text.strip()
    return int(text) if TYPED_NUMBER.fullmatch(text) else None


def _rate(ctx: Context, survey: Survey, question: SurveyQuestion, value: int) -> Transition:
    """A typed rating counts by its value; one outside the scale gets the range, not a guess."""
    scale = SCALES[question.kind]
    if value in scale:
        return _answer(ctx, survey, question, str(value))
    ctx.say("survey.rating_range", low=scale[0], high=scale[-1])
    return go("question")


def _answer(ctx: Context, survey: Survey, question: SurveyQuestion, answer: str) -> Transition:
    ctx.emit(SurveyAnswer(survey=survey.id, order=ctx.slots["order"], question=question.id, answer=answer))
    return _advance(ctx, survey, question, answer)


def _advance(ctx: Context, survey: Survey, question: SurveyQuestion, answer: str | None) -> Transition:
    asked = list(ctx.slots.get("asked", []))
    following = next_question(survey, question, answer, ctx.slots.get("anchor", question.id), asked)
    if following is None:
        return _complete(ctx, survey)
    ctx.slots["question"] = following.id
    ctx.slots["asked"] = [*asked, following.id]
    if not following.followup_only:
        ctx.slots["anchor"] = following.id
    return go("question")


# ----------------------------------------------------------------------------- the end


def _expire(ctx: Context, survey: Survey) -> Transition:
    if not ctx.slots.get("closed"):  # not already said when the question was due again
        ctx.emit(SurveyStatus(survey=survey.id, order=ctx.slots["order"], status="expired"))
        ctx.say("survey.expired")
    return end()


def _complete(ctx: Context, survey: Survey) -> Transition:
    ctx.emit(SurveyStatus(survey=survey.id, order=ctx.slots["order"], status="completed"))
    parts = [ctx.t("survey.thanks")]
    if survey.reward is not None:
        parts += _reward(ctx, survey.reward, f"{survey.id}:{ctx.slots['order']}")
    ctx.say_text("\n\n".join(parts))
    return end()


def reward_category(ctx: Context, reward: SurveyReward) -> Category | None:
    """The configured category, else the customer's first favourite, else the first in the catalog.

    A favourite or catalog category the customer already holds a valid code for is
    passed over (one valid code per category); the configured one is the shop's choice.
    """
    if reward.category and (configured := ctx.config.category(reward.category)) is not None:
        return configured
    candidates = [*ctx.customer.categories, *(c.id for c in ctx.config.categories)]
    for category_id in candidates:
        category = ctx.config.category(category_id)
        if category is not None and ctx.customer.code_for(category_id) is None:
            return category
    return None  # every category already has a valid code: no second one


def _earlier_reward(ctx: Context, reference: str) -> CodeState | None:
    # ``reference`` on CodeState comes with the store's snapshot of codes; without it nothing matches.
    return next(
        (c for c in ctx.customer.codes if c.source == CODE_SOURCE and getattr(c, "reference", None) == reference),
        None,
    )


def _reward(ctx: Context, reward: SurveyReward, reference: str) -> list[str]:
    """The lines that show the reward, issuing its code unless this order already earned one."""
    earlier = _earlier_reward(ctx, reference)
    if earlier is not None:
        category = ctx.config.category(earlier.category)
        name = ctx.local(category.name) if category else earlier.category
        return [
            ctx.t(
                "survey.reward_again",
                code=earlier.code,
                percent=ctx.percent(earlier.percent),
                category=name,
                date=ctx.date(earlier.expires_at),
            )
        ]
    category = reward_category(ctx, reward)
    if category is None:
        log.warning("survey.reward_without_category %s", reference)
        return []
    code = new_code()
    percent = min(reward.percent, ctx.config.discounts.max_percent)
    expires_at = ctx.now + timedelta(days=reward.valid_days)
    ctx.emit(
        IssueCode(
            code=code,
            category=category.id,
            percent=percent,
            expires_at=expires_at,
            source=CODE_SOURCE,
            reference=reference,
        )
    )
    lines = [
        ctx.t(
            "survey.reward",
            percent=ctx.percent(percent),
            category=ctx.local(category.name),
            code=code,
            date=ctx.date(expires_at),
        )
    ]
    link = code_link(ctx.config, category.id, code)
    if link:
        lines.append(ctx.t("survey.reward_link", link=link))
    return ["\n".join(lines)]


SURVEY = Dialog(
    name="survey",
    begin=_begin,
    steps={"question": Step(prompt=_prompt, on_choice=_on_choice, on_input=_on_input)},
)
