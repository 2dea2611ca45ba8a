"""Meters with their last readings, as the reading flow sees them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from handlers.readings import account_meters, save_reading
from storage.models import Account, Meter, MeterType, Reading
from tests.conftest import DemoContext


async def _account_id(demo: DemoContext) -> int:
    async with demo.session_factory() as s:
        account_id = await s.scalar(select(Account.id).where(Account.number == "1002003001"))
    assert account_id is not None
    return account_id


async def test_a_meter_read_long_ago_still_shows_its_last_reading(demo_data: DemoContext) -> None:
    account_id = await _account_id(demo_data)
    later = demo_data.now + timedelta(days=800)  # no reading within the last year
    async with demo_data.session_factory() as s:
        meters = await account_meters(s, account_id, later)
    heating = next(m for m in meters if m.meter_type is MeterType.HEATING)
    assert heating.last_value == Decimal("148.620")
    assert heating.usual_monthly is None


async def test_a_saved_reading_is_the_last_one_within_the_same_turn(
    demo_data: DemoContext,
) -> None:
    account_id = await _account_id(demo_data)
    now = demo_data.now
    async with demo_data.session_factory() as s:
        before = await account_meters(s, account_id, now)
        heating = next(m for m in before if m.meter_type is MeterType.HEATING)
        assert heating.usual_monthly is not None
        await save_reading(
            s, demo_data.settings, account_id, heating.id, Decimal("149.5"), now, "test"
        )
        after = await account_meters(s, account_id, now)
    saved = next(m for m in after if m.id == heating.id)
    assert saved.last_value == Decimal("149.500")


async def test_the_usual_rise_averages_the_last_years_rises_and_skips_drops(
    demo_data: DemoContext,
) -> None:
    # A year of readings and one older: the usual monthly rise is the mean of
    # the rises between consecutive readings of the last year (a drop, a
    # replaced meter say, is not a rise; no change is a rise of 0), and the
    # latest reading is the last one. An inactive meter is not listed.
    account_id = await _account_id(demo_data)
    now = demo_data.now
    history = [(400, "10"), (300, "100"), (200, "110"), (150, "105"), (120, "105"), (30, "125")]
    async with demo_data.session_factory() as s:
        meter = Meter(
            account_id=account_id, meter_type=MeterType.HOT_WATER, serial="T-1", unit="м³"
        )
        gone = Meter(
            account_id=account_id,
            meter_type=MeterType.HOT_WATER,
            serial="T-0",
            unit="м³",
            active=False,
        )
        s.add_all([meter, gone])
        await s.flush()
        for days, value in history:
            taken = now - timedelta(days=days)
            s.add(Reading(meter_id=meter.id, value=Decimal(value), taken_at=taken))
            s.add(Reading(meter_id=gone.id, value=Decimal(value), taken_at=taken))
        await s.commit()
    async with demo_data.session_factory() as s:
        meters = {m.serial: m for m in await account_meters(s, account_id, now)}
    assert "T-0" not in meters
    got = meters["T-1"]
    assert got.last_value == Decimal("125")
    assert got.last_taken_at is not None
    assert abs(got.last_taken_at - (now - timedelta(days=30))) < timedelta(seconds=1)
    assert got.usual_monthly == Decimal(10)  # (10 + 0 + 20) / 3; the -5 is left out
