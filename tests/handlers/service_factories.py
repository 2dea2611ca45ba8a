"""Small row factories for the service handlers' tests (appeals, offices...)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from storage.crypto import PersonalDataVault
from storage.models import Account, ChannelIdentity, Customer

# A Friday, 10:15 Moscow time.
NOW = datetime(2026, 11, 27, 7, 15, tzinfo=UTC)


def vault_for(settings: Settings) -> PersonalDataVault:
    return PersonalDataVault(settings.secret_key.get_secret_value())


async def make_account(
    session: AsyncSession,
    number: str,
    *,
    street: str = "ул. Ленина",
    house: str = "10",
    flat: str | None = "5",
) -> Account:
    customer = Customer(full_name="Иванов Иван Петрович", snils_hash="0" * 64)
    session.add(customer)
    await session.flush()
    account = Account(number=number, customer_id=customer.id, street=street, house=house, flat=flat)
    session.add(account)
    await session.flush()
    return account


async def make_identity(session: AsyncSession, user_id: str, channel: str = "webchat") -> int:
    identity = ChannelIdentity(channel=channel, user_id=user_id)
    session.add(identity)
    await session.flush()
    return identity.id
