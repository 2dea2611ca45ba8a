"""Russian formatting of money, volumes, dates and times for replies."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

MONTHS_NOMINATIVE: Final = (
    "январь", "февраль", "март", "апрель", "май", "июнь",
    "июль", "август", "сентябрь", "октябрь", "ноябрь", "декабрь",
)  # fmt: skip
MONTHS_GENITIVE: Final = (
    "января", "февраля", "марта", "апреля", "мая", "июня",
    "июля", "августа", "сентября", "октября", "ноября", "декабря",
)  # fmt: skip
# "в понедельник", "во вторник"...
WEEKDAYS_ACCUSATIVE: Final = (
    "в понедельник", "во вторник", "в среду", "в четверг",
    "в пятницу", "в субботу", "в воскресенье",
)  # fmt: skip


def _group(whole: str) -> str:
    sign = "-" if whole.startswith("-") else ""
    digits = whole.lstrip("-")
    groups: list[str] = []
    while len(digits) > 3:
        groups.insert(0, digits[-3:])
        digits = digits[:-3]
    groups.insert(0, digits)
    return sign + "\u00a0".join(groups)


def number(value: Decimal, places: int) -> str:
    """``Decimal("3456.78")`` -> ``3 456,78`` (non-breaking space, comma)."""
    q = Decimal(1).scaleb(-places)
    text = f"{value.quantize(q):f}"
    whole, _, frac = text.partition(".")
    return _group(whole) + ("," + frac if frac else "")


def money(value: Decimal) -> str:
    return f"{number(value, 2)}\u00a0₽"


def volume(value: Decimal, unit: str) -> str:
    return f"{number(value, 3)}\u00a0{unit}"


def day_month(day: date) -> str:
    return f"{day.day} {MONTHS_GENITIVE[day.month - 1]}"


def short_date(day: date) -> str:
    return day.strftime("%d.%m.%Y")


def month_year(period: date) -> str:
    return f"{MONTHS_NOMINATIVE[period.month - 1]} {period.year}"


def local_time(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%H:%M")


def when(moment: datetime, now: datetime, tz: ZoneInfo) -> str:
    """ "сегодня в 8:00", "завтра в 8:00", "в понедельник, 30 ноября, в 8:00"."""
    local, today = moment.astimezone(tz), now.astimezone(tz).date()
    at = f"{local.hour}:{local.minute:02d}"
    if local.date() == today:
        return f"сегодня в {at}"
    if local.date() == today + timedelta(days=1):
        return f"завтра в {at}"
    return f"{WEEKDAYS_ACCUSATIVE[local.weekday()]}, {day_month(local.date())}, в {at}"
