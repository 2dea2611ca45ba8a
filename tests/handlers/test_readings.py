"""Meters with their last readings, as the reading flow sees them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from handlers.readings import account_meters, save_reading
from storage.models import Account, MeterType
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
