"""Sign-up, stop, privacy, blocks, retries and redelivery end to end, on every platform.

A ``PlatformUser`` (tests/web/chat.py) posts signed webhooks in each
platform's own shape to the running app and reads the bot's answers off the
wire of the fake platform APIs; results are checked through the shop API and
the database. Expected texts come from the catalogs (``bot.i18n.I18n``), so
wording changes do not break these tests but a wrong language or a wrong
message does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

import pytest

from bot.appkeys import CONFIG
from bot.config import ShopConfig
from bot.i18n import I18n
from bot.pipeline import RateLimit
from tests.conftest import API_KEY, Touchpoint
from integrations.viber import BUTTON_PREFIX
from tests.web.chat import PLATFORMS, PlatformUser, Reply, WireButton, read_reply, recipient

I18N = I18n.load()
START_PAYLOAD = "promo_AUTUMN26"


def t(locale: str, msgid: str, **params: Any) -> str:
    return I18N.text(locale, msgid, **params)


@pytest.fixture
def tp(touchpoint: Touchpoint) -> Touchpoint:
    """The app under test, without Telegram's per-chat pacing of one message a second.

    These customers answer within milliseconds; a real one takes seconds, so
    the pacing would only make every Telegram conversation here take seconds.
    The channel-wide limits stay as configured.
    """
    limits = dict(touchpoint.pipeline.rate_limits)
    if "telegram" in limits:
        limits["telegram"] = RateLimit(per_second=limits["telegram"].per_second, burst=limits["telegram"].burst)
    touchpoint.pipeline.rate_limits = limits
    return touchpoint


def config(tp: Touchpoint) -> ShopConfig:
    return tp.app[CONFIG]


def mixed_answers(tp: Touchpoint) -> dict[str, bool]:
    """Yes, no, yes, no, ... over the configured purposes."""
    return {p.id: i % 2 == 0 for i, p in enumerate(config(tp).consent_purposes)}


def texts(replies: list[Reply]) -> list[str]:
    return [r.text for r in replies]


def command_word(locale: str, command: str) -> str:
    """The word the bot names for ``command`` in help texts (the first of the catalog's words)."""
    return I18N.words(locale, f"commands.{command}")[0]


def help_text(locale: str) -> str:
    """The whole help with every flow installed: fixed commands, the optional flows' lines, the footer."""
    words = {c: command_word(locale, c) for c in ("help", "menu", "privacy", "language", "stop")}
    optional = [
        t(locale, "help.categories", categories=command_word(locale, "categories")),
        t(locale, "help.complaint", complaint=command_word(locale, "complaint")),
        t(locale, "help.human", human=command_word(locale, "human")),
    ]
    return "\n".join([t(locale, "help.text", **words), *optional]) + "\n\n" + t(locale, "help.footer")


def intro(tp: Touchpoint, locale: str, first_name: str) -> str:
    """The greeting and the language check, one message (a question after text is merged into it)."""
    hello = t(locale, "signup.hello_name", name=first_name, shop=config(tp).shop_name)
    return f"{hello}\n\n{t(locale, 'signup.language_check')}"


def question(tp: Touchpoint, locale: str, purpose: str) -> str:
    return t(locale, f"consent.{purpose}.question", shop=config(tp).shop_name)


def summary_lines(locale: str, answers: dict[str, bool]) -> list[str]:
    return [
        t(locale, "consent.line_on" if granted else "consent.line_off", name=t(locale, f"consent.{purpose}.name"))
        for purpose, granted in answers.items()
    ]


async def lookup(tp: Touchpoint, user: PlatformUser) -> dict[str, Any]:
    params = {"channel": user.platform, "address": user.address}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with tp.session.get(f"{tp.url}/api/v1/customers/lookup", params=params, headers=headers) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def granted(found: dict[str, Any]) -> dict[str, bool]:
    return {c["purpose"]: c["granted"] for c in found["consents"] if c["channel"] == found["channel"]}


async def consent_log(tp: Touchpoint, user: PlatformUser) -> list[tuple[str, bool, str, str]]:
    rows = await tp.query(
        "SELECT c.purpose, c.granted, c.source, c.wording_version FROM consent c"
        " JOIN channel_identity i ON i.customer_id = c.customer_id"
        " WHERE i.channel = :channel AND i.address = :address AND c.channel = :channel ORDER BY c.id",
        channel=user.platform,
        address=user.address,
    )
    return [(r.purpose, bool(r.granted), r.source, r.wording_version) for r in rows]


def category_names(tp: Touchpoint, locale: str) -> list[str]:
    return [c.name.get(locale) for c in config(tp).categories]


def welcome_offer(tp: Touchpoint, locale: str) -> str:
    """The favourite-categories offer that follows the summary once marketing is granted."""
    limit = config(tp).discounts.max_favourites
    return I18N.plural(locale, "categories.welcome", "categories.welcome.plural", limit, done=t(locale, "buttons.done"))


async def sign_up(tp: Touchpoint, user: PlatformUser, answers: dict[str, bool]) -> Reply:
    """The whole English sign-up by button presses; returns the summary.

    With marketing granted the summary carries the welcome offer and its list of
    categories; the customer picks none and taps "Done", so the chat is idle after.
    """
    await user.start()
    await user.press(t("en", "signup.start" if user.platform == "viber" else "signup.continue"))
    replies: list[Reply] = []
    for purpose in config(tp).consent_purposes:
        replies = await user.press(t("en", "buttons.yes" if answers[purpose.id] else "buttons.no"))
    assert len(replies) == 1 and replies[0].text.startswith(t("en", "signup.summary"))
    summary = replies[0]
    if summary.buttons:
        assert welcome_offer(tp, "en") in summary.text
        (done,) = await user.press(t("en", "buttons.done"))
        assert done.text == t("en", "categories.none", categories=command_word("en", "categories"))
    return summary


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> Any:
    """Poll the async ``check`` until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def attempts(tp: Touchpoint, user: PlatformUser, text: str) -> list[bool]:
    """Every send call carrying ``text`` to ``user``: True if accepted, False if failed by the fake."""
    return [
        r.accepted
        for r in tp.fake.requests
        if r.platform == user.platform
        and recipient(r) == user.address
        and read_reply(user.platform, r.json).text == text
    ]


# ----------------------------------------------------------------------------- 1. sign-up by buttons


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_whole_signup_by_button_presses(tp: Touchpoint, platform: str) -> None:
    shop = config(tp).shop_name
    user = PlatformUser(tp, platform)
    first = await user.start()
    if platform == "viber":
        # conversation_started: one welcome, in the HTTP response, with no receiver; nothing via the API
        (welcome,) = first
        assert "receiver" not in welcome.body
        assert welcome.widget == "keyboard"
        start = t("en", "signup.start")
        assert welcome.text == t("en", "signup.welcome_name", name="Alice", shop=shop, start=start)
        assert welcome.labels == [start, I18N.native_name("de"), I18N.native_name("es")]
        assert tp.fake.sent("viber") == []
        asked = await user.press(start)
    else:
        assert texts(first) == [intro(tp, "en", "Alice")]
        assert first[0].labels == [t("en", "signup.continue"), t("en", "signup.change_language")]
        asked = await user.press(t("en", "signup.continue"))

    answers = mixed_answers(tp)
    for purpose in config(tp).consent_purposes:
        assert texts(asked) == [question(tp, "en", purpose.id)]
        assert asked[0].labels == [t("en", "buttons.yes"), t("en", "buttons.no")]
        asked = await user.press(t("en", "buttons.yes" if answers[purpose.id] else "buttons.no"))

    (summary,) = asked
    assert summary.text.startswith(t("en", "signup.summary"))
    for line in summary_lines("en", answers):
        assert line in summary.text
    # marketing was granted: the welcome offer follows in the same message, with the categories to pick
    assert answers["marketing"]
    assert f"\n\n{welcome_offer(tp, 'en')}\n\n" in summary.text
    assert summary.labels == [*category_names(tp, "en"), t("en", "buttons.done")]
    (picked,) = await user.press(category_names(tp, "en")[0])
    assert picked.labels[0] == t("en", "categories.label_picked", name=category_names(tp, "en")[0])
    (saved,) = await user.press(t("en", "buttons.done"))
    assert saved.text.startswith(t("en", "categories.saved", names=category_names(tp, "en")[0]))
    assert saved.buttons == ()

    if platform == "telegram":  # every press stopped the button's spinner
        await eventually(lambda: _callbacks_answered(tp, 3 + len(answers)))

    found = await lookup(tp, user)
    assert granted(found) == answers
    assert {c["channel"] for c in found["consents"]} == {platform}
    versions = {p.id: p.version for p in config(tp).consent_purposes}
    assert {c["purpose"]: c["wording_version"] for c in found["consents"]} == versions
    assert found["locale"] == "en" and found["name"] == "Alice" and found["blocked"] is False
    assert await consent_log(tp, user) == [(p, g, "signup", versions[p]) for p, g in answers.items()]

    identity = await tp.query(
        "SELECT deep_link FROM channel_identity WHERE channel = :c AND address = :a", c=platform, a=user.address
    )
    # Telegram's /start payload and Viber's context carry the deep link; a WhatsApp greeting has none.
    assert identity[0].deep_link == (None if platform == "whatsapp" else START_PAYLOAD)


async def _callbacks_answered(tp: Touchpoint, n: int) -> bool:
    answered = [r for r in tp.fake.requests if r.platform == "telegram" and r.method == "answerCallbackQuery"]
    assert len(answered) <= n
    return len(answered) == n


# ----------------------------------------------------------------------------- 2. typed, another language

TYPED = {
    # locale: (customer name, [(typed answer, meaning) per purpose]) — the intro is answered with the first word
    "de": ("Jonas Weber", [("ja", True), ("nein", False), ("Ja!", True), ("nein", False)]),
    "es": ("Lucía Gómez", [("sí", True), ("no", False), ("1", True), ("2", False)]),
}


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("locale", sorted(TYPED))
async def test_whole_signup_by_typed_answers_in_another_language(tp: Touchpoint, platform: str, locale: str) -> None:
    shop = config(tp).shop_name
    name, typed = TYPED[locale]
    first_name = name.split()[0]
    purposes = [p.id for p in config(tp).consent_purposes]
    assert len(typed) == len(purposes)
    # WhatsApp tells us no language: that customer picks it with the language button.
    user = PlatformUser(tp, platform, name=name, language_code=locale)
    first = await user.start()
    if platform == "viber":
        start = t(locale, "signup.start")
        assert texts(first) == [t(locale, "signup.welcome_name", name=first_name, shop=shop, start=start)]
        asked = await user.say(typed[0][0])
        assert texts(asked) == [question(tp, locale, purposes[0])]
    elif platform == "telegram":
        assert texts(first) == [intro(tp, locale, first_name)]
        assert first[0].labels == [t(locale, "signup.continue"), t(locale, "signup.change_language")]
        asked = await user.say(typed[0][0])
        assert texts(asked) == [question(tp, locale, purposes[0])]
    else:
        assert texts(first) == [intro(tp, "en", first_name)]
        languages = await user.press(t("en", "signup.change_language"))
        assert texts(languages) == [t("en", "language.question")]
        assert languages[0].labels == [I18N.native_name(code) for code in config(tp).locales]
        asked = await user.press(I18N.native_name(locale))
        assert texts(asked) == [t(locale, "language.changed") + "\n\n" + question(tp, locale, purposes[0])]
    assert asked[0].labels == [t(locale, "buttons.yes"), t(locale, "buttons.no")]

    for i, (word, _) in enumerate(typed):
        asked = await user.say(word)
        if i + 1 < len(purposes):
            assert texts(asked) == [question(tp, locale, purposes[i + 1])]
    (summary,) = asked
    answers = {purpose: meaning for purpose, (_, meaning) in zip(purposes, typed)}
    assert summary.text.startswith(t(locale, "signup.summary"))
    for line in summary_lines(locale, answers):
        assert line in summary.text

    found = await lookup(tp, user)
    assert granted(found) == answers
    assert found["locale"] == locale
    assert [row[2] for row in await consent_log(tp, user)] == ["signup"] * len(purposes)


# ----------------------------------------------------------------------------- 3. stop and privacy

STOP_WAYS = [("telegram", "typed"), ("viber", "typed"), ("whatsapp", "typed"), ("whatsapp", "template_quick_reply")]


@pytest.mark.parametrize("platform,way", STOP_WAYS)
async def test_stop_withdraws_every_marketing_consent(tp: Touchpoint, platform: str, way: str) -> None:
    user = PlatformUser(tp, platform)
    everything = {p.id: True for p in config(tp).consent_purposes}
    await sign_up(tp, user, everything)
    if way == "typed":
        replies = await user.say("stop")
    else:
        replies = await user.send(user.quick_reply_body("STOP_PROMOS", "Stop promotions"))

    marketing = [p for p in config(tp).consent_purposes if p.marketing]
    (reply,) = replies
    assert reply.text.startswith(I18N.plural("en", "stop.done", "stop.done.plural", len(marketing)))
    for purpose in marketing:
        assert t("en", "list.item", item=t("en", f"consent.{purpose.id}.name")) in reply.text
    assert reply.text.endswith(t("en", "stop.howto", privacy=command_word("en", "privacy")))

    found = await lookup(tp, user)
    assert granted(found) == {p.id: not p.marketing for p in config(tp).consent_purposes}
    withdrawn = (await consent_log(tp, user))[len(everything) :]
    assert withdrawn == [(p.id, False, "stop", p.version) for p in marketing]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_privacy_toggles_one_purpose_by_button(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    answers = mixed_answers(tp)
    await sign_up(tp, user, answers)
    off = next(p for p, g in answers.items() if not g)
    off_name = t("en", f"consent.{off}.name")

    (listing,) = await user.say("privacy")
    assert listing.text.startswith(t("en", "privacy.title"))
    for line in summary_lines("en", answers):
        assert line in listing.text
    assert user.button(t("en", "privacy.turn_on", name=off_name))
    (relisted,) = await user.press(t("en", "privacy.turn_on", name=off_name))
    assert t("en", "consent.line_on", name=off_name) in relisted.text
    assert user.button(t("en", "privacy.turn_off", name=off_name))  # the toggle now offers the way back

    found = await lookup(tp, user)
    assert granted(found) == {**answers, off: True}
    assert (await consent_log(tp, user))[-1] == (off, True, "privacy", config(tp).purpose(off).version)
    (saved,) = await user.press(t("en", "buttons.done"))
    assert saved.text == t("en", "privacy.saved", privacy=command_word("en", "privacy"))


# ----------------------------------------------------------------------------- 4. blocked customers


@pytest.mark.parametrize("platform", ["telegram", "viber"])
async def test_platform_block_event_withdraws_consents_and_blocks_identity(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    answers = mixed_answers(tp)
    await sign_up(tp, user, answers)
    signup_rows = len(await consent_log(tp, user))

    assert await user.send(user.blocked_body()) == []  # my_chat_member "kicked" / unsubscribed: nothing said

    found = await lookup(tp, user)
    assert found["blocked"] is True
    assert granted(found) == {p: False for p in answers}
    withdrawn = (await consent_log(tp, user))[signup_rows:]
    versions = {p.id: p.version for p in config(tp).consent_purposes}
    assert withdrawn == [(p, False, "platform", versions[p]) for p, g in answers.items() if g]


async def test_telegram_403_on_send_blocks_identity_and_drops_the_queued_reply(tp: Touchpoint) -> None:
    user = PlatformUser(tp, "telegram")
    answers = mixed_answers(tp)
    await sign_up(tp, user, answers)
    # The first reply gets a 429 (held 1 s), so the second one is surely queued behind it
    # when the retry meets "Forbidden: bot was blocked by the user".
    tp.fake.fail_next("telegram", "429")
    tp.fake.fail_next("telegram", "blocked")
    await user.post(user.text_body("help"))
    await user.post(user.text_body("menu"))
    await eventually(lambda: _blocked(tp, user))
    await user.settle()
    await tp.pipeline.sweep_once()  # a re-issued wake-up must not send it either
    await user.settle()
    await asyncio.sleep(0.1)

    assert attempts(tp, user, help_text("en")) == [False, False]  # 429, then 403; never accepted
    assert attempts(tp, user, t("en", "menu.question")) == []  # the queued reply never went out
    received = [r for r in tp.fake.sent("telegram") if recipient(r) == user.address]
    # the last message that reached the customer is the sign-up's last (the welcome offer declined)
    assert read_reply("telegram", received[-1].json).text == user.replies[-1].text
    assert user.replies[-1].text == t("en", "categories.none", categories=command_word("en", "categories"))
    rows = await tp.query("SELECT status FROM outbox WHERE address = :a AND status != 'sent'", a=user.address)
    assert [r.status for r in rows] == ["blocked", "blocked"]
    # blocking the bot withdraws what was granted on this channel, as a block event does
    found = await lookup(tp, user)
    assert granted(found) == {p: False for p in answers}
    assert [(p, src) for p, g, src, _ in (await consent_log(tp, user)) if not g and src == "platform"] == [
        (p, "platform") for p, g in answers.items() if g
    ]


async def _blocked(tp: Touchpoint, user: PlatformUser) -> bool:
    return (await lookup(tp, user))["blocked"]


async def test_whatsapp_undeliverable_status_blocks_identity(tp: Touchpoint) -> None:
    user = PlatformUser(tp, "whatsapp")
    answers = mixed_answers(tp)
    await sign_up(tp, user, answers)
    (last,) = await tp.query(
        "SELECT platform_message_id FROM outbox WHERE address = :a AND status = 'sent' ORDER BY id DESC LIMIT 1",
        a=user.address,
    )
    assert (await lookup(tp, user))["blocked"] is False
    assert await user.send(user.undeliverable_status_body(last.platform_message_id)) == []
    assert (await lookup(tp, user))["blocked"] is True
    (receipt,) = await tp.query(
        "SELECT delivery_status FROM outbox WHERE platform_message_id = :m", m=last.platform_message_id
    )
    assert receipt.delivery_status == "failed"
    assert granted(await lookup(tp, user)) == {p: False for p in answers}


# ----------------------------------------------------------------------------- 5. retries


async def _first_question(tp: Touchpoint, user: PlatformUser) -> tuple[str, str]:
    """Open the chat; (label that leads to the first consent question, that question)."""
    await user.start()
    label = t("en", "signup.start" if user.platform == "viber" else "signup.continue")
    return label, question(tp, "en", config(tp).consent_purposes[0].id)


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_reply_after_a_500_arrives_exactly_once(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    label, first_question = await _first_question(tp, user)
    before = len(tp.fake.sent(platform))
    tp.fake.fail_next(platform, "500")
    await user.post(user.press_body(user.button(label)))
    await tp.fake.wait_for(before + 1, platform, timeout=5)
    await eventually(lambda: _outbox_settled(tp))

    assert texts(user.collect(before)) == [first_question]
    assert attempts(tp, user, first_question) == [False, True]


async def _outbox_settled(tp: Touchpoint) -> bool:
    rows = await tp.query("SELECT count(*) AS n FROM outbox WHERE status = 'pending'")
    return rows[0].n == 0


@pytest.mark.parametrize("platform", ["telegram", "whatsapp"])
async def test_reply_after_a_429_waits_arrives_once_and_keeps_order(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    label, first_question = await _first_question(tp, user)
    loop = asyncio.get_running_loop()
    before = len(tp.fake.sent(platform))
    tp.fake.fail_next(platform, "429")
    started = loop.time()
    await user.post(user.press_body(user.button(label)))  # its reply meets the 429
    await user.post(user.text_body("help"))  # the next reply of the same conversation
    await tp.fake.wait_for(before + 1, platform, timeout=5)
    first_arrived = loop.time() - started
    await tp.fake.wait_for(before + 2, platform, timeout=5)
    await eventually(lambda: _outbox_settled(tp))

    replies = user.collect(before)
    assert len(replies) == 2
    assert replies[0].text == first_question  # the held reply still goes first
    assert replies[1].text.startswith(help_text("en"))
    assert attempts(tp, user, first_question) == [False, True]
    if platform == "telegram":
        assert first_arrived >= 1.0  # the fake's retry_after
    # the help re-asks the open question in the same message; it was accepted exactly once
    assert attempts(tp, user, replies[1].text) == [True]


async def test_viber_too_many_requests_holds_the_chat_and_keeps_order(tp: Touchpoint) -> None:
    """Viber's status 12 (100 messages an hour without a reply) slows this chat for a minute."""
    user = PlatformUser(tp, "viber")
    label, first_question = await _first_question(tp, user)
    tp.fake.fail_next("viber", "429")
    await user.post(user.press_body(user.button(label)))
    await eventually(lambda: _scheduled_retry(tp, user))
    await user.post(user.text_body("help"))
    await eventually(lambda: _outbox_rows(tp, user, "pending", 2))
    await asyncio.sleep(0.2)

    assert tp.fake.sent("viber") == []  # neither the held reply nor the one behind it went out
    assert attempts(tp, user, first_question) == [False]
    (held,) = await tp.query(
        "SELECT (julianday(next_attempt_at) - julianday('now')) * 86400 AS wait FROM outbox"
        " WHERE address = :a AND status = 'pending' AND next_attempt_at IS NOT NULL",
        a=user.address,
    )
    assert held.wait > 55
    assert await _outbox_rows(tp, user, "pending", 2)


async def _outbox_rows(tp: Touchpoint, user: PlatformUser, status: str, n: int) -> bool:
    rows = await tp.query("SELECT id FROM outbox WHERE address = :a AND status = :s", a=user.address, s=status)
    return len(rows) == n


async def _scheduled_retry(tp: Touchpoint, user: PlatformUser) -> bool:
    rows = await tp.query(
        "SELECT id FROM outbox WHERE address = :a AND next_attempt_at IS NOT NULL AND status = 'pending'",
        a=user.address,
    )
    return bool(rows)


# ----------------------------------------------------------------------------- 6. redelivery


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_redelivered_webhook_does_not_advance_the_signup_twice(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    label, first_question = await _first_question(tp, user)
    if platform == "viber":
        # conversation_started again (Viber never got our answer): the same welcome, from the
        # first turn, in the response; no second turn, nothing sent through the API
        first_welcome = user.last_response
        status, raw = await user.post(user.last_body)
        assert status == 200
        assert json.loads(raw) == json.loads(first_welcome)
        await user.settle()
        assert tp.fake.sent("viber") == []
        (turns,) = await tp.query("SELECT count(*) AS n FROM inbox WHERE address = :a", a=user.address)
        assert turns.n == 1
    assert texts(await user.press(label)) == [first_question]
    purposes = [p.id for p in config(tp).consent_purposes]

    # The platform delivers the "Yes" to question 1 three times at once, then once more later.
    yes = json.dumps(user.press_body(user.button(t("en", "buttons.yes"))), ensure_ascii=False).encode()
    before = len(tp.fake.sent(platform))
    statuses = await asyncio.gather(*(user.post(yes) for _ in range(3)))
    assert [status for status, _ in statuses] == [200, 200, 200]
    await user.settle()
    assert texts(user.collect(before)) == [question(tp, "en", purposes[1])]
    before = len(tp.fake.sent(platform))
    assert (await user.post(yes))[0] == 200
    await user.settle()
    assert user.collect(before) == []

    # still at question 2: the next answer brings question 3, not 4
    assert texts(await user.press(t("en", "buttons.no"))) == [question(tp, "en", purposes[2])]
    log = await consent_log(tp, user)
    assert [(purpose, g) for purpose, g, _, _ in log] == [(purposes[0], True), (purposes[1], False)]


# ----------------------------------------------------------------------------- 7. stale and double-tapped buttons


def button_id(button: WireButton) -> str:
    """The dialog's button id a wire button carries (Viber prefixes its ActionBody)."""
    return button.token.removeprefix(BUTTON_PREFIX)


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_stale_consent_button_does_not_answer_the_next_question(tp: Touchpoint, platform: str) -> None:
    """No on question 1, then a quick Yes on the same message: question 2 was never shown, so no answer."""
    user = PlatformUser(tp, platform)
    label, first_question = await _first_question(tp, user)
    purposes = [p.id for p in config(tp).consent_purposes]
    assert texts(await user.press(label)) == [first_question]
    old_yes, old_no = user.button(t("en", "buttons.yes")), user.button(t("en", "buttons.no"))
    # each id names the question it answers
    assert (button_id(old_yes), button_id(old_no)) == (f"yes:{purposes[0]}", f"no:{purposes[0]}")

    assert texts(await user.send(user.press_body(old_no))) == [question(tp, "en", purposes[1])]
    for stale in (old_yes, old_no):
        again = await user.send(user.press_body(stale))
        assert texts(again) == [question(tp, "en", purposes[1])]  # shown again, nothing recorded
        assert [button_id(b) for b in again[0].buttons] == [f"yes:{purposes[1]}", f"no:{purposes[1]}"]
    assert await consent_log(tp, user) == [(purposes[0], False, "signup", config(tp).purpose(purposes[0]).version)]
    assert granted(await lookup(tp, user)) == {purposes[0]: False}

    assert texts(await user.press(t("en", "buttons.yes"))) == [question(tp, "en", purposes[2])]
    assert granted(await lookup(tp, user)) == {purposes[0]: False, purposes[1]: True}
    if platform == "telegram":  # the stale presses' spinners were stopped too
        await eventually(lambda: _callbacks_answered(tp, 5))


@pytest.mark.parametrize("platform", ["telegram", "whatsapp"])
async def test_double_tapped_privacy_turn_off_leaves_it_off(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    answers = mixed_answers(tp)
    await sign_up(tp, user, answers)
    on = next(p for p, g in answers.items() if g)
    on_name = t("en", f"consent.{on}.name")
    version = config(tp).purpose(on).version

    await user.say("privacy")
    turn_off = user.button(t("en", "privacy.turn_off", name=on_name))
    assert button_id(turn_off) == f"off:{on}"
    (relisted,) = await user.send(user.press_body(turn_off))
    assert t("en", "consent.line_off", name=on_name) in relisted.text
    (again,) = await user.send(user.press_body(turn_off))  # the second tap, or the old list's button
    assert t("en", "consent.line_off", name=on_name) in again.text
    assert button_id(user.button(t("en", "privacy.turn_on", name=on_name))) == f"on:{on}"

    assert granted(await lookup(tp, user)) == {**answers, on: False}
    assert (await consent_log(tp, user))[len(answers) :] == [(on, False, "privacy", version)]


# ----------------------------------------------------------------------------- 8. platform limits on the wire


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_button_limits_hold_on_the_wire(tp: Touchpoint, platform: str) -> None:
    user = PlatformUser(tp, platform)
    await user.start()
    if platform == "viber":  # the welcome offers the other languages; the language command all three
        languages = await user.say(command_word("en", "language"))
        assert texts(languages) == [t("en", "language.question")]
        await user.press(I18N.native_name("en"))
        await user.press(t("en", "signup.start"))
    else:
        languages = await user.press(t("en", "signup.change_language"))
        assert texts(languages) == [t("en", "language.question")]
        await user.press(I18N.native_name("en"))
    assert languages[0].labels == [I18N.native_name(code) for code in config(tp).locales]
    assert len(languages[0].labels) == 3
    consent_questions = []
    for _ in config(tp).consent_purposes:
        consent_questions.append(user.replies[-1])
        await user.press(t("en", "buttons.yes"))
    (privacy,) = await user.say("privacy")
    actions = [t("en", msgid) for msgid in ("privacy.my_data", "privacy.pause", "privacy.erase", "buttons.done")]
    assert privacy.labels[len(config(tp).consent_purposes) :] == actions  # one toggle per purpose, then these

    recorded = [r for r in tp.fake.requests if r.platform == platform and recipient(r) == user.address]
    keyboards = [read_reply(platform, r.json) for r in recorded if read_reply(platform, r.json).buttons]
    assert len(keyboards) >= 7
    if platform == "telegram":
        for reply in keyboards:
            for button in reply.buttons:
                assert 1 <= len(button.token.encode()) <= 64, button
    elif platform == "viber":
        for reply in [*keyboards, user.replies[0]]:  # the welcome travelled in the webhook response
            assert 1 <= len(reply.buttons) <= 24
    else:
        assert languages[0].widget == "button"
        for reply in consent_questions:
            assert reply.widget == "button" and reply.labels == [t("en", "buttons.yes"), t("en", "buttons.no")]
        for reply in keyboards:
            if reply.widget == "button":
                assert len(reply.buttons) <= 3
                assert all(len(b.label) <= 20 for b in reply.buttons)
            else:
                assert reply.widget == "list"
                assert len(reply.buttons) <= 10
                assert all(len(b.label) <= 24 and len(b.description) <= 72 for b in reply.buttons)
                assert len(reply.body["interactive"]["action"]["button"]) <= 20
        assert privacy.widget == "list"  # eight choices do not fit WhatsApp's three reply buttons
