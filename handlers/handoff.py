"""The operators' queue: putting a conversation in it, and its summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.appeals import AppealInfo, NewAppeal, create_appeal
from handlers.hours import is_open, next_opening
from handlers.pii import redact_text
from storage.crypto import PersonalDataVault
from storage.models import (
    AppealCategory,
    Conversation,
    ConversationStatus,
    Direction,
    HandoffQueueEntry,
    HandoffStatus,
    Message,
)

SUMMARY_MESSAGES = 3
SUMMARY_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class QueuedInfo:
    entry_id: int
    out_of_hours: bool
    next_opening: datetime  # UTC; equals ``now`` when operators are at work
    already_queued: bool


async def last_customer_messages(
    session: AsyncSession, conversation_id: int, limit: int = SUMMARY_MESSAGES
) -> list[str]:
    """The customer's latest stored messages (redacted), oldest first."""
    rows = (
        await session.execute(
            select(Message.text)
            .where(Message.conversation_id == conversation_id, Message.direction == Direction.IN)
            .order_by(Message.id.desc())
            .limit(limit)
        )
    ).scalars()
    return list(reversed(list(rows)))


def build_summary(intents: list[str], account_number: str | None, messages: list[str]) -> str:
    """A few lines for the operator: what the bot saw before the handoff."""
    lines = [
        f"Лицевой счёт: {account_number or 'не привязан'}",
        f"Темы: {', '.join(intents) if intents else '—'}",
    ]
    for message in messages[-SUMMARY_MESSAGES:]:
        # Stored texts are redacted already; a line of this turn, or one
        # stored before redaction covered phones, may not be.
        text = redact_text(message)
        short = text if len(text) <= SUMMARY_MESSAGE_CHARS else text[:SUMMARY_MESSAGE_CHARS] + "…"
        lines.append(f"Клиент: {short}")
    return "\n".join(lines)


async def enqueue(
    session: AsyncSession,
    settings: Settings,
    conversation: Conversation,
    reason: str,
    summary: str,
    now: datetime,
    priority: int = 0,
) -> QueuedInfo:
    """Queue the conversation for operators (once).

    During the contact center's hours the conversation becomes QUEUED (the
    bot steps aside until an operator takes it). Out of hours it stays with
    the bot, which keeps serving everything it can (shared/design.md), and
    the entry waits for the morning.
    """
    out_of_hours = not is_open(settings, now)
    opening = next_opening(settings, now)
    waiting = await session.scalar(
        select(HandoffQueueEntry).where(
            HandoffQueueEntry.conversation_id == conversation.id,
            HandoffQueueEntry.status.in_((HandoffStatus.WAITING, HandoffStatus.TAKEN)),
        )
    )
    if waiting is not None:
        if not out_of_hours:
            conversation.status = ConversationStatus.QUEUED
        await session.flush()
        return QueuedInfo(waiting.id, out_of_hours, opening, already_queued=True)
    entry = HandoffQueueEntry(
        conversation_id=conversation.id,
        reason=reason[:40],
        summary=summary,
        priority=priority,
        out_of_hours=out_of_hours,
        created_at=now,
    )
    session.add(entry)
    if not out_of_hours:
        conversation.status = ConversationStatus.QUEUED
    await session.flush()
    return QueuedInfo(entry.id, out_of_hours, opening, already_queued=False)


async def cancel_waiting(session: AsyncSession, conversation: Conversation, now: datetime) -> bool:
    """The customer no longer waits: close a WAITING entry, the bot answers again.

    An entry an operator has already taken is left alone (False).
    """
    entry = await session.scalar(
        select(HandoffQueueEntry).where(
            HandoffQueueEntry.conversation_id == conversation.id,
            HandoffQueueEntry.status == HandoffStatus.WAITING,
        )
    )
    if entry is None or conversation.status is not ConversationStatus.QUEUED:
        return False
    entry.status = HandoffStatus.CLOSED
    entry.closed_at = now
    conversation.status = ConversationStatus.BOT
    await session.flush()
    return True


async def register_callback(
    session: AsyncSession,
    vault: PersonalDataVault,
    settings: Settings,
    conversation: Conversation,
    account_id: int | None,
    description: str,
    now: datetime,
) -> AppealInfo:
    """Out of hours an escalation also registers a call-back request."""
    return await create_appeal(
        session,
        vault,
        settings,
        NewAppeal(
            category=AppealCategory.CALLBACK,
            description=description,
            account_id=account_id,
            conversation_id=conversation.id,
            channel=conversation.channel,
        ),
        now,
    )
