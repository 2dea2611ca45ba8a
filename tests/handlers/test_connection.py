from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers.connection import (
    BuildingKind,
    InvalidAddress,
    InvalidLoad,
    LoadProblem,
    NewConnectionApplication,
    Verdict,
    check_feasibility,
    create_application,
    parse_load,
)
from storage.models import ConnectionApplication, NetworkZone
from tests.handlers.service_factories import NOW, vault_for


async def _zones(session: AsyncSession) -> None:
    session.add_all(
        [
            NetworkZone(
                name="ТЭЦ-1, центр",
                source="ТЭЦ-1",
                streets="ленина, радищева, карла маркса, дзержинского",
                spare_load_gcal_h=Decimal("5.0"),
            ),
            NetworkZone(
                name="ТЭЦ Северо-Западная",
                source="ТЭЦ СЗР",
                streets="сумская,энтузиастов,студенческая",
                spare_load_gcal_h=Decimal("0.8"),
            ),
            NetworkZone(
                name="Котельная Промышленная",
                source="котельная",
                streets="литовская, союзная",
                spare_load_gcal_h=Decimal("0"),
            ),
        ]
    )
    await session.flush()


@pytest.mark.parametrize(
    ("text", "value"),
    [("0,15", "0.15"), ("0.15 Гкал/ч", "0.15"), ("2", "2"), ("1 гкал в час", "1")],
)
def test_parse_load(text: str, value: str) -> None:
    assert parse_load(text) == Decimal(value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("много", LoadProblem.NOT_A_NUMBER),
        ("1e5", LoadProblem.NOT_A_NUMBER),
        ("0", LoadProblem.NOT_POSITIVE),
        ("-1", LoadProblem.NOT_POSITIVE),
        ("0,00001", LoadProblem.NOT_POSITIVE),
        ("51", LoadProblem.TOO_LARGE),
    ],
)
def test_bad_loads(text: str, problem: LoadProblem) -> None:
    with pytest.raises(InvalidLoad) as caught:
        parse_load(text)
    assert caught.value.reason is problem


@pytest.mark.parametrize(
    ("address", "load", "verdict", "zone"),
    [
        ("ул. Карла Маркса, д. 70", "0.5", Verdict.FEASIBLE, "ТЭЦ-1, центр"),
        ("Сумская 12", "0.8", Verdict.FEASIBLE, "ТЭЦ Северо-Западная"),
        # Inflected as customers write it: "дом на Сумской", "на Студенческой".
        ("на Сумской 12", "0.5", Verdict.FEASIBLE, "ТЭЦ Северо-Западная"),
        ("ул. Студенческой, 3", "0.5", Verdict.FEASIBLE, "ТЭЦ Северо-Западная"),
        ("Литовской 1", "0.01", Verdict.NOT_ENOUGH_CAPACITY, "Котельная Промышленная"),
        ("Сумская 12", "1.2", Verdict.NOT_ENOUGH_CAPACITY, "ТЭЦ Северо-Западная"),
        ("Союзная 3", "0.01", Verdict.NOT_ENOUGH_CAPACITY, "Котельная Промышленная"),
        ("ул. Неизвестная, 1", "0.1", Verdict.NO_NETWORK, None),
    ],
)
async def test_feasibility(
    db_session: AsyncSession, address: str, load: str, verdict: Verdict, zone: str | None
) -> None:
    await _zones(db_session)
    result = await check_feasibility(db_session, address, Decimal(load))
    assert (result.verdict, result.zone_name) == (verdict, zone)


async def test_address_without_a_street_is_refused(db_session: AsyncSession) -> None:
    with pytest.raises(InvalidAddress):
        await check_feasibility(db_session, "12", Decimal(1))


async def test_application_gets_a_number_and_keeps_the_contact_encrypted(
    session_factory: async_sessionmaker[AsyncSession], db_settings: Settings
) -> None:
    vault = vault_for(db_settings)
    async with session_factory() as session:
        await _zones(session)
        first = await create_application(
            session,
            vault,
            db_settings,
            NewConnectionApplication(
                address="Курск, ул. Энтузиастов, 5",
                building_kind=BuildingKind.PRIVATE_HOUSE,
                load_gcal_h=Decimal("0.03"),
                contact_phone="+7 915 512-33-44",
            ),
            NOW,
        )
        second = await create_application(
            session,
            vault,
            db_settings,
            NewConnectionApplication(
                address="Литовская 1",
                building_kind=BuildingKind.NON_RESIDENTIAL,
                load_gcal_h=Decimal("2"),
            ),
            NOW,
        )
        await session.commit()
    assert (first.number, first.feasibility.feasible) == ("TP-2026-000001", True)
    assert (second.number, second.feasibility.verdict) == (
        "TP-2026-000002",
        Verdict.NOT_ENOUGH_CAPACITY,
    )
    async with session_factory() as session:
        rows = (
            (
                await session.execute(
                    select(ConnectionApplication).order_by(ConnectionApplication.id)
                )
            )
            .scalars()
            .all()
        )
    assert [(r.number, r.feasible, r.building_kind) for r in rows] == [
        ("TP-2026-000001", True, "private_house"),
        ("TP-2026-000002", False, "non_residential"),
    ]
    assert rows[0].zone_id is not None
    assert rows[0].contact_masked == "+7 *** ***-**-44"
    assert rows[0].contact_enc is not None
    assert "512" not in rows[0].contact_enc
    assert vault.decrypt(rows[0].contact_enc) == "+7 915 512-33-44"
    assert rows[1].contact_enc is None


async def test_application_with_a_bad_load_is_refused(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    with pytest.raises(InvalidLoad):
        await create_application(
            db_session,
            vault_for(db_settings),
            db_settings,
            NewConnectionApplication(
                address="Ленина 1",
                building_kind=BuildingKind.OTHER,
                load_gcal_h=Decimal(-1),
            ),
            NOW,
        )
