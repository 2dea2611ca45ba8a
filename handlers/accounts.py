"""Linking a chat identity to personal accounts (account number + SNILS).

The SNILS arrives here as its keyed hash only (PersonalDataVault.hash_snils);
callers check its checksum first (handlers.snils) and never keep the digits.
"""

from __future__ import annotations

import enum
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from storage.models import Account, AccountLink, ChannelIdentity, Customer

# An account number: 8 to 12 digits (shared/intents.md).
ACCOUNT_NUMBER: Final = re.compile(r"(?<!\d)\d{8,12}(?!\d)")


class LinkStatus(enum.StrEnum):
    LINKED = "linked"  # newly linked and made current
    ALREADY_LINKED = "already_linked"  # was linked; made current
    NO_MATCH = "no_match"  # no such account, or the SNILS does not match
    LOCKED = "locked"  # too many failed attempts


@dataclass(frozen=True)
class LinkResult:
    status: LinkStatus
    account_number: str | None = None
    attempts_left: int = 0
    locked_until: datetime | None = None


def locked_until(identity: ChannelIdentity, now: datetime) -> datetime | None:
    """The end of the identity's lockout, if it is locked out now."""
    until = identity.link_locked_until
    if until is not None and until > now:
        return until
    return None


async def linked_accounts(session: AsyncSession, identity_id: int) -> list[Account]:
    rows = await session.execute(
        select(Account)
        .join(AccountLink, AccountLink.account_id == Account.id)
        .where(AccountLink.identity_id == identity_id)
        .order_by(AccountLink.linked_at, AccountLink.id)
    )
    return list(rows.scalars())


async def visible_account_ids(session: AsyncSession, identity: ChannelIdentity) -> list[int]:
    """The accounts whose appeals and data this chat may see: the linked ones
    and the current one."""
    ids = {a.id for a in await linked_accounts(session, identity.id)}
    if identity.current_account_id is not None:
        ids.add(identity.current_account_id)
    return sorted(ids)


async def switch_account(
    session: AsyncSession, identity: ChannelIdentity, account_number: str
) -> Account | None:
    """Make an already linked account current; None if it is not linked."""
    for account in await linked_accounts(session, identity.id):
        if account.number == account_number:
            identity.current_account_id = account.id
            await session.flush()
            return account
    return None


async def link_account(
    session: AsyncSession,
    settings: Settings,
    identity: ChannelIdentity,
    account_number: str,
    snils_hash: str,
    now: datetime,
) -> LinkResult:
    """Check the pair and link the account to the identity (and make it current).

    A failed check counts an attempt; ``settings.link_max_attempts`` failures
    lock the identity out for ``settings.link_lockout_minutes``.
    """
    until = locked_until(identity, now)
    if until is not None:
        return LinkResult(LinkStatus.LOCKED, locked_until=until)
    row = (
        await session.execute(
            select(Account, Customer.snils_hash)
            .join(Customer, Customer.id == Account.customer_id)
            .where(Account.number == account_number)
        )
    ).first()
    if row is None or not hmac.compare_digest(row[1], snils_hash):
        identity.failed_link_attempts = (identity.failed_link_attempts or 0) + 1
        left = settings.link_max_attempts - identity.failed_link_attempts
        if left <= 0:
            identity.failed_link_attempts = 0
            identity.link_locked_until = now + timedelta(minutes=settings.link_lockout_minutes)
            await session.flush()
            return LinkResult(LinkStatus.LOCKED, locked_until=identity.link_locked_until)
        await session.flush()
        return LinkResult(LinkStatus.NO_MATCH, attempts_left=left)
    account: Account = row[0]
    identity.failed_link_attempts = 0
    identity.link_locked_until = None
    identity.current_account_id = account.id
    existing = await session.scalar(
        select(AccountLink).where(
            AccountLink.identity_id == identity.id, AccountLink.account_id == account.id
        )
    )
    status = LinkStatus.ALREADY_LINKED
    if existing is None:
        session.add(AccountLink(identity_id=identity.id, account_id=account.id, linked_at=now))
        status = LinkStatus.LINKED
    await session.flush()
    return LinkResult(status, account_number=account.number)
