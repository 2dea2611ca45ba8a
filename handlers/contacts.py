"""The company's contacts: hotline, contact-center hours, offices; and the
normalisation of a customer's phone number."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.errors import HandlerError
from handlers.hours import is_open, next_opening
from storage.models import Office

_NON_DIGITS = re.compile(r"\D+")
# What a phone number may look like before its digits are taken.
_PHONE_CHARS = re.compile(r"^\+?[\d\s()\-.]{10,24}$")


class InvalidPhone(HandlerError):
    """Not a Russian phone number."""


def normalize_phone(raw: str) -> str:
    """``8 (910) 210-45-67`` / ``+7 910 2104567`` / ``9102104567`` -> ``+79102104567``.

    Raises :class:`InvalidPhone` for anything else (the text is not echoed
    in the error: it may be personal data).
    """
    text = raw.strip()
    if not _PHONE_CHARS.match(text):
        raise InvalidPhone("not a phone number")
    digits = _NON_DIGITS.sub("", text)
    if len(digits) == 10:
        digits = "7" + digits
    elif len(digits) == 11 and digits[0] in "78":
        digits = "7" + digits[1:]
    else:
        raise InvalidPhone("a Russian number has 10 digits after +7")
    return "+" + digits


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
