from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.bonus import bonus_summary
from storage.models import BonusEntry
from tests.handlers.service_factories import NOW, make_account


async def test_balance_is_the_sum_and_entries_are_newest_first(db_session: AsyncSession) -> None:
    account = await make_account(db_session, "1002003001")
    other = await make_account(db_session, "1002003002")
    db_session.add_all(
        [
            BonusEntry(
                account_id=account.id,
                points=200,
                reason="Оплата без долга",
                created_at=NOW - timedelta(days=60),
            ),
            BonusEntry(
                account_id=account.id,
                points=250,
                reason="Показания вовремя",
                created_at=NOW - timedelta(days=30),
            ),
            BonusEntry(
                account_id=account.id,
                points=-100,
                reason="Списание",
                created_at=NOW - timedelta(days=1),
            ),
            BonusEntry(account_id=other.id, points=1200, reason="Чужие", created_at=NOW),
        ]
    )
    await db_session.flush()
    summary = await bonus_summary(db_session, account.id, last=2)
    assert summary.balance == 350
    assert [(e.points, e.reason) for e in summary.last_entries] == [
        (-100, "Списание"),
        (250, "Показания вовремя"),
    ]


async def test_no_points(db_session: AsyncSession) -> None:
    account = await make_account(db_session, "1002003003")
    summary = await bonus_summary(db_session, account.id)
    assert (summary.balance, summary.last_entries) == (0, ())
