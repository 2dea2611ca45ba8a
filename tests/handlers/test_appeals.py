import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers.appeals import (
    AppealNotFound,
    InvalidAppeal,
    InvalidAppealNumber,
    NewAppeal,
    change_status,
    create_appeal,
    get_appeal,
    list_open_appeals,
    normalize_appeal_number,
    pending_status_notices,
)
from storage.models import (
    Appeal,
    AppealCategory,
    AppealStatus,
    AppealStatusChange,
    Conversation,
    Priority,
)
from tests.handlers.service_factories import NOW, make_account, make_identity, vault_for

PHONE = "+7 (910) 210-45-67"


async def test_registration_gives_number_deadlines_and_history(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    account = await make_account(db_session, "1002003001")
    vault = vault_for(db_settings)
    info = await create_appeal(
        db_session,
        vault,
        db_settings,
        NewAppeal(
            category=AppealCategory.CHARGES,
            description="  Неправильно начислили за отопление  ",
            account_id=account.id,
            channel="webchat",
            contact_phone=PHONE,
        ),
        NOW,
    )
    await db_session.commit()

    assert info.number == "A-2026-000001"
    assert info.status is AppealStatus.REGISTERED
    assert info.priority is Priority.NORMAL
    assert info.description == "Неправильно начислили за отопление"
    assert info.review_due_at == NOW + timedelta(hours=48)
    # Friday 27.11 + 10 working days -> Friday 11.12, end of day Moscow.
    assert info.decision_due_at == datetime(2026, 12, 11, 20, 59, 59, tzinfo=UTC)

    appeal = (await db_session.execute(select(Appeal))).scalar_one()
    assert appeal.contact_phone_masked == "+7 *** ***-**-67"
    assert appeal.contact_phone_enc is not None
    assert "210" not in appeal.contact_phone_enc
    assert vault.decrypt(appeal.contact_phone_enc) == PHONE
    history = (await db_session.execute(select(AppealStatusChange))).scalars().all()
    assert [(h.appeal_id, h.status) for h in history] == [(appeal.id, AppealStatus.REGISTERED)]


async def test_numbers_continue_the_year_and_restart_next_year(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    vault = vault_for(db_settings)
    new = NewAppeal(category=AppealCategory.OTHER, description="Вопрос")
    first = await create_appeal(db_session, vault, db_settings, new, NOW)
    second = await create_appeal(db_session, vault, db_settings, new, NOW)
    # 31.12 22:00 UTC is already 1 January in Moscow.
    new_year = datetime(2026, 12, 31, 22, 0, tzinfo=UTC)
    third = await create_appeal(db_session, vault, db_settings, new, new_year)
    assert [first.number, second.number, third.number] == [
        "A-2026-000001",
        "A-2026-000002",
        "A-2027-000001",
    ]


async def test_concurrent_registrations_get_distinct_numbers(
    session_factory: async_sessionmaker[AsyncSession], db_settings: Settings
) -> None:
    vault = vault_for(db_settings)

    async def register(i: int) -> str:
        async with session_factory() as session:
            info = await create_appeal(
                session,
                vault,
                db_settings,
                NewAppeal(category=AppealCategory.OTHER, description=f"Обращение {i}"),
                NOW,
            )
            await asyncio.sleep(0.05)  # hold the counter while the other one tries
            await session.commit()
            return info.number

    numbers = await asyncio.gather(*(register(i) for i in range(4)))
    assert sorted(numbers) == [f"A-2026-00000{i}" for i in range(1, 5)]


async def test_empty_description_is_refused(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    with pytest.raises(InvalidAppeal):
        await create_appeal(
            db_session,
            vault_for(db_settings),
            db_settings,
            NewAppeal(category=AppealCategory.OTHER, description="   "),
            NOW,
        )


@pytest.mark.parametrize(
    ("typed", "normalized"),
    [
        ("A-2026-000123", "A-2026-000123"),
        ("а-2026-123", "A-2026-000123"),
        (" A 2026 000007 ", "A-2026-000007"),
    ],
)
def test_number_normalization(typed: str, normalized: str) -> None:
    assert normalize_appeal_number(typed) == normalized


@pytest.mark.parametrize("bad", ["", "123", "A-26-1", "B-2026-000001", "A-2026-1234567", "'; drop"])
def test_bad_number_format_is_a_typed_error(bad: str) -> None:
    with pytest.raises(InvalidAppealNumber):
        normalize_appeal_number(bad)


async def test_only_own_appeals_are_found(db_session: AsyncSession, db_settings: Settings) -> None:
    vault = vault_for(db_settings)
    mine = await make_account(db_session, "1002003001")
    other = await make_account(db_session, "1002003002")
    my_appeal = await create_appeal(
        db_session,
        vault,
        db_settings,
        NewAppeal(category=AppealCategory.METER, description="Счётчик", account_id=mine.id),
        NOW,
    )
    their_appeal = await create_appeal(
        db_session,
        vault,
        db_settings,
        NewAppeal(category=AppealCategory.METER, description="Чужое", account_id=other.id),
        NOW,
    )
    found = await get_appeal(db_session, my_appeal.number.lower(), [mine.id])
    assert found == my_appeal
    with pytest.raises(AppealNotFound):
        await get_appeal(db_session, their_appeal.number, [mine.id])
    with pytest.raises(AppealNotFound):
        await get_appeal(db_session, "A-2026-000999", [mine.id])
    with pytest.raises(AppealNotFound):
        await get_appeal(db_session, my_appeal.number, [])
    with pytest.raises(InvalidAppealNumber):
        await get_appeal(db_session, "обращение номер пять", [mine.id])


async def test_an_appeal_filed_before_linking_is_found_by_its_conversation(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    identity_id = await make_identity(db_session, "u1")
    conversations = [
        Conversation(channel="webchat", chat_id=chat, identity_id=identity_id)
        for chat in ("c1", "c2")
    ]
    db_session.add_all(conversations)
    await db_session.flush()
    info = await create_appeal(
        db_session,
        vault_for(db_settings),
        db_settings,
        NewAppeal(
            category=AppealCategory.OTHER,
            description="Без счёта",
            conversation_id=conversations[0].id,
        ),
        NOW,
    )
    assert await get_appeal(db_session, info.number, [], conversations[0].id) == info
    assert await list_open_appeals(db_session, [], conversations[0].id) == [info]
    assert await list_open_appeals(db_session, []) == []
    with pytest.raises(AppealNotFound):
        await get_appeal(db_session, info.number, [], conversation_id=conversations[1].id)


async def test_open_list_and_status_changes(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    vault = vault_for(db_settings)
    account = await make_account(db_session, "1002003001")
    created = []
    for i, category in enumerate([AppealCategory.CHARGES, AppealCategory.HEATING_QUALITY]):
        created.append(
            await create_appeal(
                db_session,
                vault,
                db_settings,
                NewAppeal(category=category, description=f"Текст {i}", account_id=account.id),
                NOW + timedelta(minutes=i),
            )
        )
    first_id = (
        await db_session.execute(select(Appeal.id).where(Appeal.number == created[0].number))
    ).scalar_one()

    later = NOW + timedelta(days=2)
    resolved = await change_status(
        db_session, first_id, AppealStatus.RESOLVED, "Перерасчёт выполнен", later
    )
    await db_session.commit()
    assert resolved.status is AppealStatus.RESOLVED

    still_open = await list_open_appeals(db_session, [account.id])
    assert [a.number for a in still_open] == [created[1].number]

    appeal = await db_session.get(Appeal, first_id)
    assert appeal is not None
    assert appeal.resolved_at == later
    pending = await pending_status_notices(db_session)
    assert [(p.appeal_id, p.status, p.comment) for p in pending] == [
        (first_id, AppealStatus.RESOLVED, "Перерасчёт выполнен")
    ]

    with pytest.raises(AppealNotFound):
        await change_status(db_session, 999_999, AppealStatus.CLOSED, None, later)
