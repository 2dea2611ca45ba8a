"""Russian formatting of money, volumes, dates and times for replies: the one
place every flow takes them from. Times are shown in local (Moscow) time."""

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
WEEKDAYS_SHORT: Final = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")
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
    """``2 588,37 ₽`` (non-breaking spaces)."""
    return f"{number(value, 2)}\u00a0₽"


def volume(value: Decimal, unit: str) -> str:
    return f"{number(value, 3)}\u00a0{unit}"


def day_month(day: date) -> str:
    return f"{day.day} {MONTHS_GENITIVE[day.month - 1]}"


def short_date(moment: date | datetime, tz: ZoneInfo | None = None) -> str:
    """``11.12.2026``; a datetime is shown in local time (``tz`` required)."""
    if isinstance(moment, datetime):
        if tz is None:
            raise ValueError("short_date needs the time zone to show a datetime")
        moment = moment.astimezone(tz)
    return moment.strftime("%d.%m.%Y")


def day_month_time(moment: datetime, tz: ZoneInfo) -> str:
    """``29.11 10:15`` in local time."""
    return moment.astimezone(tz).strftime("%d.%m %H:%M")


def slot_label(moment: datetime, tz: ZoneInfo) -> str:
    """``пт 27.11 в 11:00`` in local time."""
    local = moment.astimezone(tz)
    return f"{WEEKDAYS_SHORT[local.weekday()]} {local:%d.%m} в {local:%H:%M}"


def weekday_range(days: tuple[int, ...]) -> str:
    """ISO weekdays (Monday=1) -> ``пн–сб`` or ``пн, ср, пт``."""
    ordered = sorted(set(days))
    if not ordered:
        return ""
    if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{WEEKDAYS_SHORT[ordered[0] - 1]}–{WEEKDAYS_SHORT[ordered[-1] - 1]}"
    return ", ".join(WEEKDAYS_SHORT[d - 1] for d in ordered)


def decimal_ru(value: Decimal) -> str:
    """``0.1500`` -> ``0,15`` (as many places as it has, no grouping)."""
    text = format(value.normalize(), "f")
    return text.replace(".", ",")


def plural(n: int, one: str, few: str, many: str) -> str:
    """Russian plural: 1 балл, 2 балла, 5 баллов."""
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def month_year(period: date) -> str:
    return f"{MONTHS_NOMINATIVE[period.month - 1]} {period.year}"


def when(moment: datetime, now: datetime, tz: ZoneInfo) -> str:
    """ "сегодня в 8:00", "завтра в 8:00", "в понедельник, 30 ноября, в 8:00"."""
    local, today = moment.astimezone(tz), now.astimezone(tz).date()
    at = f"{local.hour}:{local.minute:02d}"
    if local.date() == today:
        return f"сегодня в {at}"
    if local.date() == today + timedelta(days=1):
        return f"завтра в {at}"
    return f"{WEEKDAYS_ACCUSATIVE[local.weekday()]}, {day_month(local.date())}, в {at}"
