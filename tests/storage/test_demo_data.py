"""docs/demo-data.md, loaded into SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import holidays
from sqlalchemy import JSON, String, Text, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings
from storage.crypto import PersonalDataVault
from storage.demo_data import DEMO_BALANCES, ensure_demo_data, load_demo_data
from storage.models import (
    Account,
    Appeal,
    AppealStatus,
    AppealStatusChange,
    Base,
    BonusEntry,
    Charge,
    Customer,
    Meter,
    NetworkZone,
    NumberSequence,
    Office,
    OfficeSlot,
    Outage,
    Payment,
    Reading,
    Tariff,
)
from tests.conftest import DemoContext

MSK = ZoneInfo("Europe/Moscow")
PERSONAL_DIGITS = ("11223344595", "98765432183", "9102104567", "9155123344")


def balance_query() -> object:
    charges = (
        select(func.coalesce(func.sum(Charge.amount), 0))
        .where(Charge.account_id == Account.id)
        .scalar_subquery()
    )
    payments = (
        select(func.coalesce(func.sum(Payment.amount), 0))
        .where(Payment.account_id == Account.id)
        .scalar_subquery()
    )
    return select(Account.number, Account.opening_balance + charges - payments)


async def test_balances_are_exact_in_sql(demo_data: DemoContext) -> None:
    async with demo_data.session_factory() as s:
        rows = (await s.execute(balance_query())).all()  # type: ignore[call-overload]
    balances = {number: Decimal(value).quantize(Decimal("0.01")) for number, value in rows}
    assert balances == {
        "1002003001": Decimal("3456.78"),
        "1002003002": Decimal("-150.00"),
        "1002003003": Decimal("0.00"),
    }
    assert balances == DEMO_BALANCES
    # Exact to the kopeck, not just after rounding (SQLite sums binary floats).
    for (_, value), expected in zip(sorted(rows), DEMO_BALANCES.values(), strict=True):
        assert abs(Decimal(value) - expected) < Decimal("0.000001")


async def table_counts(session: AsyncSession) -> dict[str, int]:
    return {
        table.name: (await session.execute(select(func.count()).select_from(table))).scalar_one()
        for table in Base.metadata.sorted_tables
    }


async def test_loading_twice_changes_nothing(demo_data: DemoContext) -> None:
    async with demo_data.session_factory() as s:
        before = await table_counts(s)
        assert not await load_demo_data(s, demo_data.vault, demo_data.settings)
    async with demo_data.session_factory() as s:
        assert await table_counts(s) == before
    assert before["accounts"] == 3
    assert before["customers"] == 2
    assert before["meters"] == 4
    assert before["readings"] == 48
    assert before["charges"] == 48
    assert before["office_slots"] == 2 * 10 * 16
    assert before["tariffs"] == 4
    assert before["outages"] == 1
    assert before["network_zones"] == 3
    assert before["appeals"] == 2


async def test_ensure_loads_once_and_only_when_enabled(
    db_settings: Settings, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    assert not await ensure_demo_data(session_factory, db_settings)  # load_demo_data=False
    enabled = db_settings.model_copy(update={"load_demo_data": True})
    assert await ensure_demo_data(session_factory, enabled)
    assert not await ensure_demo_data(session_factory, enabled)
    async with session_factory() as s:
        assert (await s.execute(select(func.count()).select_from(Account))).scalar_one() == 3


async def test_accounts_owners_and_personal_data(demo_data: DemoContext) -> None:
    vault = demo_data.vault
    async with demo_data.session_factory() as s:
        accounts = {
            a.number: a
            for a in (await s.execute(select(Account).order_by(Account.number))).scalars()
        }
        owners = {n: await s.get(Customer, a.customer_id) for n, a in accounts.items()}
    assert accounts["1002003001"].address == "г. Курск, ул. Ленина, д. 10, кв. 5"
    assert accounts["1002003002"].address == "г. Курск, ул. Радищева, д. 3, кв. 12"
    assert accounts["1002003003"].address == "г. Курск, ул. Карла Маркса, д. 25, кв. 40"
    ivanov, petrova = owners["1002003001"], owners["1002003002"]
    assert ivanov is not None
    assert petrova is not None
    third = owners["1002003003"]
    assert third is not None
    assert third.id == ivanov.id
    assert ivanov.full_name == "Иванов Иван Петрович"
    assert petrova.full_name == "Петрова Анна Сергеевна"
    assert ivanov.snils_hash == vault.hash_snils("11223344595")
    assert petrova.snils_hash == vault.hash_snils("987-654-321 83")
    assert ivanov.phone_enc is not None
    assert petrova.phone_enc is not None
    assert vault.decrypt(ivanov.phone_enc) == "+79102104567"
    assert vault.decrypt(petrova.phone_enc) == "+79155123344"
    assert ivanov.phone_masked == "+7 *** ***-**-67"


async def text_values(conn: AsyncConnection) -> list[tuple[str, str, str]]:
    """(table, column, value) for every text or JSON value in the database."""
    found: list[tuple[str, str, str]] = []
    for table in Base.metadata.sorted_tables:
        cols = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
        if not cols:
            continue
        for row in (await conn.execute(select(*cols))).all():
            for col, value in zip(cols, row, strict=True):
                if value is not None:
                    found.append((table.name, col.name, str(value)))
    return found


async def personal_digits_in_clear(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        values = await text_values(conn)
    hits = []
    for table, column, value in values:
        digits = re.sub(r"\D", "", value)
        if any(p in value or p in digits for p in PERSONAL_DIGITS):
            hits.append((table, column))
    return hits


async def test_no_snils_or_phone_digits_in_clear_anywhere(demo_data: DemoContext) -> None:
    assert await personal_digits_in_clear(demo_data.engine) == []
    # The scan does find them when they are there (formatted, in any column).
    async with demo_data.engine.begin() as conn:
        await conn.execute(
            insert(NetworkZone).values(
                name="x", source="x", streets="тел. +7 (910) 210-45-67", spare_load_gcal_h=0
            )
        )
    assert await personal_digits_in_clear(demo_data.engine) == [("network_zones", "streets")]


async def test_meters_readings_and_charges(demo_data: DemoContext) -> None:
    now = demo_data.now
    async with demo_data.session_factory() as s:
        meters = (await s.execute(select(Meter).order_by(Meter.id))).scalars().all()
        serials = {m.serial: m for m in meters}
        assert set(serials) == {
            "ТЭМ-104 №310522",
            "СГВ-15 №778812",
            "СГВ-15 №556001",
            "ТЭМ-106 №400117",
        }
        last_values = {"ТЭМ-104 №310522": "148.620", "СГВ-15 №778812": "412.500",
                       "СГВ-15 №556001": "210.400", "ТЭМ-106 №400117": "96.300"}  # fmt: skip
        for serial, meter in serials.items():
            readings = (
                (
                    await s.execute(
                        select(Reading)
                        .where(Reading.meter_id == meter.id)
                        .order_by(Reading.taken_at)
                    )
                )
                .scalars()
                .all()
            )
            assert len(readings) == 12
            assert readings[-1].value == Decimal(last_values[serial])
            values = [r.value for r in readings]
            assert values == sorted(values)
            assert len(set(values)) == 12
            taken = [r.taken_at.astimezone(MSK) for r in readings]
            assert all(t.day == 20 and t.tzinfo is not None for t in taken)
            assert taken[-1] <= now
            assert now - taken[-1] < timedelta(days=32)
            unit = "Гкал" if serial.startswith("ТЭМ") else "м³"
            assert meter.unit == unit
            steps = [b - a for a, b in itertools.pairwise(values)]
            for step, when in zip(steps, taken[1:], strict=True):
                season = when.month in (10, 11, 12, 1, 2, 3, 4)
                if unit == "Гкал":
                    lo, hi = ("1.5", "2.2") if season else ("0.2", "0.4")
                else:
                    lo, hi = "3", "4"
                assert Decimal(lo) <= step <= Decimal(hi), (serial, when, step)

        charges = (await s.execute(select(Charge))).scalars().all()
        this_month = now.astimezone(MSK).date().replace(day=1)
        periods = sorted({c.period for c in charges})
        assert len(periods) == 12
        assert all(p.day == 1 for p in periods)
        assert periods[-1] < this_month
        for c in charges:
            assert c.volume is not None
            assert c.tariff is not None
            assert c.amount == (c.volume * c.tariff).quantize(Decimal("0.01"), ROUND_HALF_UP)
            new = c.period >= date(2026, 10, 1)
            price = {
                ("heating", False): "2290.15",
                ("heating", True): "2588.37",
                ("hot_water", False): "231.40",
                ("hot_water", True): "261.48",
            }[(c.service.value, new)]
            assert c.tariff == Decimal(price)


async def test_payments_and_bonus(demo_data: DemoContext) -> None:
    now_local = demo_data.now.astimezone(MSK)
    async with demo_data.session_factory() as s:
        ids = dict((await s.execute(select(Account.number, Account.id))).all())
        payments = (
            (
                await s.execute(
                    select(Payment)
                    .where(Payment.account_id == ids["1002003001"])
                    .order_by(Payment.paid_at)
                )
            )
            .scalars()
            .all()
        )
        sums = select(BonusEntry.account_id, func.sum(BonusEntry.points)).group_by(
            BonusEntry.account_id
        )
        bonus = {a: int(p) for a, p in (await s.execute(sums)).all()}
        accruals = (
            await s.execute(
                select(func.count())
                .select_from(BonusEntry)
                .where(BonusEntry.account_id == ids["1002003001"])
            )
        ).scalar_one()
    last = payments[-1]
    assert last.amount == Decimal("2800.00")
    paid_local = last.paid_at.astimezone(MSK)
    two_months_ago = (now_local.year * 12 + now_local.month - 1) - 2
    assert (paid_local.year * 12 + paid_local.month - 1, paid_local.day) == (two_months_ago, 10)
    assert len(payments) >= 9  # roughly monthly before that
    assert bonus.get(ids["1002003001"]) == 350
    assert accruals > 1
    assert bonus.get(ids["1002003002"]) == 1200
    assert bonus.get(ids["1002003003"], 0) == 0


async def test_appeals_history_and_number_sequence(demo_data: DemoContext) -> None:
    now = demo_data.now
    year = now.astimezone(MSK).year
    async with demo_data.session_factory() as s:
        appeals = (await s.execute(select(Appeal).order_by(Appeal.number))).scalars().all()
        history = {
            a.number: [
                h.status
                for h in (
                    await s.execute(
                        select(AppealStatusChange)
                        .where(AppealStatusChange.appeal_id == a.id)
                        .order_by(AppealStatusChange.changed_at)
                    )
                ).scalars()
            ]
            for a in appeals
        }
        seq = await s.get(NumberSequence, f"A-{year}")
        account_id = (
            await s.execute(select(Account.id).where(Account.number == "1002003001"))
        ).scalar_one()
    first, second = appeals
    assert first.number == f"A-{year}-000001"
    assert second.number == f"A-{year}-000002"
    assert {first.account_id, second.account_id} == {account_id}
    assert first.category.value == "charges"
    assert first.description == "Прошу сделать перерасчёт за отопление за январь"
    assert first.status is AppealStatus.RESOLVED
    assert first.resolved_at is not None
    assert timedelta(days=50) < now - first.resolved_at < timedelta(days=70)
    assert history[first.number][0] is AppealStatus.REGISTERED
    assert history[first.number][-1] is AppealStatus.RESOLVED
    assert second.category.value == "heating_quality"
    assert second.description == "Слабо греют батареи в спальне"
    assert second.status is AppealStatus.IN_REVIEW
    assert second.resolved_at is None
    assert timedelta(days=3) <= now - second.created_at < timedelta(days=3, minutes=1)
    assert history[second.number] == [AppealStatus.REGISTERED, AppealStatus.IN_REVIEW]
    for a in appeals:
        assert a.review_due_at == a.created_at + timedelta(hours=48)
        assert a.decision_due_at.astimezone(MSK).time() == time(23, 59, 59)
        assert a.created_at < a.decision_due_at < a.created_at + timedelta(days=30)
    assert seq is not None
    assert seq.last_value == 2


async def test_reference_data(demo_data: DemoContext) -> None:
    now = demo_data.now
    async with demo_data.session_factory() as s:
        offices = (await s.execute(select(Office).order_by(Office.id))).scalars().all()
        tariffs = (await s.execute(select(Tariff).order_by(Tariff.valid_from))).scalars().all()
        outage = (await s.execute(select(Outage))).scalar_one()
        zones = {z.name: z for z in (await s.execute(select(NetworkZone))).scalars()}
    assert [(o.name, o.address, o.phone) for o in offices] == [
        ("Центральный офис обслуживания", "г. Курск, ул. Ленина, д. 69", "+7 (4712) 39-55-55"),
        ("Офис на Сумской", "г. Курск, ул. Сумская, д. 40", "+7 (4712) 39-55-56"),
    ]
    assert offices[0].hours == "пн–пт 8:00–20:00, сб 9:00–15:00"
    assert {(t.name, t.price, t.valid_from, t.valid_to) for t in tariffs} == {
        ("Тепловая энергия", Decimal("2290.15"), date(2025, 7, 1), date(2026, 9, 30)),
        ("Тепловая энергия", Decimal("2588.37"), date(2026, 10, 1), None),
        ("Горячая вода", Decimal("231.40"), date(2025, 7, 1), date(2026, 9, 30)),
        ("Горячая вода", Decimal("261.48"), date(2026, 10, 1), None),
    }
    assert outage.kind.value == "planned"
    assert outage.service.value == "hot_water"
    assert "Радищева" in outage.street
    assert outage.houses.split(",") == ["1", "3", "5", "7"]
    assert outage.reason == "плановые гидравлические испытания тепловых сетей"
    assert outage.starts_at <= now - timedelta(days=1) < outage.starts_at + timedelta(hours=1)
    assert outage.ends_at <= now + timedelta(days=9) < outage.ends_at + timedelta(hours=1)
    assert {n: (z.spare_load_gcal_h, z.streets.split(",")) for n, z in zones.items()} == {
        "ТЭЦ-1, центр": (
            Decimal("5.0"),
            ["ленина", "радищева", "карла маркса", "дзержинского"],
        ),
        "ТЭЦ Северо-Западная": (Decimal("0.8"), ["сумская", "энтузиастов", "студенческая"]),
        "Котельная Промышленная": (Decimal("0.0"), ["литовская", "союзная"]),
    }


def is_russian_working_day(day: date) -> bool:
    ru = holidays.country_holidays("RU", years=day.year)
    if day in getattr(ru, "weekend_workdays", set()):
        return True
    return day.weekday() < 5 and day not in ru


async def slot_days(session: AsyncSession) -> dict[date, list[time]]:
    days: dict[date, list[time]] = {}
    office_ids = (await session.execute(select(Office.id))).scalars().all()
    for slot in (
        (await session.execute(select(OfficeSlot).where(OfficeSlot.office_id == office_ids[0])))
        .scalars()
        .all()
    ):
        local = slot.starts_at.astimezone(MSK)
        assert slot.minutes == 30
        days.setdefault(local.date(), []).append(local.time())
    return days


async def test_slots_are_the_next_ten_working_days(demo_data: DemoContext) -> None:
    async with demo_data.session_factory() as s:
        days = await slot_days(s)
    today = demo_data.now.astimezone(MSK).date()
    expected: list[date] = []
    day = today
    while len(expected) < 10:
        day += timedelta(days=1)
        if is_russian_working_day(day):
            expected.append(day)
    assert sorted(days) == expected
    half_hours = [time(9 + m // 60, m % 60) for m in range(0, 8 * 60, 30)]
    assert all(sorted(times) == half_hours for times in days.values())


async def test_new_year_holidays_have_no_slots(
    db_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    vault: PersonalDataVault,
) -> None:
    now = datetime(2026, 12, 29, 12, 0, tzinfo=MSK).astimezone(UTC)
    async with session_factory() as s:
        assert await load_demo_data(s, vault, db_settings, now)
    async with session_factory() as s:
        days = sorted(await slot_days(s))
        seq = await s.get(NumberSequence, "A-2026")
        outage = (await s.execute(select(Outage))).scalar_one()
    assert days[0] == date(2026, 12, 30)
    assert not any(date(2026, 12, 31) <= d <= date(2027, 1, 8) for d in days)
    assert days[1] == date(2027, 1, 11)
    assert len(days) == 10
    assert seq is not None
    assert seq.last_value == 2
    assert outage.ends_at > now
