"""Outages: is supply off at an address, why and until when; and emergency
reports (no heating, a leak) registered around the clock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.appeals import AppealInfo, NewAppeal, create_appeal
from storage.crypto import PersonalDataVault
from storage.models import (
    Appeal,
    AppealCategory,
    Outage,
    OutageKind,
    Priority,
    Service,
    Task,
    TaskKind,
)

# Street-type words dropped before comparing street names.
_STREET_WORDS = (
    r"улиц[аеуы]|ул|проспект\w*|пр-т|просп|пр|переул\w*|пер|проезд\w*|пр-д|бульвар\w*|б-р|бул"
    r"|площад\w*|пл|шоссе|ш|набережн\w*|наб|тупик\w*|туп|микрорайон\w*|мкр"
)
# "в жилом комплексе «Европа»" and "ЖК Европа" name the same place.
_COMPLEX = re.compile(r"жил(?:ой|ом|ого|ому)\s+комплекс\w*", re.IGNORECASE)
_CITY = re.compile(r"(?:^|[\s,])(?:г\.?|город)\s*курск\b|^\s*курск\b", re.IGNORECASE)
_HOUSE = re.compile(
    r"(?:\bд(?:ом)?\.?\s*|\s|,)(\d{1,4}(?:\s?[а-я](?![а-я]))?(?:\s*[/к]\s*\d{1,3})?)\b",
    re.IGNORECASE,
)
_FLAT = re.compile(r"\b(?:кв|квартира|оф|офис|корп|корпус|стр|строение)\.?\s*\d+\w*", re.IGNORECASE)
_STREET_TYPE = re.compile(rf"(?<![а-я])(?:{_STREET_WORDS})(?![а-я])\.?", re.IGNORECASE)
_LEADING_WORDS = frozenset({"на", "по", "в", "во", "у", "около", "возле", "адрес", "адресу"})
_SPACES = re.compile(r"[\s,.;:\"«»()]+")


def normalize_street(street: str) -> str:
    """``ул. Карла Маркса`` / ``Карла-Маркса улица`` / ``КАРЛА МАРКСА`` -> ``карла маркса``."""
    text = _COMPLEX.sub("жк", street.lower().replace("ё", "е"))
    text = _STREET_TYPE.sub(" ", text)
    words = _SPACES.sub(" ", text.replace("-", " ")).split()
    # "на Сумской", "по адресу Ленина": leading words that are not the name.
    while words and words[0] in _LEADING_WORDS:
        words.pop(0)
    return " ".join(words)


# Adjective endings of street names in any case ("на Сумской", "по Сумскую"):
# feminine (улица), masculine (переулок, проезд) and plural forms.
_ADJECTIVE_ENDING = re.compile(r"(?:ого|его|ому|ему|ая|яя|ой|ей|ую|юю|ый|ий|ом|ем|ых|их)$")


def street_key(street: str) -> str:
    """A comparison key that survives Russian case endings:
    ``Сумская`` / ``на Сумской`` / ``сумскую`` -> ``сумск``."""
    words = normalize_street(street).split()
    return " ".join(_ADJECTIVE_ENDING.sub("", w) if len(w) >= 6 else w for w in words)


def normalize_house(house: str) -> str:
    """``10А`` / ``10 а`` / ``д. 10а`` -> ``10а``."""
    text = house.lower().replace("ё", "е")
    text = re.sub(r"^\s*д(?:ом)?\.?\s*", "", text)
    return re.sub(r"\s+", "", text)


@dataclass(frozen=True, slots=True)
class ParsedAddress:
    street: str  # normalised: lower case, no street type
    house: str | None


def parse_address(text: str) -> ParsedAddress | None:
    """Street and house from a free-form address (``г. Курск, ул. Ленина, д. 10, кв. 5``).

    ``None`` when no street can be found at all.
    """
    body = _CITY.sub(" ", text)
    body = _FLAT.sub(" ", body)
    house: str | None = None
    street_part = body
    # The last number-like token is the house: "50 лет Октября 12".
    match = None
    for match in _HOUSE.finditer(body):  # noqa: B007
        continue
    if match is not None:
        house = normalize_house(match.group(1))
        street_part = body[: match.start()]
    street = normalize_street(street_part)
    # A bare number ("10") is no street.
    if not re.search(r"[а-яa-z]", street):
        return None
    return ParsedAddress(street=street, house=house)


@dataclass(frozen=True, slots=True)
class OutageInfo:
    kind: OutageKind
    service: Service
    street: str
    houses: tuple[str, ...]  # empty: the whole street
    reason: str
    starts_at: datetime
    ends_at: datetime
    active: bool  # already under way (else upcoming)


def _houses(raw: str) -> tuple[str, ...]:
    return tuple(normalize_house(h) for h in raw.split(",") if h.strip())


def _covers(outage: Outage, address: ParsedAddress) -> bool:
    if street_key(outage.street) != street_key(address.street):
        return False
    houses = _houses(outage.houses)
    if not houses:
        return True
    return address.house is not None and address.house in houses


async def find_outages(
    session: AsyncSession,
    address: ParsedAddress,
    now: datetime,
    service: Service | None = None,
) -> list[OutageInfo]:
    """Active and upcoming outages covering the address, active ones first.

    An address without a house number matches only whole-street outages:
    the bot should not say "off" for a house it does not know.
    """
    rows = (
        await session.execute(
            select(Outage).where(Outage.ends_at > now).order_by(Outage.starts_at, Outage.id)
        )
    ).scalars()
    found = [
        OutageInfo(
            kind=o.kind,
            service=o.service,
            street=o.street,
            houses=_houses(o.houses),
            reason=o.reason,
            starts_at=o.starts_at,
            ends_at=o.ends_at,
            active=o.starts_at <= now,
        )
        for o in rows
        if _covers(o, address) and (service is None or o.service == service)
    ]
    return sorted(found, key=lambda o: (not o.active, o.starts_at))


@dataclass(frozen=True, slots=True)
class EmergencyReport:
    description: str
    address: str
    service: Service | None = None
    account_id: int | None = None
    conversation_id: int | None = None
    channel: str | None = None
    contact_phone: str | None = None


@dataclass(frozen=True, slots=True)
class EmergencyRegistered:
    appeal: AppealInfo
    task_id: int


async def register_emergency(
    session: AsyncSession,
    vault: PersonalDataVault,
    settings: Settings,
    report: EmergencyReport,
    now: datetime,
) -> EmergencyRegistered:
    """A HIGH-priority EMERGENCY appeal plus a dispatch task, at any hour."""
    appeal = await create_appeal(
        session,
        vault,
        settings,
        NewAppeal(
            category=AppealCategory.EMERGENCY,
            description=report.description,
            account_id=report.account_id,
            conversation_id=report.conversation_id,
            channel=report.channel,
            address=report.address,
            contact_phone=report.contact_phone,
            priority=Priority.HIGH,
        ),
        now,
    )
    appeal_id = (
        await session.execute(select(Appeal.id).where(Appeal.number == appeal.number))
    ).scalar_one()
    service = f" ({report.service.value})" if report.service else ""
    task = Task(
        kind=TaskKind.EMERGENCY_DISPATCH,
        account_id=report.account_id,
        appeal_id=appeal_id,
        description=f"Аварийная заявка {appeal.number}{service}: {report.address}",
        created_at=now,
    )
    session.add(task)
    await session.flush()
    return EmergencyRegistered(appeal=appeal, task_id=task.id)
