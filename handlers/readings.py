"""Meter readings: parsing, plausibility checks, saving, meter-check tasks."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from storage.db import core_rows
from storage.models import Meter, MeterType, Reading, Task, TaskKind, Volume

# Readings taken up to this day of the month (Moscow time) count in this
# month's charges; later ones in the next month's.
READINGS_CUTOFF_DAY: Final = 25
# Never plausible: more than this value, or a rise of more than this many
# times the usual monthly consumption.
ABSURD_VALUE: Final = Decimal(10) ** 7
ABSURD_FACTOR: Final = Decimal(100)
# The usual consumption is averaged over this window.
USUAL_WINDOW: Final = timedelta(days=366)
AVERAGE_MONTH_DAYS: Final = Decimal("30.44")

_NUMBER = re.compile(r"(?<![\d.,])(\d{1,3}(?:[ \u00a0]\d{3})+|\d+)(?:[.,](\d+))?(?![\d])")


class ReadingError(Exception):
    """A reading cannot be saved."""


class Verdict(enum.StrEnum):
    OK = "ok"
    JUMP = "jump"  # accepted but flagged, a meter check is opened
    BELOW_PREVIOUS = "below_previous"
    ABSURD = "absurd"


@dataclass(frozen=True)
class MeterInfo:
    id: int
    meter_type: MeterType
    serial: str
    unit: str
    last_value: Decimal | None
    last_taken_at: datetime | None
    usual_monthly: Decimal | None


@dataclass(frozen=True)
class ReadingCheck:
    verdict: Verdict
    value: Decimal
    previous: Decimal | None
    usual_monthly: Decimal | None


@dataclass(frozen=True)
class SavedReading:
    reading_id: int
    value: Decimal
    flagged: bool
    task_id: int | None
    counts_in: date  # the first day of the month whose charges include it


def parse_reading_value(text: str) -> Decimal | None:
    """``1234,5``, ``1 234.5``, ``1234`` -> Decimal; None if no number."""
    best: Decimal | None = None
    for match in _NUMBER.finditer(text):
        whole = re.sub(r"\s", "", match.group(1))
        frac = match.group(2)
        try:
            value = Decimal(f"{whole}.{frac}" if frac else whole)
        except InvalidOperation:  # pragma: no cover - the regex allows digits only
            continue
        if frac:
            return value
        if best is None:
            best = value
    return best


def to_decimal(value: object) -> Decimal | None:
    """An NLU entity value (``"1234.5"``) or a text -> Decimal."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        return parse_reading_value(value)
    return None


def counts_in(now: datetime, tz: ZoneInfo) -> date:
    """The month (its first day) whose charges include a reading taken now."""
    local = now.astimezone(tz).date()
    first = local.replace(day=1)
    if local.day <= READINGS_CUTOFF_DAY:
        return first
    return (first + timedelta(days=32)).replace(day=1)


async def _last_reading(session: AsyncSession, meter_id: int) -> tuple[Decimal, datetime] | None:
    row = (await session.execute(_LAST_READING, {"meter_id": meter_id})).first()
    return (row[0], row[1]) if row else None


# Built once, with parameters: a turn neither builds them nor keys them for
# the compiled cache again (both cost more than the query itself).
_LAST_READING: Final = (
    select(Reading.value, Reading.taken_at)
    .where(Reading.meter_id == bindparam("meter_id"))
    .order_by(Reading.taken_at.desc(), Reading.id.desc())
    .limit(1)
)
# The last year's readings of the account's active meters, each with the
# rise since the one before it and its rank from the latest.
_WINDOW: Final = (
    select(
        Reading.meter_id,
        Reading.value,
        Reading.taken_at,
        (
            Reading.value
            - func.lag(Reading.value).over(
                partition_by=Reading.meter_id, order_by=(Reading.taken_at, Reading.id)
            )
        ).label("rise"),
        func.row_number()
        .over(partition_by=Reading.meter_id, order_by=(Reading.taken_at.desc(), Reading.id.desc()))
        .label("rank"),
    )
    .join(Meter, Meter.id == Reading.meter_id)
    .where(
        Meter.account_id == bindparam("account_id"),
        Meter.active.is_(True),
        Reading.taken_at >= bindparam("since"),
    )
    .subquery("window")
)
_LATEST = _WINDOW.c.rank == 1
_RISES = _WINDOW.c.rise >= 0
# One row a meter whatever its history: the latest reading of the window and
# the sum and count of its rises (the database adds them up; a meter read
# every day costs no more than one read once a month).
_METERS: Final = (
    select(
        Meter.id,
        Meter.meter_type,
        Meter.serial,
        Meter.unit,
        func.max(_WINDOW.c.value).filter(_LATEST),
        func.max(_WINDOW.c.taken_at).filter(_LATEST),
        type_coerce(func.sum(_WINDOW.c.rise).filter(_RISES), Volume),
        func.count(_WINDOW.c.rise).filter(_RISES),
    )
    .outerjoin(_WINDOW, _WINDOW.c.meter_id == Meter.id)
    .where(Meter.account_id == bindparam("account_id"), Meter.active.is_(True))
    .group_by(Meter.id, Meter.meter_type, Meter.serial, Meter.unit)
    .order_by(Meter.meter_type, Meter.id)
)


def _cache(session: AsyncSession) -> dict[tuple[int, datetime], list[MeterInfo]]:
    # The turn's session is its transaction: within it the meters and their
    # readings change only through save_reading, which drops the entry. The
    # flows ask for the meters from several steps of one turn (and
    # save_reading re-checks), so they are read once per turn.
    cache: dict[tuple[int, datetime], list[MeterInfo]] = session.info.setdefault(
        "readings.account_meters", {}
    )
    return cache


async def account_meters(session: AsyncSession, account_id: int, now: datetime) -> list[MeterInfo]:
    """The account's active meters, heating first, each with its last reading
    and usual monthly consumption: one query (a second only for a meter with
    no reading in the last year)."""
    cache = _cache(session)
    cached = cache.get((account_id, now))
    if cached is not None:
        return list(cached)
    params = {"account_id": account_id, "since": now - USUAL_WINDOW}
    rows = await core_rows(session, _METERS, params)
    meters: list[MeterInfo] = []
    for meter_id, meter_type, serial, unit, value, taken_at, risen, rises in rows:
        # The window's latest reading is the latest of all (a later one
        # would be in the window too); without one (no value: a reading's is
        # never NULL), look further back.
        last = (value, taken_at) if value is not None else await _last_reading(session, meter_id)
        meters.append(
            MeterInfo(
                id=meter_id,
                meter_type=meter_type,
                serial=serial,
                unit=unit,
                last_value=last[0] if last else None,
                last_taken_at=last[1] if last else None,
                usual_monthly=risen / rises if rises else None,
            )
        )
    cache[(account_id, now)] = meters
    return list(meters)


def months_since(last_taken_at: datetime | None, now: datetime | None) -> Decimal:
    """Months the rise since the last reading covers (at least one)."""
    if last_taken_at is None or now is None:
        return Decimal(1)
    months = Decimal((now - last_taken_at).days) / AVERAGE_MONTH_DAYS
    return max(Decimal(1), months)


def check_reading(
    meter: MeterInfo, value: Decimal, settings: Settings, now: datetime | None = None
) -> ReadingCheck:
    """The verdict on a new reading. A rise is judged per month since the last
    reading: a customer who skipped three months is not flagged for it."""
    prev, usual = meter.last_value, meter.usual_monthly
    verdict = Verdict.OK
    if value < 0 or value >= ABSURD_VALUE:
        verdict = Verdict.ABSURD
    elif prev is not None and value < prev:
        verdict = Verdict.BELOW_PREVIOUS
    elif prev is not None and usual is not None and usual > 0:
        rise = (value - prev) / months_since(meter.last_taken_at, now)
        if rise > usual * ABSURD_FACTOR:
            verdict = Verdict.ABSURD
        elif rise > usual * settings.reading_jump_factor:
            verdict = Verdict.JUMP
    return ReadingCheck(verdict=verdict, value=value, previous=prev, usual_monthly=usual)


async def save_reading(
    session: AsyncSession,
    settings: Settings,
    account_id: int,
    meter_id: int,
    value: Decimal,
    now: datetime,
    channel: str | None,
) -> SavedReading:
    """Re-check against the latest data, save, and open a meter check on a jump."""
    info = next(
        (m for m in await account_meters(session, account_id, now) if m.id == meter_id), None
    )
    if info is None:
        raise ReadingError("the meter does not belong to the account")
    check = check_reading(info, value, settings, now)
    if check.verdict in (Verdict.BELOW_PREVIOUS, Verdict.ABSURD):
        raise ReadingError(check.verdict.value)
    flagged = check.verdict is Verdict.JUMP
    reading = Reading(
        meter_id=meter_id, value=value, taken_at=now, channel=channel, flagged=flagged
    )
    session.add(reading)
    await session.flush()
    _cache(session).clear()
    task_id: int | None = None
    if flagged:
        task = Task(
            kind=TaskKind.METER_CHECK,
            account_id=account_id,
            meter_id=meter_id,
            reading_id=reading.id,
            description=(
                f"Резкий рост потребления: показание {value} {info.unit}, "
                f"предыдущее {check.previous}, обычно {check.usual_monthly:.3f} в месяц"
            ),
            created_at=now,
        )
        session.add(task)
        await session.flush()
        task_id = task.id
    return SavedReading(
        reading_id=reading.id,
        value=value,
        flagged=flagged,
        task_id=task_id,
        counts_in=counts_in(now, settings.tz),
    )
