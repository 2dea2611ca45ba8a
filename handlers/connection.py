"""Technical connection to the heat network: feasibility against the network
zones' spare capacity, and the application with its ``TP-2026-000001`` number."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.errors import HandlerError
from handlers.numbering import next_number
from handlers.outages import parse_address, street_key
from storage.crypto import PersonalDataVault, mask_phone
from storage.models import ConnectionApplication, NetworkZone

APPLICATION_PREFIX = "TP"
LOAD_STEP = Decimal("0.0001")
# Above this a request is surely a typo (a large district's whole CHP share).
MAX_LOAD_GCAL_H = Decimal(50)
_LOAD = re.compile(
    r"^\s*(-?\s*\d+(?:[.,]\d+)?)\s*(?:гкал(?:\s*/\s*|\s+в\s+)?(?:ч|час)?\.?)?\s*$", re.IGNORECASE
)


class ConnectionRequestError(HandlerError):
    """Root of the connection-request errors."""


class InvalidLoad(ConnectionRequestError):
    """The heat load is not a positive number of Gcal/h within bounds."""

    def __init__(self, reason: LoadProblem) -> None:
        super().__init__(reason.value)
        self.reason = reason


class LoadProblem(enum.StrEnum):
    NOT_A_NUMBER = "not_a_number"
    NOT_POSITIVE = "not_positive"
    TOO_LARGE = "too_large"


class InvalidAddress(ConnectionRequestError):
    """No street can be read from the address."""


class BuildingKind(enum.StrEnum):
    APARTMENT_BUILDING = "apartment_building"
    NON_RESIDENTIAL = "non_residential"
    PRIVATE_HOUSE = "private_house"
    OTHER = "other"


class Verdict(enum.StrEnum):
    FEASIBLE = "feasible"
    NOT_ENOUGH_CAPACITY = "not_enough_capacity"
    NO_NETWORK = "no_network"  # no zone of the network serves this street


@dataclass(frozen=True, slots=True)
class Feasibility:
    verdict: Verdict
    zone_name: str | None
    source: str | None
    spare_load_gcal_h: Decimal | None

    @property
    def feasible(self) -> bool:
        return self.verdict is Verdict.FEASIBLE


def parse_load(text: str) -> Decimal:
    """``0,15`` / ``0.15 Гкал/ч`` -> ``Decimal("0.15")``; raises :class:`InvalidLoad`."""
    match = _LOAD.match(text)
    if match is None:
        raise InvalidLoad(LoadProblem.NOT_A_NUMBER)
    try:
        value = Decimal(match.group(1).replace(",", ".").replace(" ", ""))
    except InvalidOperation as exc:
        raise InvalidLoad(LoadProblem.NOT_A_NUMBER) from exc
    return validate_load(value)


def validate_load(value: Decimal) -> Decimal:
    value = value.quantize(LOAD_STEP)
    if value <= 0:
        raise InvalidLoad(LoadProblem.NOT_POSITIVE)
    if value > MAX_LOAD_GCAL_H:
        raise InvalidLoad(LoadProblem.TOO_LARGE)
    return value


async def check_feasibility(session: AsyncSession, address: str, load: Decimal) -> Feasibility:
    parsed = parse_address(address)
    if parsed is None:
        raise InvalidAddress("no street")
    zones = (await session.execute(select(NetworkZone).order_by(NetworkZone.id))).scalars()
    key = street_key(parsed.street)
    serving = [z for z in zones if key in {street_key(s) for s in z.streets.split(",")}]
    if not serving:
        return Feasibility(Verdict.NO_NETWORK, None, None, None)
    # Several zones may reach a street: the one with the most spare capacity.
    zone = max(serving, key=lambda z: z.spare_load_gcal_h)
    verdict = Verdict.FEASIBLE if load <= zone.spare_load_gcal_h else Verdict.NOT_ENOUGH_CAPACITY
    return Feasibility(verdict, zone.name, zone.source, zone.spare_load_gcal_h)


@dataclass(frozen=True, slots=True)
class NewConnectionApplication:
    address: str
    building_kind: BuildingKind
    load_gcal_h: Decimal
    contact_phone: str | None = None
    identity_id: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionApplicationInfo:
    number: str
    address: str
    building_kind: BuildingKind
    load_gcal_h: Decimal
    feasibility: Feasibility
    created_at: datetime


async def _zone_id(session: AsyncSession, name: str | None) -> int | None:
    if name is None:
        return None
    return (
        await session.execute(select(NetworkZone.id).where(NetworkZone.name == name).limit(1))
    ).scalar_one_or_none()


async def create_application(
    session: AsyncSession,
    vault: PersonalDataVault,
    settings: Settings,
    new: NewConnectionApplication,
    now: datetime,
) -> ConnectionApplicationInfo:
    """Check feasibility and register the application (whatever the verdict:
    an engineer looks at every one). The contact is stored encrypted."""
    load = validate_load(new.load_gcal_h)
    feasibility = await check_feasibility(session, new.address, load)
    number = await next_number(session, APPLICATION_PREFIX, now.astimezone(settings.tz).year)
    application = ConnectionApplication(
        number=number,
        identity_id=new.identity_id,
        address=new.address.strip(),
        building_kind=new.building_kind.value,
        load_gcal_h=load,
        contact_enc=vault.encrypt(new.contact_phone) if new.contact_phone else None,
        contact_masked=mask_phone(new.contact_phone) if new.contact_phone else None,
        zone_id=await _zone_id(session, feasibility.zone_name),
        feasible=feasibility.feasible,
        status="registered",
        created_at=now,
    )
    session.add(application)
    await session.flush()
    return ConnectionApplicationInfo(
        number=number,
        address=application.address,
        building_kind=new.building_kind,
        load_gcal_h=load,
        feasibility=feasibility,
        created_at=now,
    )
