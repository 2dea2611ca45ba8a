"""The company's contacts: hotline, contact-center hours, offices; and the
normalisation of a customer's phone number."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.errors import HandlerError
from handlers.hours import is_open, next_opening
from handlers.snils import DASHES, SPACES
from storage.models import Office

_NON_DIGITS = re.compile(r"\D+")
# Between two digits of a phone: spaces and at most one dash, dot or bracket
# ("+7 (4712) 39-55-55", "8 800 100-19-00", "+7-910-210-45-67").
_GAP = rf"{SPACES}(?:[{DASHES}.()]{SPACES})?"
# A Russian number: +7, 8 or 7, then ten digits whose first is a geographic
# (3, 4, 8) or mobile (9) code; or the same ten digits without the prefix.
PHONE_PATTERN: Final = re.compile(
    rf"(?<![\w+])(?:(?P<prefix>\+{SPACES}7|8|7){_GAP})?(?P<national>\(?[3489](?:{_GAP}\d){{9}})"
    rf"(?!\d)"
)
# A Kursk number without its city code: 39-55-55.
_LOCAL = re.compile(rf"(?<![\d{DASHES}])\d{{2}}-\d{{2}}-\d{{2}}(?![\d{DASHES}])")
_CITY_CODE = "4712"
PHONE_MARK: Final = "[телефон скрыт]"


class InvalidPhone(HandlerError):
    """Not a Russian phone number."""


@dataclass(frozen=True, slots=True)
class PhoneMatch:
    phone: str  # +7 and ten digits
    start: int
    end: int


def _phone(match: re.Match[str], *, asked: bool) -> str | None:
    national = _NON_DIGITS.sub("", match.group("national"))
    bare = match.group("prefix") is None and match.group(0).isdigit()
    # Ten bare digits are an account number as often as a phone: only a
    # mobile code (9xx) makes them a phone, unless a phone was asked for.
    if bare and not asked and national[0] != "9":
        return None
    return "+7" + national


def find_phones(text: str) -> Iterator[PhoneMatch]:
    """Every phone number in ``text``, left to right: the one recognizer that
    the flows take a phone from and that redaction removes."""
    found: list[PhoneMatch] = []
    for match in PHONE_PATTERN.finditer(text):
        phone = _phone(match, asked=False)
        if phone is not None:
            found.append(PhoneMatch(phone, match.start(), match.end()))
    for match in _LOCAL.finditer(text):
        if not any(p.start <= match.start() < p.end for p in found):
            found.append(
                PhoneMatch(f"+7{_CITY_CODE}{_NON_DIGITS.sub('', match.group())}", *match.span())
            )
    yield from sorted(found, key=lambda p: p.start)


def redact_phones(text: str, keep: frozenset[str] = frozenset()) -> str:
    """``text`` with every phone replaced by a mark, except the numbers in
    ``keep`` (the company's own, normalised: ``+78001001900``)."""
    parts: list[str] = []
    last = 0
    for match in find_phones(text):
        if match.phone in keep:
            continue
        parts.append(text[last : match.start])
        parts.append(PHONE_MARK)
        last = match.end
    parts.append(text[last:])
    return "".join(parts)


def normalize_phone(raw: str) -> str:
    """``8 (910) 210-45-67`` / ``+7 910 2104567`` / ``9102104567`` -> ``+79102104567``.

    The whole text must be one phone (the customer was asked for it).
    Raises :class:`InvalidPhone` for anything else (the text is not echoed
    in the error: it may be personal data).
    """
    text = raw.strip()
    match = PHONE_PATTERN.fullmatch(text)
    if match is not None:
        phone = _phone(match, asked=True)
        if phone is not None:
            return phone
    local = _LOCAL.fullmatch(text)
    if local is not None:
        return f"+7{_CITY_CODE}{_NON_DIGITS.sub('', text)}"
    raise InvalidPhone("not a Russian phone number")


@dataclass(frozen=True, slots=True)
class OfficeInfo:
    id: int
    name: str
    address: str
    phone: str
    hours: str


@dataclass(frozen=True, slots=True)
class ContactInfo:
    company_name: str
    hotline_phone: str
    open_hour: int
    close_hour: int
    # ISO weekdays the contact center works (Monday=1).
    days: tuple[int, ...]
    timezone: str
    is_open_now: bool
    next_open_at: datetime  # ``now`` itself when open
    offices: tuple[OfficeInfo, ...]


def office_info(office: Office) -> OfficeInfo:
    return OfficeInfo(
        id=office.id,
        name=office.name,
        address=office.address,
        phone=office.phone,
        hours=office.hours,
    )


async def list_offices(session: AsyncSession) -> list[OfficeInfo]:
    rows = (await session.execute(select(Office).order_by(Office.id))).scalars().all()
    return [office_info(o) for o in rows]


async def contact_info(session: AsyncSession, settings: Settings, now: datetime) -> ContactInfo:
    return ContactInfo(
        company_name=settings.company_name,
        hotline_phone=settings.hotline_phone,
        open_hour=settings.contact_center_open_hour,
        close_hour=settings.contact_center_close_hour,
        days=settings.contact_center_days,
        timezone=settings.timezone,
        is_open_now=is_open(settings, now),
        next_open_at=next_opening(settings, now),
        offices=tuple(await list_offices(session)),
    )
