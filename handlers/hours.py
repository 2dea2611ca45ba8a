"""Contact-center hours: open 8:00-20:00 Monday-Saturday (settings), Moscow
time, closed on Russian public holidays (the ``holidays`` library)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

import holidays

from config import Settings


@lru_cache(maxsize=16)
def _public_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("RU", years=year).keys())


def is_public_holiday(day: date) -> bool:
    return day in _public_holidays(day.year)


def is_working_day(settings: Settings, day: date) -> bool:
    return day.isoweekday() in settings.contact_center_days and not is_public_holiday(day)


def is_open(settings: Settings, now: datetime) -> bool:
    local = now.astimezone(settings.tz)
    if not is_working_day(settings, local.date()):
        return False
    return settings.contact_center_open_hour <= local.hour < settings.contact_center_close_hour


def next_opening(settings: Settings, now: datetime) -> datetime:
    """When operators are next at work (``now`` itself if open), in UTC."""
    if is_open(settings, now):
        return now
    local = now.astimezone(settings.tz)
    day = local.date()
    if local.hour >= settings.contact_center_open_hour:
        day += timedelta(days=1)
    for _ in range(40):  # the longest Russian holiday run is about ten days
        if is_working_day(settings, day):
            opening = datetime.combine(
                day, time(settings.contact_center_open_hour), tzinfo=settings.tz
            )
            return opening.astimezone(UTC)
        day += timedelta(days=1)
    raise RuntimeError("no working day within 40 days: check contact_center_days")
