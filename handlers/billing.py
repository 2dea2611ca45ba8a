"""Balance, charges by service and payments of an account.

The balance is derived: opening balance + all charges - all payments;
positive means a debt, negative an overpayment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import ScalarSelect, Select, and_, bindparam, extract, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import core_rows
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


def _totals() -> tuple[ScalarSelect[Decimal], ScalarSelect[Decimal]]:
    """What the account (``:account_id``) was charged and what it paid, in all."""
    charges, payments = Charge.__table__.alias(), Payment.__table__.alias()
    charged = (
        select(func.coalesce(func.sum(charges.c.amount), 0))
        .where(charges.c.account_id == bindparam("account_id"))
        .scalar_subquery()
    )
    paid = (
        select(func.coalesce(func.sum(payments.c.amount), 0))
        .where(payments.c.account_id == bindparam("account_id"))
        .scalar_subquery()
    )
    return charged, paid


def _summary(by_month: bool) -> Select[Any]:
    """The summary's one query, with ``:account_id``, ``:today``, ``:now``
    (and ``:month`` when ``by_month``)."""
    months = Charge.__table__.alias()
    latest = select(func.max(months.c.period)).where(
        months.c.account_id == bindparam("account_id"), months.c.period <= bindparam("today")
    )
    if by_month:
        latest = latest.where(extract("month", months.c.period) == bindparam("month"))
    period = latest.scalar_subquery()
    last_paid = (
        select(Payment.id)
        .where(Payment.account_id == bindparam("account_id"), Payment.paid_at <= bindparam("now"))
        .order_by(Payment.paid_at.desc(), Payment.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    charged, paid = _totals()
    return (
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
        .where(Account.id == bindparam("account_id"))
        .order_by(Charge.service)
    )


# Built once, with parameters: a turn neither builds the statements nor keys
# them for the compiled cache again (both cost more than the query itself).
_BALANCE: Final = select(*_totals())
_SUMMARY: Final = _summary(by_month=False)
_SUMMARY_OF_MONTH: Final = _summary(by_month=True)


def _balance(account: Account, charged: object, paid: object) -> Decimal:
    total = (account.opening_balance or ZERO) + Decimal(str(charged or 0)) - Decimal(str(paid or 0))
    return total.quantize(ZERO)


async def balance(session: AsyncSession, account: Account) -> Decimal:
    row = (await session.execute(_BALANCE, {"account_id": account.id})).one()
    return _balance(account, row[0], row[1])


async def account_summary(
    session: AsyncSession, account: Account, now: datetime, tz: ZoneInfo, month: int | None = None
) -> AccountSummary:
    """The balance, the charges of the latest month (or of ``month``, 1-12,
    its latest occurrence up to now) and the last payment: one query, a row
    per charge line of that month (one row with no charge when there is none)."""
    params: dict[str, Any] = {
        "account_id": account.id,
        "today": now.astimezone(tz).date(),
        "now": now,
    }
    if month is not None:
        params["month"] = month
    statement = _SUMMARY if month is None else _SUMMARY_OF_MONTH
    rows = await core_rows(session, statement, params)
    first = rows[0]
    lines = tuple(ChargeLine(r[3], r[4], r[5], r[6]) for r in rows if r[6] is not None)
    return AccountSummary(
        account_number=account.number,
        balance=_balance(account, first[0], first[1]),
        period=first[2],
        charges=lines,
        last_payment=PaymentInfo(first[7], first[8], first[9]) if first[7] is not None else None,
    )
