"""Balance, charges by service and payments of an account.

The balance is derived: opening balance + all charges - all payments;
positive means a debt, negative an overpayment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Account, Charge, Payment, Service

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class ChargeLine:
    service: Service
    volume: Decimal | None
    tariff: Decimal | None
    amount: Decimal


@dataclass(frozen=True)
class PaymentInfo:
    paid_at: datetime
    amount: Decimal
    method: str


@dataclass(frozen=True)
class AccountSummary:
    account_number: str
    balance: Decimal  # positive: debt; negative: overpayment
    period: date | None  # the month the charges are for (first day)
    charges: tuple[ChargeLine, ...]
    last_payment: PaymentInfo | None

    @property
    def debt(self) -> Decimal:
        return max(self.balance, ZERO)

    @property
    def charges_total(self) -> Decimal:
        return sum((c.amount for c in self.charges), ZERO)


async def balance(session: AsyncSession, account: Account) -> Decimal:
    charged = await session.scalar(
        select(func.coalesce(func.sum(Charge.amount), 0)).where(Charge.account_id == account.id)
    )
    paid = await session.scalar(
        select(func.coalesce(func.sum(Payment.amount), 0)).where(Payment.account_id == account.id)
    )
    total = (account.opening_balance or ZERO) + Decimal(charged or 0) - Decimal(paid or 0)
    return total.quantize(ZERO)


async def _period_for(
    session: AsyncSession, account_id: int, now: datetime, tz: ZoneInfo, month: int | None
) -> date | None:
    today = now.astimezone(tz).date()
    periods = (
        await session.execute(
            select(Charge.period)
            .where(Charge.account_id == account_id, Charge.period <= today)
            .distinct()
            .order_by(Charge.period.desc())
        )
    ).scalars()
    for period in periods:
        if month is None or period.month == month:
            return period
    return None


async def account_summary(
    session: AsyncSession, account: Account, now: datetime, tz: ZoneInfo, month: int | None = None
) -> AccountSummary:
    """The balance, the charges of the latest month (or of ``month``, 1-12,
    its latest occurrence up to now) and the last payment."""
    period = await _period_for(session, account.id, now, tz, month)
    lines: tuple[ChargeLine, ...] = ()
    if period is not None:
        rows = (
            await session.execute(
                select(Charge)
                .where(Charge.account_id == account.id, Charge.period == period)
                .order_by(Charge.service)
            )
        ).scalars()
        lines = tuple(ChargeLine(c.service, c.volume, c.tariff, c.amount) for c in rows)
    last = (
        await session.execute(
            select(Payment)
            .where(Payment.account_id == account.id, Payment.paid_at <= now)
            .order_by(Payment.paid_at.desc(), Payment.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return AccountSummary(
        account_number=account.number,
        balance=await balance(session, account),
        period=period,
        charges=lines,
        last_payment=PaymentInfo(last.paid_at, last.amount, last.method) if last else None,
    )
