"""Appeals (обращения): registration with a number and two deadlines, status,
the customer's own appeals, status changes with their history.

Deadlines: preliminary review within ``settings.appeal_review_hours`` hours,
a decision within ``settings.appeal_decision_working_days`` Russian working
days (the end of that day, Moscow time). Handlers flush, never commit: the
caller commits the turn as one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.calendar import add_working_days
from handlers.errors import HandlerError
from handlers.numbering import next_number
from handlers.pii import redact_text
from storage.crypto import PersonalDataVault, mask_phone
from storage.models import (
    Appeal,
    AppealAttachment,
    AppealCategory,
    AppealStatus,
    AppealStatusChange,
    Priority,
)

APPEAL_PREFIX = "A"
MAX_DESCRIPTION_CHARS = 4000
# A-2026-000123; a customer may type a Cyrillic "А", lower case, spaces or
# drop the leading zeros: "а 2026 123".
_NUMBER = re.compile(r"^\s*[AaАа]\s*[-–—\s]?\s*(\d{4})\s*[-–—\s]\s*(\d{1,6})\s*$")


class AppealError(HandlerError):
    """Root of the appeal errors."""


class InvalidAppealNumber(AppealError):
    """The text is not an appeal number of the form ``A-2026-000123``."""


class AppealNotFound(AppealError):
    """No such appeal among the customer's own."""

    def __init__(self, number: str) -> None:
        super().__init__(number)
        self.number = number


class InvalidAppeal(AppealError):
    """The appeal cannot be registered as given (an empty description...)."""


@dataclass(frozen=True)
class NewAttachment:
    """A file sent with the appeal, by the channel's own reference."""

    kind: str  # "photo", "document"
    file_id: str
    mime_type: str | None = None


MAX_ATTACHMENTS = 10


@dataclass(frozen=True)
class NewAppeal:
    category: AppealCategory
    description: str
    account_id: int | None = None
    conversation_id: int | None = None
    channel: str | None = None
    address: str | None = None
    contact_phone: str | None = None
    priority: Priority = Priority.NORMAL
    attachments: tuple[NewAttachment, ...] = ()


@dataclass(frozen=True)
class AppealInfo:
    number: str
    category: AppealCategory
    status: AppealStatus
    priority: Priority
    description: str
    created_at: datetime
    review_due_at: datetime
    decision_due_at: datetime


def normalize_appeal_number(text: str) -> str:
    """``а-2026-123`` -> ``A-2026-000123``; raises :class:`InvalidAppealNumber`."""
    match = _NUMBER.match(text)
    if match is None:
        raise InvalidAppealNumber(text[:40])
    year, seq = match.groups()
    return f"{APPEAL_PREFIX}-{year}-{int(seq):06d}"


def appeal_info(appeal: Appeal) -> AppealInfo:
    return AppealInfo(
        number=appeal.number,
        category=appeal.category,
        status=appeal.status,
        priority=appeal.priority,
        description=appeal.description,
        created_at=appeal.created_at,
        review_due_at=appeal.review_due_at,
        decision_due_at=appeal.decision_due_at,
    )


async def create_appeal(
    session: AsyncSession,
    vault: PersonalDataVault,
    settings: Settings,
    new: NewAppeal,
    now: datetime,
) -> AppealInfo:
    """Register an appeal: a fresh number, deadlines, a REGISTERED history row.

    The contact phone is stored encrypted with a masked copy for display,
    never in the clear; a phone or SNILS inside the description is redacted.
    """
    description = redact_text(new.description.strip())
    if not description:
        raise InvalidAppeal("empty description")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidAppeal("description too long")
    if len(new.attachments) > MAX_ATTACHMENTS:
        raise InvalidAppeal("too many attachments")
    year = now.astimezone(settings.tz).year
    number = await next_number(session, APPEAL_PREFIX, year)
    appeal = Appeal(
        number=number,
        account_id=new.account_id,
        conversation_id=new.conversation_id,
        channel=new.channel,
        category=new.category,
        description=description,
        address=new.address,
        contact_phone_enc=vault.encrypt(new.contact_phone) if new.contact_phone else None,
        contact_phone_masked=mask_phone(new.contact_phone) if new.contact_phone else None,
        priority=new.priority,
        status=AppealStatus.REGISTERED,
        created_at=now,
        review_due_at=now + timedelta(hours=settings.appeal_review_hours),
        decision_due_at=add_working_days(now, settings.appeal_decision_working_days, settings.tz),
    )
    session.add(appeal)
    await session.flush()
    session.add(
        AppealStatusChange(
            appeal_id=appeal.id,
            status=AppealStatus.REGISTERED,
            comment=None,
            changed_at=now,
            # The registration notice is the bot's own reply in the chat.
            notified_at=now,
        )
    )
    session.add_all(
        AppealAttachment(
            appeal_id=appeal.id,
            channel=new.channel,
            kind=a.kind[:20],
            file_id=a.file_id,
            mime_type=a.mime_type[:100] if a.mime_type else None,
            created_at=now,
        )
        for a in new.attachments
    )
    await session.flush()
    return appeal_info(appeal)


def _owned_by(
    account_ids: Collection[int], conversation_id: int | None
) -> ColumnElement[bool] | None:
    clauses: list[ColumnElement[bool]] = []
    if account_ids:
        clauses.append(Appeal.account_id.in_(list(account_ids)))
    if conversation_id is not None:
        clauses.append(Appeal.conversation_id == conversation_id)
    return or_(*clauses) if clauses else None


async def get_appeal(
    session: AsyncSession,
    number: str,
    account_ids: Collection[int],
    conversation_id: int | None = None,
) -> AppealInfo:
    """The customer's own appeal by number.

    "Own" means filed for one of ``account_ids`` or in this conversation (an
    appeal filed before linking an account). Anyone else's appeal is reported
    as :class:`AppealNotFound`, like a number that does not exist.
    """
    normalized = normalize_appeal_number(number)
    owned = _owned_by(account_ids, conversation_id)
    if owned is None:
        raise AppealNotFound(normalized)
    appeal = (
        await session.execute(select(Appeal).where(Appeal.number == normalized, owned))
    ).scalar_one_or_none()
    if appeal is None:
        raise AppealNotFound(normalized)
    return appeal_info(appeal)


async def list_open_appeals(
    session: AsyncSession,
    account_ids: Collection[int],
    conversation_id: int | None = None,
) -> list[AppealInfo]:
    """The customer's open appeals (registered or in review), oldest first."""
    owned = _owned_by(account_ids, conversation_id)
    if owned is None:
        return []
    open_statuses = [s for s in AppealStatus if s.is_open]
    rows = (
        await session.execute(
            select(Appeal)
            .where(owned, Appeal.status.in_(open_statuses))
            .order_by(Appeal.created_at, Appeal.id)
        )
    ).scalars()
    return [appeal_info(a) for a in rows]


_FINAL = {AppealStatus.RESOLVED, AppealStatus.REJECTED, AppealStatus.CLOSED}


async def change_status(
    session: AsyncSession,
    appeal_id: int,
    status: AppealStatus,
    comment: str | None,
    now: datetime,
) -> AppealInfo:
    """Move an appeal to ``status`` and record it in the history.

    The history row keeps ``notified_at`` NULL until the notice to the
    customer on their channel has been sent.
    """
    appeal = await session.get(Appeal, appeal_id, with_for_update=True)
    if appeal is None:
        raise AppealNotFound(str(appeal_id))
    appeal.status = status
    if status in _FINAL and appeal.resolved_at is None:
        appeal.resolved_at = now
    elif status.is_open:
        appeal.resolved_at = None
    session.add(
        AppealStatusChange(
            appeal_id=appeal.id, status=status, comment=comment, changed_at=now, notified_at=None
        )
    )
    await session.flush()
    return appeal_info(appeal)


async def pending_status_notices(session: AsyncSession) -> list[AppealStatusChange]:
    """Status changes not yet told to the customer, oldest first."""
    rows = await session.execute(
        select(AppealStatusChange)
        .where(AppealStatusChange.notified_at.is_(None))
        .order_by(AppealStatusChange.changed_at, AppealStatusChange.id)
    )
    return list(rows.scalars())
