from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from handlers.calendar import add_working_days, is_working_day, next_working_days

MSK = ZoneInfo("Europe/Moscow")


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 11, 27), True),  # Friday
        (date(2026, 11, 28), False),  # Saturday
        (date(2026, 11, 29), False),  # Sunday
        (date(2026, 11, 4), False),  # Unity Day, a Wednesday
        (date(2026, 1, 5), False),  # New Year holidays, a Monday
        (date(2026, 1, 12), True),
        (date(2025, 11, 1), True),  # a Saturday made a working day by decree
        (date(2026, 12, 31), False),  # moved day off
    ],
)
def test_is_working_day(day: date, working: bool) -> None:
    assert is_working_day(day) is working


def test_next_working_days_skips_holidays_and_includes_start() -> None:
    assert next_working_days(date(2026, 11, 2), 3) == [
        date(2026, 11, 2),
        date(2026, 11, 3),
        date(2026, 11, 5),
    ]
    assert next_working_days(date(2026, 11, 28), 1) == [date(2026, 11, 30)]
    assert next_working_days(date(2026, 11, 28), 0) == []


def test_ten_working_days_from_a_friday_end_on_the_friday_after_next() -> None:
    start = datetime(2026, 11, 27, 7, 15, tzinfo=UTC)  # 10:15 Moscow
    due = add_working_days(start, 10, MSK)
    assert due.tzinfo is not None
    assert due.utcoffset() == UTC.utcoffset(None)
    local = due.astimezone(MSK)
    assert (local.date(), local.hour, local.minute) == (date(2026, 12, 11), 23, 59)


def test_working_days_cross_the_new_year_holidays() -> None:
    # 29.12.2026 (Tue) + 2: 30.12 is working; 31.12 and 1-10.01 are off.
    due = add_working_days(datetime(2026, 12, 29, 9, 0, tzinfo=UTC), 2, MSK)
    assert due.astimezone(MSK).date() == date(2027, 1, 11)


def test_local_date_decides_not_utc() -> None:
    # Thursday 21:30 UTC is already Friday 00:30 in Moscow.
    due = add_working_days(datetime(2026, 11, 26, 21, 30, tzinfo=UTC), 1, MSK)
    assert due.astimezone(MSK).date() == date(2026, 11, 30)
    due = add_working_days(datetime(2026, 11, 26, 20, 0, tzinfo=UTC), 1, MSK)
    assert due.astimezone(MSK).date() == date(2026, 11, 27)


def test_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        add_working_days(datetime(2026, 11, 27, 10, 0), 1, MSK)
