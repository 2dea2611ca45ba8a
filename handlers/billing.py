"""Balance, charges by service and payments of an account.

The balance is derived: opening balance + all charges - all payments;
positive means a debt, negative an overpayment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import ScalarSelect, and_, extract, func, select
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


def _totals(account_id: int) -> tuple[ScalarSelect[Decimal], ScalarSelect[Decimal]]:
    """What the account was charged and what it paid, in all."""
    charges, payments = Charge.__table__.alias(), Payment.__table__.alias()
    charged = (
        select(func.coalesce(func.sum(charges.c.amount), 0))
        .where(charges.c.account_id == account_id)
        .scalar_subquery()
    )
    paid = (
        select(func.coalesce(func.sum(payments.c.amount), 0))
        .where(payments.c.account_id == account_id)
        .scalar_subquery()
    )
    return charged, paid


def _balance(account: Account, charged: object, paid: object) -> Decimal:
    total = (account.opening_balance or ZERO) + Decimal(str(charged or 0)) - Decimal(str(paid or 0))
    return total.quantize(ZERO)


async def balance(session: AsyncSession, account: Account) -> Decimal:
    charged, paid = _totals(account.id)
    row = (await session.execute(select(charged, paid))).one()
    return _balance(account, row[0], row[1])


async def account_summary(
    session: AsyncSession, account: Account, now: datetime, tz: ZoneInfo, month: int | None = None
) -> AccountSummary:
    """The balance, the charges of the latest month (or of ``month``, 1-12,
    its latest occurrence up to now) and the last payment: one query, a row
    per charge line of that month (one row with no charge when there is none)."""
    today = now.astimezone(tz).date()
    months = Charge.__table__.alias()
    latest = select(func.max(months.c.period)).where(
        months.c.account_id == account.id, months.c.period <= today
    )
    if month is not None:
        latest = latest.where(extract("month", months.c.period) == month)
    period = latest.scalar_subquery()
    last_paid = (
        select(Payment.id)
        .where(Payment.account_id == account.id, Payment.paid_at <= now)
        .order_by(Payment.paid_at.desc(), Payment.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    charged, paid = _totals(account.id)
    rows = (
        await session.execute(
            select(
                charged,
                paid,
                period,
                Charge.service,
                Charge.volume,
                Charge.tariff,
                Charge.amount,
                Payment.paid_at,
                Payment.amount,
                Payment.method,
            )
            .select_from(Account)
            .outerjoin(Charge, and_(Charge.account_id == Account.id, Charge.period == period))
            .outerjoin(Payment, Payment.id == last_paid)
            .where(Account.id == account.id)
            .order_by(Charge.service)
        )
    ).all()
    first = rows[0]
    lines = tuple(ChargeLine(r[3], r[4], r[5], r[6]) for r in rows if r[6] is not None)
    return AccountSummary(
        account_number=account.number,
        balance=_balance(account, first[0], first[1]),
        period=first[2],
        charges=lines,
        last_payment=PaymentInfo(first[7], first[8], first[9]) if first[7] is not None else None,
    )
