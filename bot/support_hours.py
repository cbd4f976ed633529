"""When a person can answer a handed-over conversation (``[support]`` in the shop's config).

Opening hours are wall-clock times in the support team's time zone, so they
are turned into real instants day by day (zoneinfo), and every duration is
added in UTC: on the night clocks change, "in 60 minutes" is still 60 real
minutes and Monday 09:00 is still 09:00 on the office clock.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.config import Support

log = logging.getLogger(__name__)

# Outside opening hours the promise is "soon after opening": the team first reads the
# conversations that waited overnight.
OPENING_SLACK = timedelta(minutes=15)
LOOKAHEAD_DAYS = 8  # a week, plus a window that started yesterday and runs past midnight


def support_zone(support: Support) -> tzinfo:
    """The support team's time zone; UTC (and a warning) when the config names an unknown one."""
    try:
        return ZoneInfo(support.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("support_hours.unknown_timezone %s", support.timezone)
        return timezone.utc


def is_open(support: Support, now: datetime) -> bool:
    """Whether people are at work at ``now``."""
    return _current_window(support, _utc(now)) is not None


def next_opening(support: Support, now: datetime) -> datetime | None:
    """The start of the next opening after ``now`` in the support time zone; None if there is none."""
    now = _utc(now)
    start = next((start for start, _ in _windows(support, now) if start > now), None)
    return start.astimezone(support_zone(support)) if start else None


def next_reply_at(support: Support, now: datetime) -> datetime:
    """When the customer can expect a person's answer, in the support time zone.

    Open: ``reply_within_minutes`` from now, but no later than closing (the team
    answers what arrived before it goes home). Closed: a few minutes after the
    next opening. No working day configured at all: the plain reply time.
    """
    now = _utc(now)
    zone = support_zone(support)
    within = timedelta(minutes=support.reply_within_minutes)
    window = _current_window(support, now)
    if window is not None:
        return min(now + within, window[1]).astimezone(zone)
    upcoming = next(((start, end) for start, end in _windows(support, now) if start > now), None)
    if upcoming is None:
        log.warning("support_hours.no_working_days")
        return (now + within).astimezone(zone)
    start, end = upcoming
    return (start + min(OPENING_SLACK, within, end - start)).astimezone(zone)


def _current_window(support: Support, now: datetime) -> tuple[datetime, datetime] | None:
    return next(((start, end) for start, end in _windows(support, now) if start <= now < end), None)


def _windows(support: Support, now: datetime) -> list[tuple[datetime, datetime]]:
    """Opening windows (UTC) from yesterday on for about a week, touching ones merged."""
    zone = support_zone(support)
    opens, opens_days = _clock(support.opens)
    closes, closes_days = _clock(support.closes)
    today = now.astimezone(zone).date()
    windows: list[tuple[datetime, datetime]] = []
    for offset in range(-1, LOOKAHEAD_DAYS):
        day = today + timedelta(days=offset)
        if day.isoweekday() not in support.days:
            continue
        start = _instant(day + timedelta(days=opens_days), opens, zone)
        end = _instant(day + timedelta(days=closes_days), closes, zone)
        if end <= start:  # "22:00"–"06:00": the shift ends the next morning
            end = _instant(day + timedelta(days=closes_days + 1), closes, zone)
        if windows and start <= windows[-1][1]:  # open around the clock: one long window
            windows[-1] = (windows[-1][0], max(end, windows[-1][1]))
        else:
            windows.append((start, end))
    return windows


def _clock(text: str) -> tuple[time, int]:
    """("09:00" → 09:00, 0 days); "24:00" is midnight at the end of the day."""
    hours, minutes = (int(part) for part in text.split(":"))
    if (hours, minutes) == (24, 0):
        return time(0, 0), 1
    return time(hours, minutes), 0


def _instant(day: date, clock: time, zone: tzinfo) -> datetime:
    # A wall time skipped by a DST change counts in the old offset (02:30 in a spring gap is 03:30).
    return datetime.combine(day, clock, tzinfo=zone).astimezone(timezone.utc)


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken to be UTC already (as the pipeline stores it)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
