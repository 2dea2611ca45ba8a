"""Certificates a customer orders: a no-debt certificate (справка об
отсутствии задолженности), registered as an appeal of its own category so
that the back office takes it from the queue it already works, with the same
number, deadlines and status notices."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.appeals import AppealInfo, NewAppeal, create_appeal
from handlers.billing import balance
from handlers.errors import HandlerError
from storage.crypto import PersonalDataVault
from storage.models import Account, AppealCategory


class CertificateError(HandlerError):
    """A certificate request that cannot be registered."""


class HasDebt(CertificateError):
    """The account owes money: no certificate of no debt."""

    def __init__(self, debt: Decimal) -> None:
        super().__init__(f"the account owes {debt}")
        self.debt = debt


class MissingEmail(CertificateError):
    """Delivery by e-mail without an address."""


class Delivery(enum.StrEnum):
    EMAIL = "email"
    OFFICE = "office"


@dataclass(frozen=True)
class CertificateRequest:
    account: Account
    # For the back office, in Russian: the period and how to deliver it.
    description: str
    delivery: Delivery
    email: str | None = None  # in the clear here; stored encrypted
    conversation_id: int | None = None
    channel: str | None = None


async def debt(session: AsyncSession, account: Account) -> Decimal:
    """What the account owes now (zero when settled or overpaid)."""
    return max(await balance(session, account), Decimal(0))


async def request_debt_certificate(
    session: AsyncSession,
    vault: PersonalDataVault,
    settings: Settings,
    request: CertificateRequest,
    now: datetime,
) -> AppealInfo:
    """Register the request; the answer (the certificate) is due by the
    appeal's decision date. Raises :class:`HasDebt` if the account owes money
    by now, :class:`MissingEmail` for e-mail delivery without an address."""
    owed = await debt(session, request.account)
    if owed > 0:
        raise HasDebt(owed)
    if request.delivery is Delivery.EMAIL and not request.email:
        raise MissingEmail("delivery by e-mail needs an address")
    return await create_appeal(
        session,
        vault,
        settings,
        NewAppeal(
            category=AppealCategory.DEBT_CERTIFICATE,
            description=request.description,
            account_id=request.account.id,
            conversation_id=request.conversation_id,
            channel=request.channel,
            address=request.account.address,
            contact_email=request.email if request.delivery is Delivery.EMAIL else None,
        ),
        now,
    )
