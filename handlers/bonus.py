"""EnergoBonus loyalty points: the balance and the latest ledger entries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import BonusEntry


@dataclass(frozen=True, slots=True)
class BonusEntryInfo:
    points: int  # positive: accrued, negative: spent
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BonusSummary:
    account_id: int
    balance: int
    last_entries: tuple[BonusEntryInfo, ...]


async def bonus_summary(session: AsyncSession, account_id: int, last: int = 3) -> BonusSummary:
    balance = await session.scalar(
        select(func.coalesce(func.sum(BonusEntry.points), 0)).where(
            BonusEntry.account_id == account_id
        )
    )
    rows = (
        await session.execute(
            select(BonusEntry)
            .where(BonusEntry.account_id == account_id)
            .order_by(BonusEntry.created_at.desc(), BonusEntry.id.desc())
            .limit(last)
        )
    ).scalars()
    return BonusSummary(
        account_id=account_id,
        balance=int(balance or 0),
        last_entries=tuple(
            BonusEntryInfo(points=e.points, reason=e.reason, created_at=e.created_at) for e in rows
        ),
    )
