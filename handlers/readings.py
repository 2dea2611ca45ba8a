"""Meter readings: parsing, plausibility checks, saving, meter-check tasks."""

from __future__ import annotations

import enum
import itertools
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from storage.models import Meter, MeterType, Reading, Task, TaskKind

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


async def _meter_info(session: AsyncSession, meter: Meter, now: datetime) -> MeterInfo:
    rows = (
        await session.execute(
            select(Reading.value, Reading.taken_at)
            .where(Reading.meter_id == meter.id, Reading.taken_at >= now - USUAL_WINDOW)
            .order_by(Reading.taken_at, Reading.id)
        )
    ).all()
    last = (
        await session.execute(
            select(Reading.value, Reading.taken_at)
            .where(Reading.meter_id == meter.id)
            .order_by(Reading.taken_at.desc(), Reading.id.desc())
            .limit(1)
        )
    ).first()
    deltas = [b[0] - a[0] for a, b in itertools.pairwise(rows) if b[0] >= a[0]]
    usual = sum(deltas, Decimal(0)) / len(deltas) if deltas else None
    return MeterInfo(
        id=meter.id,
        meter_type=meter.meter_type,
        serial=meter.serial,
        unit=meter.unit,
        last_value=last[0] if last else None,
        last_taken_at=last[1] if last else None,
        usual_monthly=usual,
    )


async def account_meters(session: AsyncSession, account_id: int, now: datetime) -> list[MeterInfo]:
    """The account's active meters, heating first."""
    meters = (
        await session.execute(
            select(Meter)
            .where(Meter.account_id == account_id, Meter.active.is_(True))
            .order_by(Meter.meter_type, Meter.id)
        )
    ).scalars()
    return [await _meter_info(session, m, now) for m in meters]


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
    meter = await session.get(Meter, meter_id)
    if meter is None or meter.account_id != account_id:
        raise ReadingError("the meter does not belong to the account")
    check = check_reading(await _meter_info(session, meter, now), value, settings, now)
    if check.verdict in (Verdict.BELOW_PREVIOUS, Verdict.ABSURD):
        raise ReadingError(check.verdict.value)
    flagged = check.verdict is Verdict.JUMP
    reading = Reading(
        meter_id=meter_id, value=value, taken_at=now, channel=channel, flagged=flagged
    )
    session.add(reading)
    await session.flush()
    task_id: int | None = None
    if flagged:
        task = Task(
            kind=TaskKind.METER_CHECK,
            account_id=account_id,
            meter_id=meter_id,
            reading_id=reading.id,
            description=(
                f"Резкий рост потребления: показание {value} {meter.unit}, "
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
