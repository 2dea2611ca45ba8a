from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.outages import (
    EmergencyReport,
    ParsedAddress,
    find_outages,
    normalize_street,
    parse_address,
    register_emergency,
    street_key,
)
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
from tests.handlers.service_factories import NOW, make_account, vault_for


@pytest.mark.parametrize(
    ("text", "street", "house"),
    [
        ("г. Курск, ул. Ленина, д. 10, кв. 5", "ленина", "10"),
        ("Радищева 3", "радищева", "3"),
        ("ул радищева д3", "радищева", "3"),
        ("улица Карла Маркса, 25", "карла маркса", "25"),
        ("Карла-Маркса ул., дом 25А", "карла маркса", "25а"),
        ("Курск, пр-т Дружбы 7/2", "дружбы", "7/2"),
        ("ул. Ёлочная, 5 кв 3", "елочная", "5"),
        ("50 лет Октября 12", "50 лет октября", "12"),
        ("Ленина", "ленина", None),
        ("проезде Сергеева, 5", "сергеева", "5"),
        ("на улице Дзержинского, 70", "дзержинского", "70"),
        ("проспекте Дружбы 7 корпус 2", "дружбы", "7"),
        ("переулке Радищева 3", "радищева", "3"),
        ("ЖК Европа, дом 12", "жк европа", "12"),
        ("в жилом комплексе «Европа» дом 12", "жк европа", "12"),
    ],
)
def test_parse_address(text: str, street: str, house: str | None) -> None:
    assert parse_address(text) == ParsedAddress(street=street, house=house)


@pytest.mark.parametrize("text", ["", "10", "  ,  "])
def test_no_street_is_none(text: str) -> None:
    assert parse_address(text) is None


def test_street_normalisation() -> None:
    assert normalize_street("УЛ. РАДИЩЕВА") == normalize_street("радищева улица") == "радищева"
    assert normalize_street("Семёновская") == "семеновская"
    assert normalize_street("по адресу ул. Ленина") == "ленина"


def test_street_key_survives_case_endings() -> None:
    assert street_key("Сумская") == street_key("на Сумской") == street_key("сумскую")
    assert street_key("Садовый пер.") == street_key("на Садовом")
    assert street_key("Радищева") == "радищева"
    assert street_key("Сумская") != street_key("Союзная")


async def _outages(session: AsyncSession) -> None:
    session.add_all(
        [
            Outage(
                kind=OutageKind.PLANNED,
                service=Service.HOT_WATER,
                street="Радищева",
                houses="1,3, 5,7",
                reason="плановые гидравлические испытания тепловых сетей",
                starts_at=NOW - timedelta(days=1),
                ends_at=NOW + timedelta(days=9),
            ),
            Outage(
                kind=OutageKind.EMERGENCY,
                service=Service.HEATING,
                street="ул. Сумская",
                houses="",
                reason="порыв на магистрали",
                starts_at=NOW + timedelta(hours=3),
                ends_at=NOW + timedelta(hours=12),
            ),
            Outage(
                kind=OutageKind.PLANNED,
                service=Service.HOT_WATER,
                street="Ленина",
                houses="10",
                reason="уже закончилось",
                starts_at=NOW - timedelta(days=20),
                ends_at=NOW - timedelta(days=10),
            ),
        ]
    )
    await session.flush()


async def test_active_outage_covers_listed_houses_only(db_session: AsyncSession) -> None:
    await _outages(db_session)
    found = await find_outages(db_session, ParsedAddress("радищева", "3"), NOW)
    assert [(o.service, o.active, o.ends_at) for o in found] == [
        (Service.HOT_WATER, True, NOW + timedelta(days=9))
    ]
    assert found[0].houses == ("1", "3", "5", "7")
    assert await find_outages(db_session, ParsedAddress("радищева", "4"), NOW) == []
    # Without a house the bot cannot tell: only whole-street outages match.
    assert await find_outages(db_session, ParsedAddress("радищева", None), NOW) == []
    # Filtered by the service the customer complains about.
    assert (
        await find_outages(db_session, ParsedAddress("радищева", "3"), NOW, Service.HEATING) == []
    )


async def test_upcoming_whole_street_outage_and_finished_ones(db_session: AsyncSession) -> None:
    await _outages(db_session)
    upcoming = await find_outages(db_session, parse_address("Сумская 40") or _no(), NOW)
    assert [(o.kind, o.active, o.reason) for o in upcoming] == [
        (OutageKind.EMERGENCY, False, "порыв на магистрали")
    ]
    assert await find_outages(db_session, ParsedAddress("ленина", "10"), NOW) == []
    on_sumskaya = parse_address("на Сумской, 40")
    assert on_sumskaya is not None
    assert len(await find_outages(db_session, on_sumskaya, NOW)) == 1


def _no() -> ParsedAddress:
    raise AssertionError("address not parsed")


async def test_emergency_is_high_priority_with_a_dispatch_task(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    account = await make_account(db_session, "1002003001")
    # 03:00 Moscow on a Sunday: accepted all the same.
    night = NOW + timedelta(days=1, hours=17)
    result = await register_emergency(
        db_session,
        vault_for(db_settings),
        db_settings,
        EmergencyReport(
            description="Нет отопления, батареи холодные",
            address="г. Курск, ул. Ленина, д. 10, кв. 5",
            service=Service.HEATING,
            account_id=account.id,
            contact_phone="89102104567",
        ),
        night,
    )
    await db_session.commit()
    assert result.appeal.category is AppealCategory.EMERGENCY
    assert result.appeal.priority is Priority.HIGH
    appeal = (await db_session.execute(select(Appeal))).scalar_one()
    assert appeal.number == result.appeal.number
    assert appeal.address == "г. Курск, ул. Ленина, д. 10, кв. 5"
    assert appeal.contact_phone_masked == "+7 *** ***-**-67"
    task = (await db_session.execute(select(Task))).scalar_one()
    assert (task.id, task.kind, task.appeal_id, task.account_id) == (
        result.task_id,
        TaskKind.EMERGENCY_DISPATCH,
        appeal.id,
        account.id,
    )
    assert result.appeal.number in task.description
