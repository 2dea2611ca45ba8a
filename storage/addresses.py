"""Platform addresses (a WhatsApp number, a Telegram chat id), kept encrypted.

A customer's chat and user id are the keyed hash of their address
(:meth:`PersonalDataVault.hash_address`); the address itself, needed only to
send, is stored encrypted under that hash in ``channel_addresses``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.crypto import PersonalDataVault
from storage.models import ChannelAddress


def _row(
    vault: PersonalDataVault, channel: str, address_hash: str, address: str
) -> dict[str, object]:
    """A ``channel_addresses`` row's values: the address encrypted under its hash."""
    return {
        "channel": channel,
        "address_hash": address_hash,
        "address_enc": vault.encrypt(address),
        "updated_at": datetime.now(UTC),
    }


async def remember_address(
    sessions: async_sessionmaker[AsyncSession],
    vault: PersonalDataVault,
    channel: str,
    address_hash: str,
    address: str,
) -> None:
    """Store the address under its hash, or update it if it changed."""
    async with sessions.begin() as session:
        row = await session.scalar(
            select(ChannelAddress).where(
                ChannelAddress.channel == channel, ChannelAddress.address_hash == address_hash
            )
        )
        if row is None:
            try:
                async with session.begin_nested():
                    session.add(ChannelAddress(**_row(vault, channel, address_hash, address)))
            except IntegrityError:
                pass  # stored by another process at the same moment
        elif vault.decrypt(row.address_enc) != address:
            row.address_enc = vault.encrypt(address)
            row.updated_at = datetime.now(UTC)


async def remember_canonical_address(
    sessions: async_sessionmaker[AsyncSession],
    vault: PersonalDataVault,
    channel: str,
    address_hash: str,
    address: str,
) -> None:
    """:func:`remember_address` for an address with one spelling (a Telegram
    id): a row under its hash already holds this very address, so there is
    nothing to compare or update, and it is one ``INSERT .. ON CONFLICT DO
    NOTHING`` in autocommit: one round trip, where the read, savepoint, insert
    and commit of :func:`remember_address` took six (7% of an app process's
    CPU under bench/load.py, whose every conversation is a new Telegram user)."""
    bind = sessions.kw["bind"]
    assert isinstance(bind, AsyncEngine)
    insert = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(ChannelAddress)
        .values(**_row(vault, channel, address_hash, address))
        .on_conflict_do_nothing(index_elements=["channel", "address_hash"])
    )
    async with bind.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        await conn.execute(statement)
