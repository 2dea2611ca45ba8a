"""The operators' queue: its order, a conversation's place in it, and who
takes the next chat.

Order: higher priority first, then the longest waiting (then the entry id,
so that two entries of one moment keep a stable order). A chat goes to an
online, active operator with a free place (``operators.capacity``, else the
``OPERATOR_CAPACITY`` setting), the least busy first; among equally busy
ones, the one online the longest.

Nothing here takes a lock or commits: the operator service
(bot/operators/service.py) holds the locks, claims the conversation with a
conditional UPDATE and commits.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from storage.models import (
    Conversation,
    HandoffQueueEntry,
    HandoffStatus,
    Operator,
    Owner,
    Presence,
)

# The queue's order, as SQL.
QUEUE_ORDER = (
    HandoffQueueEntry.priority.desc(),
    HandoffQueueEntry.created_at,
    HandoffQueueEntry.id,
)


@dataclass(frozen=True, slots=True)
class OperatorLoad:
    operator_id: int
    chats: int
    capacity: int

    @property
    def free(self) -> int:
        return max(self.capacity - self.chats, 0)


@dataclass(frozen=True, slots=True)
class Assignment:
    """The next chat of the queue and the operator to give it to."""

    entry_id: int
    conversation_id: int
    operator_id: int


async def waiting_entries(session: AsyncSession) -> list[HandoffQueueEntry]:
    """Every WAITING entry, in the queue's order."""
    return list(
        await session.scalars(
            select(HandoffQueueEntry)
            .where(HandoffQueueEntry.status == HandoffStatus.WAITING)
            .order_by(*QUEUE_ORDER)
        )
    )


async def position(session: AsyncSession, conversation_id: int) -> int | None:
    """The conversation's place in the queue (1 is next); None if it does not wait."""
    entry = await session.scalar(
        select(HandoffQueueEntry)
        .where(
            HandoffQueueEntry.conversation_id == conversation_id,
            HandoffQueueEntry.status == HandoffStatus.WAITING,
        )
        .order_by(HandoffQueueEntry.id.desc())
        .limit(1)
    )
    if entry is None:
        return None
    ahead = await session.scalar(
        select(func.count())
        .select_from(HandoffQueueEntry)
        .where(
            HandoffQueueEntry.status == HandoffStatus.WAITING,
            HandoffQueueEntry.id != entry.id,
            or_(
                HandoffQueueEntry.priority > entry.priority,
                and_(
                    HandoffQueueEntry.priority == entry.priority,
                    or_(
                        HandoffQueueEntry.created_at < entry.created_at,
                        and_(
                            HandoffQueueEntry.created_at == entry.created_at,
                            HandoffQueueEntry.id < entry.id,
                        ),
                    ),
                ),
            ),
        )
    )
    return int(ahead or 0) + 1


async def chats_owned(session: AsyncSession, operator_id: int) -> int:
    """How many conversations the operator owns now."""
    count = await session.scalar(
        select(func.count())
        .select_from(Conversation)
        .where(Conversation.owner == Owner.OPERATOR, Conversation.owner_operator_id == operator_id)
    )
    return int(count or 0)


async def loads(session: AsyncSession, settings: Settings) -> list[OperatorLoad]:
    """Online, active operators with how busy they are: the least busy first,
    then the one online the longest (then by id)."""
    owned = (
        select(Conversation.owner_operator_id.label("operator_id"), func.count().label("chats"))
        .where(Conversation.owner == Owner.OPERATOR)
        .group_by(Conversation.owner_operator_id)
        .subquery()
    )
    rows = (
        await session.execute(
            select(Operator.id, Operator.capacity, func.coalesce(owned.c.chats, 0))
            .outerjoin(owned, owned.c.operator_id == Operator.id)
            .where(Operator.active.is_(True), Operator.presence == Presence.ONLINE)
            .order_by(
                func.coalesce(owned.c.chats, 0),
                Operator.presence_changed_at.asc().nulls_first(),
                Operator.id,
            )
        )
    ).all()
    default = settings.operator_capacity
    return [
        OperatorLoad(int(op_id), int(chats), default if capacity is None else int(capacity))
        for op_id, capacity, chats in rows
    ]


async def next_assignment(
    session: AsyncSession,
    settings: Settings,
    skip: Collection[int] = (),
) -> Assignment | None:
    """The head of the queue and the least busy operator with a free place;
    None when the queue is empty or nobody has room. ``skip``: conversations
    not to offer again in this pass (a take that failed)."""
    free = [load for load in await loads(session, settings) if load.free > 0]
    if not free:
        return None
    query = (
        select(HandoffQueueEntry.id, HandoffQueueEntry.conversation_id)
        .join(Conversation, Conversation.id == HandoffQueueEntry.conversation_id)
        .where(
            HandoffQueueEntry.status == HandoffStatus.WAITING,
            Conversation.owner != Owner.OPERATOR,
        )
        .order_by(*QUEUE_ORDER)
        .limit(1)
    )
    if skip:
        query = query.where(HandoffQueueEntry.conversation_id.not_in(list(skip)))
    head = (await session.execute(query)).first()
    if head is None:
        return None
    return Assignment(int(head[0]), int(head[1]), free[0].operator_id)
