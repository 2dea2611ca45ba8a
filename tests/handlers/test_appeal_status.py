"""Appeal status changes (the console's and the deadline jobs'), their
history rows, where a notice goes, and the claim that tells it once."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers.appeals import (
    InvalidTransition,
    NewAppeal,
    change_status,
    claim_notice,
    create_appeal,
    due_for_review,
    escalate_overdue,
    notice_target,
    overdue_decisions,
    pending_notices,
    take_into_review,
)
from storage.models import (
    AccountLink,
    Appeal,
    AppealCategory,
    AppealStatus,
    AppealStatusChange,
    Conversation,
    Operator,
    OperatorRole,
    Priority,
    Task,
    TaskKind,
)
from tests.handlers.service_factories import NOW, make_account, make_identity, vault_for


async def new_appeal(
    session: AsyncSession,
    settings: Settings,
    *,
    account_id: int | None = None,
    conversation_id: int | None = None,
    at: datetime = NOW,
) -> Appeal:
    info = await create_appeal(
        session,
        vault_for(settings),
        settings,
        NewAppeal(
            category=AppealCategory.HEATING_QUALITY,
            description="Холодные батареи в комнате",
            account_id=account_id,
            conversation_id=conversation_id,
        ),
        at,
    )
    appeal = await session.scalar(select(Appeal).where(Appeal.number == info.number))
    assert appeal is not None
    return appeal


async def history(session: AsyncSession, appeal_id: int) -> list[AppealStatusChange]:
    rows = await session.scalars(
        select(AppealStatusChange)
        .where(AppealStatusChange.appeal_id == appeal_id)
        .order_by(AppealStatusChange.id)
    )
    return list(rows)


async def test_a_status_change_is_recorded_pending_with_its_operator(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    operator = Operator(
        login="anna",
        display_name="Анна",
        role=OperatorRole.OPERATOR,
        password_hash="x",
        created_at=NOW,
    )
    db_session.add(operator)
    await db_session.flush()
    appeal = await new_appeal(db_session, db_settings)
    later = NOW + timedelta(hours=3)
    info = await change_status(
        db_session,
        appeal.id,
        AppealStatus.IN_REVIEW,
        "  Передано инженеру, тел. +7 910 123-45-67  ",
        later,
        operator_id=operator.id,
    )
    await db_session.commit()
    assert info.status is AppealStatus.IN_REVIEW
    rows = await history(db_session, appeal.id)
    assert [(r.status, r.notified_at is None) for r in rows] == [
        (AppealStatus.REGISTERED, False),  # told by the bot's own reply
        (AppealStatus.IN_REVIEW, True),
    ]
    assert rows[1].operator_id == operator.id
    assert rows[1].changed_at == later
    # The customer reads the comment: no phone in it, trimmed.
    assert rows[1].comment == "Передано инженеру, тел. [телефон скрыт]"
    assert appeal.resolved_at is None


async def test_resolving_sets_resolved_at_and_reopening_clears_it(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    appeal = await new_appeal(db_session, db_settings)
    resolved = NOW + timedelta(days=2)
    await change_status(db_session, appeal, AppealStatus.RESOLVED, "Перерасчёт выполнен", resolved)
    assert appeal.resolved_at == resolved
    await change_status(db_session, appeal, AppealStatus.IN_REVIEW, "Заявитель не согласен", NOW)
    assert appeal.resolved_at is None
    closed = NOW + timedelta(days=5)
    await change_status(db_session, appeal, AppealStatus.CLOSED, None, closed)
    await db_session.commit()
    assert appeal.resolved_at == closed
    assert [r.status for r in await history(db_session, appeal.id)] == [
        AppealStatus.REGISTERED,
        AppealStatus.RESOLVED,
        AppealStatus.IN_REVIEW,
        AppealStatus.CLOSED,
    ]


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ((), AppealStatus.REGISTERED),  # registration only by create_appeal
        ((AppealStatus.IN_REVIEW,), AppealStatus.IN_REVIEW),  # the same status again
        ((AppealStatus.IN_REVIEW,), AppealStatus.REGISTERED),
        ((AppealStatus.CLOSED,), AppealStatus.IN_REVIEW),  # closed is the end
        ((AppealStatus.RESOLVED,), AppealStatus.REJECTED),
    ],
)
async def test_a_move_the_rules_do_not_allow_is_refused_and_changes_nothing(
    db_session: AsyncSession,
    db_settings: Settings,
    path: tuple[AppealStatus, ...],
    refused: AppealStatus,
) -> None:
    appeal = await new_appeal(db_session, db_settings)
    for status in path:
        await change_status(db_session, appeal.id, status, None, NOW)
    before = appeal.status
    await db_session.commit()
    with pytest.raises(InvalidTransition) as caught:
        await change_status(db_session, appeal.id, refused, "нельзя", NOW)
    assert caught.value.current is before
    assert caught.value.requested is refused
    appeal_id = appeal.id
    await db_session.rollback()
    again = await db_session.get(Appeal, appeal_id, populate_existing=True)
    assert again is not None
    assert again.status is before
    assert len(await history(db_session, appeal_id)) == 1 + len(path)


async def test_a_notice_goes_to_the_appeals_own_chat_else_to_the_linked_customer(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    account = await make_account(db_session, "1002003001")
    # The customer has two chats linked to the account; the Telegram one is
    # where they wrote last.
    chats = []
    for channel, user, last in (
        ("webchat", "w-1", NOW - timedelta(days=3)),
        ("telegram", "t-1", NOW - timedelta(hours=1)),
    ):
        identity_id = await make_identity(db_session, user, channel)
        db_session.add(AccountLink(identity_id=identity_id, account_id=account.id, linked_at=NOW))
        conv = Conversation(
            channel=channel,
            chat_id=f"chat-{user}",
            identity_id=identity_id,
            state={},
            last_customer_message_at=last,
        )
        db_session.add(conv)
        await db_session.flush()
        chats.append(conv)
    filed_in_chat = await new_appeal(
        db_session, db_settings, account_id=account.id, conversation_id=chats[0].id
    )
    by_console = await new_appeal(db_session, db_settings, account_id=account.id)
    nobody = await new_appeal(db_session, db_settings)
    for appeal in (filed_in_chat, by_console, nobody):
        await change_status(db_session, appeal, AppealStatus.IN_REVIEW, None, NOW)
    await db_session.commit()

    pending = await pending_notices(db_session, 10)
    assert [p.appeal_id for p in pending] == [filed_in_chat.id, by_console.id, nobody.id]
    targets = [await notice_target(db_session, p) for p in pending]
    assert [(t.channel, t.chat_id) if t else None for t in targets] == [
        ("webchat", "chat-w-1"),
        ("telegram", "chat-t-1"),
        None,
    ]
    # Paged by id.
    assert [p.appeal_id for p in await pending_notices(db_session, 10, pending[0].change_id)] == [
        by_console.id,
        nobody.id,
    ]


async def test_a_notice_is_claimed_once_across_sessions(
    session_factory: async_sessionmaker[AsyncSession], db_settings: Settings
) -> None:
    async with session_factory() as s:
        appeal = await new_appeal(s, db_settings)
        await change_status(s, appeal, AppealStatus.ANSWERED, "Ответ направлен", NOW)
        await s.commit()
        (pending,) = await pending_notices(s, 10)
    claims = []
    for _ in range(2):
        async with session_factory() as s:
            claims.append(await claim_notice(s, pending.change_id, NOW))
            await s.commit()
    assert claims == [True, False]
    async with session_factory() as s:
        assert await pending_notices(s, 10) == []


async def test_the_review_deadline_takes_an_untouched_appeal_into_review(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    untouched = await new_appeal(db_session, db_settings)
    handled = await new_appeal(db_session, db_settings)
    await change_status(db_session, handled, AppealStatus.ANSWERED, "Ответ дан", NOW)
    young = await new_appeal(db_session, db_settings, at=NOW + timedelta(hours=40))
    await db_session.commit()
    at = NOW + timedelta(hours=48)
    assert await due_for_review(db_session, at - timedelta(seconds=1), 10) == []
    assert await due_for_review(db_session, at, 10) == [untouched.id]
    moved = await take_into_review(db_session, untouched.id, "Обращение взято в работу.", at)
    assert moved is not None
    assert moved.status is AppealStatus.IN_REVIEW
    # A second run (another process) finds nothing to do.
    assert await take_into_review(db_session, untouched.id, "Обращение взято в работу.", at) is None
    await db_session.commit()
    assert await due_for_review(db_session, at, 10) == []
    assert [(n.appeal_id, n.status, n.comment) for n in await pending_notices(db_session, 10)] == [
        (handled.id, AppealStatus.ANSWERED, "Ответ дан"),
        (untouched.id, AppealStatus.IN_REVIEW, "Обращение взято в работу."),
    ]
    assert young.status is AppealStatus.REGISTERED


async def test_an_overdue_decision_raises_priority_and_opens_one_task(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    overdue = await new_appeal(db_session, db_settings)
    decided = await new_appeal(db_session, db_settings)
    await change_status(db_session, decided, AppealStatus.RESOLVED, "Решено", NOW)
    await db_session.commit()
    # Friday 27.11.2026 + 10 Russian working days: the end of Friday 11.12.
    assert overdue.decision_due_at.astimezone(db_settings.tz).date().isoformat() == "2026-12-11"
    before = overdue.decision_due_at - timedelta(minutes=1)
    assert await overdue_decisions(db_session, before, 10) == []
    at = overdue.decision_due_at + timedelta(minutes=1)
    assert await overdue_decisions(db_session, at, 10) == [overdue.id]
    task_id = await escalate_overdue(db_session, overdue.id, at, db_settings.tz)
    assert task_id is not None
    assert await escalate_overdue(db_session, overdue.id, at, db_settings.tz) is None
    await db_session.commit()
    assert await overdue_decisions(db_session, at, 10) == []
    task = await db_session.get(Task, task_id)
    assert task is not None
    assert task.kind is TaskKind.APPEAL_OVERDUE
    assert task.appeal_id == overdue.id
    assert (
        task.description == f"Просрочено решение по обращению {overdue.number} (срок — 11.12.2026)"
    )
    refreshed = await db_session.get(Appeal, overdue.id, populate_existing=True)
    assert refreshed is not None
    assert refreshed.priority is Priority.HIGH
    assert refreshed.status is AppealStatus.REGISTERED  # staff decide; no notice
    assert [p.appeal_id for p in await pending_notices(db_session, 10)] == [decided.id]
