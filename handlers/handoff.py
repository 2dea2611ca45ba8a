"""The operators' queue: putting a conversation in it, and its summary.

Who answers is ``Conversation.owner``, kept apart from its status: the queue
owns a conversation from :func:`enqueue` until an operator takes it
(handlers/queue.py) or the customer leaves (:func:`cancel_waiting`). The
status follows the owner (QUEUED, OPERATOR, BOT) for what only reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.appeals import AppealInfo, NewAppeal, create_appeal
from handlers.hours import is_open, next_opening
from handlers.pii import redact_text, redact_values
from storage.crypto import PersonalDataVault
from storage.models import (
    AppealCategory,
    Conversation,
    ConversationStatus,
    Direction,
    HandoffOutcome,
    HandoffQueueEntry,
    HandoffStatus,
    Message,
    Owner,
)

SUMMARY_MESSAGES = 3
SUMMARY_MESSAGE_CHARS = 200
# A handoff this urgent (a leak, no heating) reaches the queue at any hour.
EMERGENCY_PRIORITY: Final = 2
# Slot names whose values are secrets however they look (hashes, ciphertexts).
_SECRET_SLOT_SUFFIXES: Final = ("_enc", "_hash")


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
    topics = topic_titles(intents)
    lines = [
        f"Лицевой счёт: {account_number or 'не привязан'}",
        f"Темы: {', '.join(topics) if topics else '—'}",
    ]
    for message in messages[-SUMMARY_MESSAGES:]:
        # Stored texts are redacted already; a line of this turn, or one
        # stored before redaction covered phones, may not be.
        text = redact_text(message)
        short = text if len(text) <= SUMMARY_MESSAGE_CHARS else text[:SUMMARY_MESSAGE_CHARS] + "…"
        lines.append(f"Клиент: {short}")
    return "\n".join(lines)


def build_details(
    reason: str,
    account_number: str | None,
    intents: Sequence[str],
    forms: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> dict[str, Any]:
    """What the bot already did, for the operator's card (JSON): the linked
    account, the topic, the forms in progress with the slots they collected
    (redacted; hashes and ciphertexts left out) and the handoff's reason."""
    topics = [i for i in intents if i not in _NOT_TOPICS]
    # The form in progress says it best ("отопление" answering a reading
    # form reads as report_outage); else the last intent that names a topic.
    topic = forms[0][0] if forms else (topics[-1] if topics else None)
    return {
        "reason": reason,
        "account": account_number,
        "topic": topic,
        "intents": list(intents),
        "forms": [
            {
                "name": name,
                "slots": redact_values(
                    {
                        k: v
                        for k, v in slots.items()
                        if v is not None and not k.endswith(_SECRET_SLOT_SUFFIXES)
                    }
                ),
            }
            for name, slots in forms
        ],
    }


# What an operator reads for an intent in the summary (shared/intents.md).
TOPIC_TITLES: Final = {
    "link_account": "привязка лицевого счёта",
    "submit_reading": "показания счётчика",
    "check_balance": "баланс и начисления",
    "pay_bill": "оплата",
    "file_appeal": "обращение, жалоба",
    "appeal_status": "статус обращения",
    "report_outage": "отключение, авария",
    "connection_request": "подключение к теплосети",
    "contacts_hours": "контакты и часы работы",
    "office_appointment": "запись в офис",
    "tariff_info": "тарифы",
    "bonus_balance": "бонусы ЭнергоБонус",
    "subscribe_news": "рассылка",
    "out_of_scope": "вопрос не по теме",
    "debt_certificate": "справка об отсутствии долга",
}


def topic_titles(intents: Sequence[str]) -> list[str]:
    """The customer's topics in the operator's words, each once, in order;
    intents that say nothing of a topic (greetings, a fallback) left out."""
    titles: list[str] = []
    for intent in intents:
        if intent in _NOT_TOPICS:
            continue
        title = TOPIC_TITLES.get(intent, intent)
        if title not in titles:
            titles.append(title)
    return titles


# Intents that say nothing of what the customer came for.
_NOT_TOPICS: Final = frozenset(
    {"human_handoff", "nlu_fallback", "greet", "goodbye", "thanks", "affirm", "deny"}
)


def _set_owner(conversation: Conversation, owner: Owner) -> None:
    conversation.owner = owner
    conversation.owner_operator_id = None
    conversation.status = (
        ConversationStatus.QUEUED if owner is Owner.QUEUE else ConversationStatus.BOT
    )


async def enqueue(
    session: AsyncSession,
    settings: Settings,
    conversation: Conversation,
    reason: str,
    summary: str,
    now: datetime,
    priority: int = 0,
    *,
    details: Mapping[str, Any] | None = None,
) -> QueuedInfo:
    """Queue the conversation for operators (once).

    During the contact center's hours the queue owns the conversation (the
    bot steps aside until an operator takes it). Out of hours it stays with
    the bot, which keeps serving everything it can (shared/design.md), and
    the entry waits for the morning; an emergency (``EMERGENCY_PRIORITY``)
    is queued at any hour. A chat an operator owns already stays theirs.
    """
    urgent = priority >= EMERGENCY_PRIORITY
    out_of_hours = not is_open(settings, now)
    opening = next_opening(settings, now)
    queue_it = (urgent or not out_of_hours) and conversation.owner is not Owner.OPERATOR
    waiting = await session.scalar(
        select(HandoffQueueEntry).where(
            HandoffQueueEntry.conversation_id == conversation.id,
            HandoffQueueEntry.status.in_((HandoffStatus.WAITING, HandoffStatus.TAKEN)),
        )
    )
    if waiting is not None:
        if queue_it:
            _set_owner(conversation, Owner.QUEUE)
        if priority > waiting.priority:
            waiting.priority = priority
        await session.flush()
        return QueuedInfo(waiting.id, out_of_hours and not urgent, opening, already_queued=True)
    entry = HandoffQueueEntry(
        conversation_id=conversation.id,
        reason=reason[:40],
        summary=summary,
        priority=priority,
        out_of_hours=out_of_hours,
        details=dict(details) if details is not None else {"reason": reason},
        created_at=now,
    )
    session.add(entry)
    if queue_it:
        _set_owner(conversation, Owner.QUEUE)
    await session.flush()
    return QueuedInfo(entry.id, out_of_hours and not urgent, opening, already_queued=False)


async def cancel_waiting(session: AsyncSession, conversation: Conversation, now: datetime) -> bool:
    """The customer no longer waits: close a WAITING entry, the bot answers again.

    An entry an operator has already taken is left alone (False).
    """
    if conversation.owner is not Owner.QUEUE:
        return False
    entry = await session.scalar(
        select(HandoffQueueEntry).where(
            HandoffQueueEntry.conversation_id == conversation.id,
            HandoffQueueEntry.status == HandoffStatus.WAITING,
        )
    )
    if entry is not None:
        entry.status = HandoffStatus.CLOSED
        entry.outcome = HandoffOutcome.LEFT
        entry.closed_at = now
    _set_owner(conversation, Owner.BOT)
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
