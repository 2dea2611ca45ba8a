"""Russian working days (production calendar) from the ``holidays`` library.

Reference data, like the tariffs table: it sits at the storage layer so that
both the handlers (appeal deadlines) and the demo data (office slots, past
appeals) use this one calendar.

Weekends and public holidays are days off; Saturdays the government moves
work to (``weekend_workdays``, e.g. 2025-11-01) are working days. The calendar
of a year is built once and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

# The end of the working day a deadline falls on, local time.
END_OF_DAY = time(23, 59, 59)


@dataclass(frozen=True, slots=True)
class _YearCalendar:
    days_off: frozenset[date]
    weekend_workdays: frozenset[date]


@lru_cache(maxsize=16)
def _year(year: int) -> _YearCalendar:
    ru = holidays.country_holidays("RU", years=year)
    return _YearCalendar(
        days_off=frozenset(ru.keys()),
        weekend_workdays=frozenset(getattr(ru, "weekend_workdays", ())),
    )


def is_working_day(day: date) -> bool:
    """True on a Russian working day (not a weekend, not a public holiday)."""
    cal = _year(day.year)
    if day in cal.weekend_workdays:
        return True
    if day in cal.days_off:
        return False
    return day.weekday() < 5


def next_working_days(from_date: date, n: int) -> list[date]:
    """The first ``n`` working days on or after ``from_date``."""
    if n < 0:
        raise ValueError("n must not be negative")
    days: list[date] = []
    day = from_date
    while len(days) < n:
        if is_working_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days


def add_working_days(start: datetime, n: int, tz: ZoneInfo) -> datetime:
    """The end (local ``tz`` time) of the ``n``-th working day after ``start``'s
    local date, returned in UTC.

    Friday 27.11.2026 + 10 working days is Friday 11.12.2026 23:59:59 Moscow.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if n < 1:
        raise ValueError("n must be at least 1")
    local_day = start.astimezone(tz).date()
    last = next_working_days(local_day + timedelta(days=1), n)[-1]
    return datetime.combine(last, END_OF_DAY, tzinfo=tz).astimezone(UTC)
