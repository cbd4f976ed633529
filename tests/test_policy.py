"""The touchpoint rules as pure functions: quiet hours across zones and DST, caps, channel choice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.config import Caps, Policy, QuietHours
from bot.policy import (
    BLOCKED,
    CAP_DAY,
    CAP_WEEK,
    CHANNEL_DISABLED,
    NO_CONSENT,
    WINDOW_CLOSED,
    Reachable,
    Route,
    cap_reason,
    channel_order,
    plan_channels,
    quiet_until,
    zone,
)

UTC = timezone.utc
QUIET = QuietHours(start="21:00", end="09:00")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ----------------------------------------------------------------------------- quiet hours


def test_daytime_is_not_quiet():
    assert quiet_until(utc(2026, 6, 10, 12, 0), zone("Europe/Berlin"), QUIET) is None


def test_evening_waits_until_nine_next_morning_local_time():
    # 20:30 UTC is 22:30 in Berlin (CEST, UTC+2): quiet until 09:00 Berlin = 07:00 UTC next day.
    assert quiet_until(utc(2026, 6, 10, 20, 30), zone("Europe/Berlin"), QUIET) == utc(2026, 6, 11, 7, 0)


def test_early_morning_waits_until_nine_the_same_day():
    # 03:00 UTC is 05:00 in Berlin.
    assert quiet_until(utc(2026, 6, 10, 3, 0), zone("Europe/Berlin"), QUIET) == utc(2026, 6, 10, 7, 0)


def test_the_same_instant_is_quiet_in_one_zone_and_not_in_another():
    now = utc(2026, 6, 10, 14, 0)  # 16:00 Berlin, 23:00 Tokyo, 10:00 New York
    assert quiet_until(now, zone("Europe/Berlin"), QUIET) is None
    assert quiet_until(now, zone("Asia/Tokyo"), QUIET) == utc(2026, 6, 11, 0, 0)  # 09:00 JST
    assert quiet_until(now, zone("America/New_York"), QUIET) is None


def test_quiet_end_follows_the_wall_clock_across_a_dst_change():
    # Berlin leaves summer time on 2026-10-25 at 03:00 local. 22:00 local on the 24th
    # (20:00 UTC, CEST) is quiet until 09:00 local on the 25th, which is CET: 08:00 UTC.
    assert quiet_until(utc(2026, 10, 24, 20, 0), zone("Europe/Berlin"), QUIET) == utc(2026, 10, 25, 8, 0)
    # And into summer time: 2026-03-29; 22:00 CET on the 28th (21:00 UTC) → 09:00 CEST = 07:00 UTC.
    assert quiet_until(utc(2026, 3, 28, 21, 0), zone("Europe/Berlin"), QUIET) == utc(2026, 3, 29, 7, 0)


def test_a_window_within_one_day_and_an_empty_window():
    lunch = QuietHours(start="12:00", end="14:00")
    assert quiet_until(utc(2026, 6, 10, 12, 30), zone("UTC"), lunch) == utc(2026, 6, 10, 14, 0)
    assert quiet_until(utc(2026, 6, 10, 14, 0), zone("UTC"), lunch) is None
    assert quiet_until(utc(2026, 6, 10, 23, 0), zone("UTC"), QuietHours(start="00:00", end="00:00")) is None


def test_unknown_zone_falls_back_to_the_shop_default():
    assert zone("Mars/Olympus", "Europe/Madrid").key == "Europe/Madrid"
    assert zone(None, "nonsense").key == "UTC"


# ----------------------------------------------------------------------------- caps

CAPS = Caps(per_day=2, per_week=5)


def test_two_a_day_then_the_third_waits_until_the_first_is_a_day_old():
    now = utc(2026, 6, 10, 18, 0)
    sent = [utc(2026, 6, 10, 9, 0)]
    assert cap_reason(sent, now, CAPS) is None
    sent.append(utc(2026, 6, 10, 12, 0))
    assert cap_reason(sent, now, CAPS) == (CAP_DAY, utc(2026, 6, 11, 9, 0))
    # A day after the first send the day cap allows one more.
    assert cap_reason(sent, utc(2026, 6, 11, 9, 1), CAPS) is None


def test_five_a_week_across_days():
    sent = [utc(2026, 6, d, 10, 0) for d in (1, 2, 3, 4, 5)]
    now = utc(2026, 6, 6, 12, 0)
    assert cap_reason(sent, now, CAPS) == (CAP_WEEK, utc(2026, 6, 8, 10, 0))
    assert cap_reason(sent, utc(2026, 6, 8, 10, 1), CAPS) is None


def test_a_zero_cap_blocks_all_marketing():
    assert cap_reason([], utc(2026, 6, 1), Caps(per_day=0, per_week=5))[0] == CAP_DAY


# ----------------------------------------------------------------------------- channels

NOW = utc(2026, 6, 10, 12, 0)
POLICY = Policy()


def test_preferred_channel_first_then_the_fallback_order():
    assert channel_order("telegram", POLICY.fallback_order) == ["telegram", "whatsapp", "viber", "sms", "email"]
    assert channel_order(None, POLICY.fallback_order)[0] == "whatsapp"


def test_channels_without_consent_or_blocked_are_skipped_with_reasons():
    reachable = [
        Reachable("whatsapp", "4915550001", consented=False, last_inbound_at=NOW),
        Reachable("viber", "v1", consented=True, blocked=True),
        Reachable("telegram", "t1", consented=True),
        Reachable("email", "a@example.com", consented=True),
    ]
    plan = plan_channels(reachable, preferred=None, policy=POLICY, now=NOW, has_template=False)
    assert plan.routes == [Route("telegram", "t1", "text"), Route("email", "a@example.com", "text")]
    assert plan.skipped == [("whatsapp", NO_CONSENT), ("viber", BLOCKED)]


def test_whatsapp_inside_the_window_is_free_text():
    reachable = [Reachable("whatsapp", "49", consented=True, last_inbound_at=NOW - timedelta(hours=23))]
    plan = plan_channels(reachable, preferred="whatsapp", policy=POLICY, now=NOW, has_template=False)
    assert plan.routes == [Route("whatsapp", "49", "text")]


def test_whatsapp_outside_the_window_needs_a_template():
    reachable = [
        Reachable("whatsapp", "49", consented=True, last_inbound_at=NOW - timedelta(hours=25)),
        Reachable("telegram", "t1", consented=True),
    ]
    without = plan_channels(reachable, preferred="whatsapp", policy=POLICY, now=NOW, has_template=False)
    assert without.routes == [Route("telegram", "t1", "text")]
    assert without.skipped == [("whatsapp", WINDOW_CLOSED)]
    with_template = plan_channels(reachable, preferred="whatsapp", policy=POLICY, now=NOW, has_template=True)
    assert with_template.routes[0] == Route("whatsapp", "49", "template")


def test_a_channel_the_installation_does_not_run_is_skipped():
    reachable = [Reachable("sms", "+4915550001", consented=True), Reachable("email", "a@example.com", consented=True)]
    plan = plan_channels(reachable, preferred="sms", policy=POLICY, now=NOW, has_template=False, enabled=["email"])
    assert plan.routes == [Route("email", "a@example.com", "text")]
    assert plan.skipped == [("sms", CHANNEL_DISABLED)]


def test_a_channel_the_installation_does_not_run_after_the_chosen_one_is_not_reported():
    # Mia is reached on Telegram; that this server has no e-mail is no reason worth a line.
    reachable = [Reachable("telegram", "5550100301", consented=True), Reachable("email", "mia@example.org", consented=True)]
    plan = plan_channels(reachable, preferred="telegram", policy=POLICY, now=NOW, has_template=False, enabled=["telegram"])
    assert plan.routes == [Route("telegram", "5550100301", "text")]
    assert plan.skipped == []
