"""``bot.pushes.decide``: the whole rule chain for one customer, as the dry run and the dispatcher see it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot import policy
from bot.config import load_config
from bot.push_store import Facts, Identity
from bot.pushes import decide

CONFIG = load_config(None)
BACK = CONFIG.touchpoints["back_in_stock"]
NOON = datetime(2026, 6, 10, 12, 0, tzinfo=timezone.utc)


def facts(**overrides) -> Facts:
    base = dict(
        customer_id=1,
        first_name="Alice",
        locale="en",
        timezone="Europe/Berlin",
        preferred_channel=None,
        erased=False,
        identities=[
            Identity("telegram", "5550100201", False, NOON - timedelta(days=3)),
            Identity("whatsapp", "15550100201", False, NOON - timedelta(hours=30)),
        ],
        consents={("marketing", "telegram"): (True, "signup"), ("marketing", "whatsapp"): (True, "signup")},
    )
    base.update(overrides)
    return Facts(**base)


def test_sends_on_the_first_allowed_channel_of_the_fallback_order():
    decision = decide(BACK, facts(), CONFIG, NOON)
    # WhatsApp comes first, but its window closed 6 hours ago and back_in_stock has a template.
    assert decision.action == "send"
    assert (decision.route.channel, decision.route.form) == ("whatsapp", "template")


def test_without_a_template_whatsapp_outside_the_window_falls_back():
    rule = CONFIG.touchpoints["product_launched"]
    decision = decide(rule, facts(), CONFIG, NOON)
    assert (decision.route.channel, decision.route.form) == ("telegram", "text")
    assert decision.held_back == [("whatsapp", policy.WINDOW_CLOSED)]


def test_the_preferred_channel_goes_first():
    decision = decide(BACK, facts(preferred_channel="telegram"), CONFIG, NOON)
    assert decision.route.channel == "telegram"


def test_consent_on_one_channel_but_not_the_other():
    only_whatsapp = facts(consents={("marketing", "whatsapp"): (True, "signup"), ("marketing", "telegram"): (False, "privacy")})
    decision = decide(BACK, only_whatsapp, CONFIG, NOON, allow_template=True)
    assert decision.route.channel == "whatsapp"
    assert decide(CONFIG.touchpoints["product_launched"], only_whatsapp, CONFIG, NOON).reason == policy.NO_CHANNEL


def test_no_consent_anywhere_is_skipped_with_the_reason():
    decision = decide(BACK, facts(consents={}), CONFIG, NOON)
    assert (decision.action, decision.reason) == ("skip", policy.NO_CONSENT)
    assert {c for c, _ in decision.held_back} == {"telegram", "whatsapp"}


def test_quiet_hours_defer_to_nine_in_the_customers_zone():
    late = datetime(2026, 6, 10, 20, 30, tzinfo=timezone.utc)  # 22:30 in Berlin
    decision = decide(BACK, facts(), CONFIG, late)
    assert (decision.action, decision.reason) == ("defer", policy.QUIET_HOURS)
    assert decision.until == datetime(2026, 6, 11, 7, 0, tzinfo=timezone.utc)


def test_transactional_touchpoints_ignore_quiet_hours_and_caps_but_not_stop():
    rule = CONFIG.touchpoints["back_in_stock"].model_copy(update={"transactional": True})
    late = datetime(2026, 6, 10, 20, 30, tzinfo=timezone.utc)
    busy = facts(marketing_sent_at=[late - timedelta(hours=1), late - timedelta(hours=2)], preferred_channel="telegram")
    assert decide(rule, busy, CONFIG, late).action == "send"
    stopped = facts(
        preferred_channel="telegram",
        consents={
            ("marketing", "telegram"): (True, "signup"),
            ("personalised", "telegram"): (False, "stop"),
            ("marketing", "whatsapp"): (False, "stop"),
        },
    )
    assert decide(rule, stopped, CONFIG, NOON).action == "skip"


def test_cap_skips_ordinary_pushes_and_defers_important_ones():
    sent = [NOON - timedelta(hours=5), NOON - timedelta(hours=1)]
    ordinary = decide(CONFIG.touchpoints["product_launched"], facts(marketing_sent_at=sent), CONFIG, NOON)
    assert (ordinary.action, ordinary.reason) == ("skip", policy.CAP_DAY)
    urgent = BACK.model_copy(update={"priority": 90})
    deferred = decide(urgent, facts(marketing_sent_at=sent), CONFIG, NOON)
    assert (deferred.action, deferred.reason, deferred.until) == ("defer", policy.CAP_DAY, sent[0] + timedelta(days=1))


def test_blocked_and_erased_customers_get_nothing():
    blocked = facts(identities=[Identity("telegram", "5550100201", True, NOON)])
    assert decide(BACK, blocked, CONFIG, NOON).reason == policy.BLOCKED
    assert decide(BACK, facts(erased=True), CONFIG, NOON).reason == policy.ERASED


def test_channels_already_tried_are_not_used_again():
    decision = decide(BACK, facts(), CONFIG, NOON, tried=["whatsapp"])
    assert decision.route.channel == "telegram"
    assert decide(BACK, facts(), CONFIG, NOON, tried=["whatsapp", "telegram"]).action == "skip"


def test_a_stop_is_reported_as_stopped_not_as_missing_consent():
    stopped = facts(
        identities=[Identity("telegram", "5550100201", False, NOON)],
        consents={("marketing", "telegram"): (False, "stop")},
    )
    decision = decide(BACK, stopped, CONFIG, NOON)
    assert (decision.action, decision.reason) == ("skip", policy.STOPPED)
    never_asked = facts(identities=[Identity("telegram", "5550100201", False, NOON)], consents={})
    assert decide(BACK, never_asked, CONFIG, NOON).reason == policy.NO_CONSENT
