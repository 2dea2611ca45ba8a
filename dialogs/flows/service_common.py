"""Shared by the service flows: Moscow dates and times, roubles, Russian
plurals, and telling a short answer from another question."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from zoneinfo import ZoneInfo

from handlers.outages import parse_address
from nlu.types import ParseResult

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


# A typed answer to a prompt is short ("по счётчику", "0,15"); a longer
# message the NLU confidently reads as another intent is another question.
SHORT_ANSWER_WORDS = 3
OTHER_INTENT_CONFIDENCE = 0.6


def is_other_question(parse: ParseResult, own_intents: frozenset[str]) -> bool:
    """True when a loose text match must not fill the slot: the message is
    long and the NLU is sure it is about something else (it then interrupts
    the form, and the form is offered to continue)."""
    if parse.text.startswith("/") or parse.intent.name in own_intents:
        return False
    return (
        len(parse.text.split()) > SHORT_ANSWER_WORDS
        and parse.intent.confidence >= OTHER_INTENT_CONFIDENCE
        and parse.intent.name not in {"affirm", "deny", "nlu_fallback"}
    )


def address_from_text(text: str) -> str | None:
    """A typed address for an address slot (button payloads are not addresses)."""
    if text.startswith("/"):
        return None
    if parse_address(text) is not None:
        return text.strip()
    # A bare house number ("10") is an attempt at an address: validate()
    # asks for the street instead of the bot taking it for a reading.
    return text.strip() if re.fullmatch(r"[\d\s/\-.,]{1,12}", text.strip()) else None


def choice_from_words(text: str, table: Sequence[tuple[str, Enum]]) -> str | None:
    """The first choice whose word pattern occurs in a typed answer."""
    if text.startswith("/"):
        return None
    lowered = text.lower()
    for pattern, choice in table:
        if re.search(pattern, lowered):
            return str(choice.value)
    return None
