"""Platform addresses (a WhatsApp number, a Telegram chat id), kept encrypted.

A customer's chat and user id are the keyed hash of their address
(:meth:`PersonalDataVault.hash_address`); the address itself, needed only to
send, is stored encrypted under that hash in ``channel_addresses``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.crypto import PersonalDataVault
from storage.models import ChannelAddress


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
                    session.add(
                        ChannelAddress(
                            channel=channel,
                            address_hash=address_hash,
                            address_enc=vault.encrypt(address),
                            updated_at=datetime.now(UTC),
                        )
                    )
            except IntegrityError:
                pass  # stored by another process at the same moment
        elif vault.decrypt(row.address_enc) != address:
            row.address_enc = vault.encrypt(address)
            row.updated_at = datetime.now(UTC)
