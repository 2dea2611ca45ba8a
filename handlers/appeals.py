"""Appeals (обращения): registration with a number and two deadlines, status,
the customer's own appeals, status changes with their history, the notices
of those changes (who is told, claimed once) and the deadline jobs.

Deadlines: preliminary review within ``settings.appeal_review_hours`` hours,
a decision within ``settings.appeal_decision_working_days`` Russian working
days (the end of that day, Moscow time). Handlers flush, never commit: the
caller commits the turn as one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Final

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.calendar import add_working_days
from handlers.emails import mask_email
from handlers.errors import HandlerError
from handlers.numbering import next_number
from handlers.pii import redact_text
from storage.crypto import PersonalDataVault, mask_phone
from storage.models import (
    AccountLink,
    Appeal,
    AppealAttachment,
    AppealCategory,
    AppealStatus,
    AppealStatusChange,
    ChannelIdentity,
    Conversation,
    Priority,
    Task,
    TaskKind,
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
    contact_email: str | None = None  # in the clear here; stored encrypted
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

    The contact phone and e-mail are stored encrypted with a masked copy for display,
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
        contact_email_enc=vault.encrypt(new.contact_email) if new.contact_email else None,
        contact_email_masked=mask_email(new.contact_email) if new.contact_email else None,
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
MAX_COMMENT_CHARS = 2000

# Where an appeal may go from each status. REGISTERED is only ever the first
# status (create_appeal); CLOSED is the end. An answer, a resolution or a
# refusal may be reopened (the customer disputes it): back to IN_REVIEW.
TRANSITIONS: Final[Mapping[AppealStatus, frozenset[AppealStatus]]] = {
    AppealStatus.REGISTERED: frozenset(
        {
            AppealStatus.IN_REVIEW,
            AppealStatus.ANSWERED,
            AppealStatus.RESOLVED,
            AppealStatus.REJECTED,
            AppealStatus.CLOSED,
        }
    ),
    AppealStatus.IN_REVIEW: frozenset(
        {AppealStatus.ANSWERED, AppealStatus.RESOLVED, AppealStatus.REJECTED, AppealStatus.CLOSED}
    ),
    AppealStatus.ANSWERED: frozenset(
        {AppealStatus.IN_REVIEW, AppealStatus.RESOLVED, AppealStatus.CLOSED}
    ),
    AppealStatus.RESOLVED: frozenset({AppealStatus.IN_REVIEW, AppealStatus.CLOSED}),
    AppealStatus.REJECTED: frozenset({AppealStatus.IN_REVIEW, AppealStatus.CLOSED}),
    AppealStatus.CLOSED: frozenset(),
}


class InvalidTransition(AppealError):
    """The appeal cannot go from its status to the one asked for."""

    def __init__(self, number: str, current: AppealStatus, requested: AppealStatus) -> None:
        super().__init__(f"{number}: {current.value} -> {requested.value}")
        self.number = number
        self.current = current
        self.requested = requested


async def _locked(session: AsyncSession, appeal_id: int) -> Appeal | None:
    """The appeal, row-locked on PostgreSQL and read afresh: what the caller
    checks next is what it changes (another process may just have)."""
    return await session.get(Appeal, appeal_id, with_for_update=True, populate_existing=True)


async def change_status(
    session: AsyncSession,
    appeal_id: int | Appeal,
    status: AppealStatus,
    comment: str | None,
    now: datetime,
    operator_id: int | None = None,
) -> AppealInfo:
    """Move an appeal to ``status`` and record it in the history.

    Refuses a move :data:`TRANSITIONS` does not allow (the same status
    again included) with :class:`InvalidTransition`. A final status
    (resolved, rejected, closed) sets ``resolved_at`` once; reopening clears
    it. The history row keeps ``notified_at`` NULL until the notice to the
    customer on their channel has been sent (bot/notices.py). A phone or
    SNILS in the comment is redacted: the customer reads it.
    """
    if isinstance(appeal_id, Appeal):
        appeal: Appeal | None = appeal_id
    else:
        appeal = await _locked(session, appeal_id)
    if appeal is None:
        raise AppealNotFound(str(appeal_id))
    if status not in TRANSITIONS[appeal.status]:
        raise InvalidTransition(appeal.number, appeal.status, status)
    text = redact_text(comment.strip())[:MAX_COMMENT_CHARS] if comment else None
    appeal.status = status
    if status in _FINAL and appeal.resolved_at is None:
        appeal.resolved_at = now
    elif status.is_open:
        appeal.resolved_at = None
    session.add(
        AppealStatusChange(
            appeal_id=appeal.id,
            status=status,
            comment=text or None,
            changed_at=now,
            notified_at=None,
            operator_id=operator_id,
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


# --------------------------------------------------------------------------
# Notices: who is told, and the claim that tells them once
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingNotice:
    change_id: int
    appeal_id: int
    number: str
    status: AppealStatus
    comment: str | None
    changed_at: datetime
    decision_due_at: datetime
    conversation_id: int | None
    account_id: int | None


@dataclass(frozen=True)
class NoticeTarget:
    """The chat a notice goes to, as the conversation service addresses it."""

    conversation_id: int
    channel: str
    chat_id: str
    last_customer_message_at: datetime | None


async def pending_notices(session: AsyncSession, limit: int, after: int = 0) -> list[PendingNotice]:
    """Up to ``limit`` status changes not yet told with an id above ``after``,
    oldest first (ids grow with time: a change is written when it happens)."""
    rows = await session.execute(
        select(
            AppealStatusChange.id,
            Appeal.id,
            Appeal.number,
            AppealStatusChange.status,
            AppealStatusChange.comment,
            AppealStatusChange.changed_at,
            Appeal.decision_due_at,
            Appeal.conversation_id,
            Appeal.account_id,
        )
        .join(Appeal, Appeal.id == AppealStatusChange.appeal_id)
        .where(AppealStatusChange.notified_at.is_(None), AppealStatusChange.id > after)
        .order_by(AppealStatusChange.id)
        .limit(limit)
    )
    return [PendingNotice(*row) for row in rows]


async def notice_target(session: AsyncSession, notice: PendingNotice) -> NoticeTarget | None:
    """Where the customer is told: the appeal's own conversation; else (an
    appeal registered from the console or by phone) the most recent
    conversation of an identity linked to the appeal's account. None when
    there is no such chat."""
    columns = (
        Conversation.id,
        Conversation.channel,
        Conversation.chat_id,
        Conversation.last_customer_message_at,
    )
    if notice.conversation_id is not None:
        row = (
            await session.execute(select(*columns).where(Conversation.id == notice.conversation_id))
        ).first()
        if row is not None:
            return NoticeTarget(*row)
    if notice.account_id is None:
        return None
    linked = select(AccountLink.identity_id).where(AccountLink.account_id == notice.account_id)
    current = select(ChannelIdentity.id).where(
        ChannelIdentity.current_account_id == notice.account_id
    )
    row = (
        await session.execute(
            select(*columns)
            .where(
                or_(
                    Conversation.identity_id.in_(linked.scalar_subquery()),
                    Conversation.identity_id.in_(current.scalar_subquery()),
                )
            )
            .order_by(
                Conversation.last_customer_message_at.desc().nulls_last(),
                Conversation.id.desc(),
            )
            .limit(1)
        )
    ).first()
    return NoticeTarget(*row) if row is not None else None


async def still_pending(session: AsyncSession, change_ids: Collection[int]) -> set[int]:
    """Which of these status changes nobody has told yet."""
    if not change_ids:
        return set()
    rows = await session.scalars(
        select(AppealStatusChange.id).where(
            AppealStatusChange.id.in_(list(change_ids)), AppealStatusChange.notified_at.is_(None)
        )
    )
    return set(rows)


async def claim_notice(session: AsyncSession, change_id: int, now: datetime) -> bool:
    """Mark a status change told, once: False if another worker has. Run it
    in the transaction that writes the notice, so that both commit or neither."""
    result = await session.execute(
        update(AppealStatusChange)
        .where(AppealStatusChange.id == change_id, AppealStatusChange.notified_at.is_(None))
        .values(notified_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


# --------------------------------------------------------------------------
# Deadlines: what the scheduled jobs do
# --------------------------------------------------------------------------


async def due_for_review(session: AsyncSession, now: datetime, limit: int) -> list[int]:
    """Appeals still REGISTERED at their preliminary-review deadline."""
    rows = await session.execute(
        select(Appeal.id)
        .where(Appeal.status == AppealStatus.REGISTERED, Appeal.review_due_at <= now)
        .order_by(Appeal.review_due_at, Appeal.id)
        .limit(limit)
    )
    return list(rows.scalars())


async def take_into_review(
    session: AsyncSession, appeal_id: int, comment: str, now: datetime
) -> AppealInfo | None:
    """The review deadline passed with the appeal untouched: it goes to the
    specialists (IN_REVIEW) and the customer is told. None if it is no
    longer due (an operator, or another process, moved it meanwhile)."""
    appeal = await _locked(session, appeal_id)
    if appeal is None or appeal.status is not AppealStatus.REGISTERED or appeal.review_due_at > now:
        return None
    return await change_status(session, appeal, AppealStatus.IN_REVIEW, comment, now)


def _not_escalated() -> ColumnElement[bool]:
    return ~(
        select(Task.id)
        .where(Task.appeal_id == Appeal.id, Task.kind == TaskKind.APPEAL_OVERDUE)
        .exists()
    )


async def overdue_decisions(session: AsyncSession, now: datetime, limit: int) -> list[int]:
    """Open appeals past their decision deadline and not yet escalated."""
    open_statuses = [s for s in AppealStatus if s.is_open]
    rows = await session.execute(
        select(Appeal.id)
        .where(
            Appeal.status.in_(open_statuses),
            Appeal.decision_due_at <= now,
            _not_escalated(),
        )
        .order_by(Appeal.decision_due_at, Appeal.id)
        .limit(limit)
    )
    return list(rows.scalars())


async def escalate_overdue(
    session: AsyncSession, appeal_id: int, now: datetime, tz: tzinfo
) -> int | None:
    """The decision deadline passed with the appeal still open: its priority
    goes up and a task is opened for the supervisors, once per appeal. The
    status stays (only staff decide an appeal), so the customer gets no
    notice; asked, the bot says the deadline has passed. The task's id, or
    None if it is not due (decided meanwhile, escalated by another process)."""
    appeal = await _locked(session, appeal_id)
    if appeal is None or not appeal.status.is_open or appeal.decision_due_at > now:
        return None
    # Read after the row lock: an escalation committed meanwhile is seen.
    escalated = await session.scalar(
        select(Task.id).where(Task.appeal_id == appeal.id, Task.kind == TaskKind.APPEAL_OVERDUE)
    )
    if escalated is not None:
        return None
    appeal.priority = Priority.HIGH
    due = appeal.decision_due_at.astimezone(tz).strftime("%d.%m.%Y")
    task = Task(
        kind=TaskKind.APPEAL_OVERDUE,
        account_id=appeal.account_id,
        appeal_id=appeal.id,
        description=f"Просрочено решение по обращению {appeal.number} (срок — {due})",
        created_at=now,
    )
    session.add(task)
    await session.flush()
    return task.id
