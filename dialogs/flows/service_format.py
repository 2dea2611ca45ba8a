"""Formatting shared by the service flows: Moscow dates and times, roubles,
Russian plurals. No flow logic here."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

WEEKDAYS = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")
_NBSP = "\u00a0"


def day_month_time(moment: datetime, tz: ZoneInfo) -> str:
    """``29.11 10:15`` in local time."""
    return moment.astimezone(tz).strftime("%d.%m %H:%M")


def full_date(moment: datetime | date, tz: ZoneInfo | None = None) -> str:
    """``11.12.2026`` (a datetime is shown in local time)."""
    if isinstance(moment, datetime):
        assert tz is not None
        moment = moment.astimezone(tz)
    return moment.strftime("%d.%m.%Y")


def slot_label(moment: datetime, tz: ZoneInfo) -> str:
    """``пт 27.11 в 11:00`` in local time."""
    local = moment.astimezone(tz)
    return f"{WEEKDAYS[local.weekday()]} {local:%d.%m} в {local:%H:%M}"


def roubles(amount: Decimal) -> str:
    """``2 588,37 ₽`` with a non-breaking thousands space."""
    text = f"{amount.quantize(Decimal('0.01')):,.2f}"
    return text.replace(",", _NBSP).replace(".", ",") + f"{_NBSP}₽"


def decimal_ru(value: Decimal) -> str:
    """``0.1500`` -> ``0,15``."""
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


def weekday_range(days: tuple[int, ...]) -> str:
    """ISO weekdays (Monday=1) -> ``пн–сб`` or ``пн, ср, пт``."""
    ordered = sorted(set(days))
    if not ordered:
        return ""
    if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{WEEKDAYS[ordered[0] - 1]}–{WEEKDAYS[ordered[-1] - 1]}"
    return ", ".join(WEEKDAYS[d - 1] for d in ordered)
