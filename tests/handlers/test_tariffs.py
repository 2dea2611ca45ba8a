from datetime import date
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.tariffs import tariff_overview
from storage.models import Service, Tariff


async def _tariffs(session: AsyncSession) -> None:
    rows = [
        (
            Service.HEATING,
            "Тепловая энергия",
            "Гкал",
            "2100.00",
            date(2024, 7, 1),
            date(2025, 6, 30),
        ),
        (
            Service.HEATING,
            "Тепловая энергия",
            "Гкал",
            "2290.15",
            date(2025, 7, 1),
            date(2026, 9, 30),
        ),
        (Service.HEATING, "Тепловая энергия", "Гкал", "2588.37", date(2026, 10, 1), None),
        (Service.HOT_WATER, "Горячая вода", "м³", "231.40", date(2025, 7, 1), date(2026, 9, 30)),
        (Service.HOT_WATER, "Горячая вода", "м³", "261.48", date(2026, 10, 1), None),
    ]
    session.add_all(
        Tariff(service=s, name=n, unit=u, price=Decimal(p), valid_from=f, valid_to=t)
        for s, n, u, p, f, t in rows
    )
    await session.flush()


async def test_before_an_announced_change(db_session: AsyncSession) -> None:
    await _tariffs(db_session)
    heating, hot_water = await tariff_overview(db_session, date(2026, 8, 15))
    assert heating.service is Service.HEATING
    assert heating.current is not None
    assert heating.current.price == Decimal("2290.15")
    assert heating.previous is not None
    assert heating.previous.price == Decimal("2100.00")
    assert heating.upcoming is not None
    assert heating.upcoming.valid_from == date(2026, 10, 1)
    assert heating.upcoming_change_percent == Decimal("13.0")
    assert hot_water.current is not None
    assert hot_water.current.unit == "м³"
    assert hot_water.previous is None


async def test_after_the_change(db_session: AsyncSession) -> None:
    await _tariffs(db_session)
    heating, hot_water = await tariff_overview(db_session, date(2026, 11, 27))
    assert heating.current is not None
    assert heating.current.price == Decimal("2588.37")
    assert heating.upcoming is None
    assert heating.previous is not None
    assert heating.previous.price == Decimal("2290.15")
    assert hot_water.last_change_percent == Decimal("13.0")


async def test_no_tariffs(db_session: AsyncSession) -> None:
    assert await tariff_overview(db_session, date(2026, 11, 27)) == []
