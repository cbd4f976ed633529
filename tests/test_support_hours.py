"""When a person answers: opening hours in the support team's time zone, weekends, DST."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from bot.config import Support
from bot.support_hours import OPENING_SLACK, is_open, next_opening, next_reply_at

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = Support()  # UTC, Monday to Friday, 09:00-18:00, reply within 60 minutes
BERLIN_OFFICE = Support(timezone="Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_weekday_within_opening_hours_promises_the_reply_time():
    now = utc(2026, 11, 18, 10, 0)  # a Wednesday
    assert is_open(OFFICE, now)
    assert next_reply_at(OFFICE, now) == utc(2026, 11, 18, 11, 0)


def test_the_promise_never_runs_past_closing():
    assert next_reply_at(OFFICE, utc(2026, 11, 18, 17, 30)) == utc(2026, 11, 18, 18, 0)


def test_evening_waits_for_the_next_morning():
    now = utc(2026, 11, 18, 19, 0)
    assert not is_open(OFFICE, now)
    assert next_opening(OFFICE, now) == utc(2026, 11, 19, 9, 0)
    assert next_reply_at(OFFICE, now) == utc(2026, 11, 19, 9, 0) + OPENING_SLACK


def test_early_morning_waits_for_opening_the_same_day():
    assert next_reply_at(OFFICE, utc(2026, 11, 18, 7, 0)) == utc(2026, 11, 18, 9, 0) + OPENING_SLACK


def test_closing_time_itself_is_closed():
    assert not is_open(OFFICE, utc(2026, 11, 18, 18, 0))
    assert is_open(OFFICE, utc(2026, 11, 18, 9, 0))


def test_weekend_waits_for_monday():
    friday_evening, saturday, sunday_night = (
        utc(2026, 11, 20, 18, 0),
        utc(2026, 11, 21, 12, 0),
        utc(2026, 11, 22, 23, 59),
    )
    for now in (friday_evening, saturday, sunday_night):
        assert not is_open(OFFICE, now)
        assert next_reply_at(OFFICE, now) == utc(2026, 11, 23, 9, 0) + OPENING_SLACK


def test_weekend_days_come_from_the_config():
    weekend_shift = Support(days=[6, 7], opens="10:00", closes="14:00")
    assert next_reply_at(weekend_shift, utc(2026, 11, 18, 10, 0)) == utc(2026, 11, 21, 10, 0) + OPENING_SLACK
    assert next_reply_at(weekend_shift, utc(2026, 11, 22, 11, 0)) == utc(2026, 11, 22, 12, 0)


def test_hours_are_read_in_the_support_time_zone():
    now = utc(2026, 11, 18, 8, 30)  # 09:30 in Berlin (CET, UTC+1): open there, closed in UTC
    assert is_open(BERLIN_OFFICE, now) and not is_open(OFFICE, now)
    reply = next_reply_at(BERLIN_OFFICE, now)
    assert reply == utc(2026, 11, 18, 9, 30)
    assert reply.tzinfo == BERLIN and (reply.hour, reply.minute) == (10, 30)  # ready to show on the office clock
    assert next_reply_at(BERLIN_OFFICE, utc(2026, 11, 18, 17, 30)) == utc(2026, 11, 19, 8, 0) + OPENING_SLACK


def test_opening_after_the_autumn_clock_change_is_still_nine_on_the_office_clock():
    # Berlin leaves summer time on Sunday 2026-10-25: Friday closes at 16:00 UTC, Monday opens at 08:00 UTC.
    assert is_open(BERLIN_OFFICE, utc(2026, 10, 23, 15, 59))
    assert not is_open(BERLIN_OFFICE, utc(2026, 10, 23, 16, 0))
    opening = next_opening(BERLIN_OFFICE, utc(2026, 10, 24, 12, 0))
    assert opening == utc(2026, 10, 26, 8, 0)
    assert opening.astimezone(BERLIN).hour == 9


def test_opening_after_the_spring_clock_change_is_an_hour_earlier_in_utc():
    # Summer time starts on Sunday 2026-03-29: Monday 09:00 in Berlin is 07:00 UTC.
    assert next_reply_at(BERLIN_OFFICE, utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 30, 7, 0) + OPENING_SLACK


def test_the_reply_time_counts_real_minutes_across_a_clock_change():
    night_shift = Support(timezone="Europe/Berlin", days=[1, 2, 3, 4, 5, 6, 7], opens="00:00", closes="24:00")
    now = utc(2026, 3, 29, 0, 30)  # 01:30 CET; at 02:00 the clocks jump to 03:00
    reply = next_reply_at(night_shift, now)
    assert reply - now == timedelta(minutes=60)
    assert (reply.hour, reply.minute) == (3, 30)  # on the office clock


def test_around_the_clock_support_is_one_window_across_midnight():
    always = Support(days=[1, 2, 3, 4, 5, 6, 7], opens="00:00", closes="24:00")
    assert next_reply_at(always, utc(2026, 11, 18, 23, 30)) == utc(2026, 11, 19, 0, 30)


def test_a_night_shift_ends_the_next_morning():
    nights = Support(days=[1, 2, 3, 4, 5], opens="22:00", closes="06:00")
    assert is_open(nights, utc(2026, 11, 19, 3, 0))  # Wednesday's shift, Thursday morning
    assert next_reply_at(nights, utc(2026, 11, 19, 5, 30)) == utc(2026, 11, 19, 6, 0)
    assert next_reply_at(nights, utc(2026, 11, 19, 12, 0)) == utc(2026, 11, 19, 22, 0) + OPENING_SLACK
    assert is_open(nights, utc(2026, 11, 21, 3, 0))  # Friday's shift runs into Saturday


def test_a_reply_time_shorter_than_the_slack_is_kept_after_opening():
    quick = Support(reply_within_minutes=5)
    assert next_reply_at(quick, utc(2026, 11, 18, 20, 0)) == utc(2026, 11, 19, 9, 5)


def test_no_working_days_or_an_unknown_time_zone_never_raise():
    nobody = Support(days=[])
    now = utc(2026, 11, 18, 10, 0)
    assert not is_open(nobody, now)
    assert next_opening(nobody, now) is None
    assert next_reply_at(nobody, now) == now + timedelta(minutes=60)
    typo = Support(timezone="Europe/Berlinn")
    assert next_reply_at(typo, now) == utc(2026, 11, 18, 11, 0)  # read as UTC


def test_a_naive_time_is_taken_as_utc():
    assert next_reply_at(OFFICE, datetime(2026, 11, 18, 10, 0)) == utc(2026, 11, 18, 11, 0)
