"""The operator service: the one API the console and the Telegram desk call.

Who answers a customer is ``Conversation.owner`` (bot, queue or one
operator), kept apart from the conversation's status. Every change of owner
happens here or in handlers/handoff.py, always under the chat's lock, and
the claim itself is a conditional UPDATE (``... WHERE owner <> 'operator'``),
so of two operators taking one chat at the same moment exactly one wins,
across processes too.

After each commit an event goes out on the ``operators`` topic
(:data:`OPERATOR_EVENTS_TOPIC`) so that the console and the desk update live,
and whenever a place may have freed up (an operator comes online, resolves,
returns or transfers a chat, a chat joins the queue) the backlog is drained:
queued chats go to online operators with room, the least busy first, in the
queue's order (handlers/queue.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from bot.conversations import ConversationService
from bot.pipeline import TurnReport
from dialogs.flows import nps
from dialogs.messages import Reply
from dialogs.state import DialogState
from dialogs.texts import MENU
from handlers import handoff, pii
from handlers import queue as operator_queue
from storage.locks import LockStore, LockTimeout
from storage.models import (
    Account,
    ChannelIdentity,
    Conversation,
    ConversationStatus,
    HandoffOutcome,
    HandoffQueueEntry,
    HandoffStatus,
    Message,
    Operator,
    OperatorNote,
    Owner,
    Presence,
    Sender,
)
from storage.pubsub import PubSubError

log = logging.getLogger(__name__)

OPERATOR_EVENTS_TOPIC: Final = "operators"
EventType = Literal["queue", "chat", "message", "presence"]
# One drain at a time, across processes: two would both see one free place.
DRAIN_LOCK: Final = "operators:drain"
# A drain pass stops after this many assignments (the next trigger goes on).
MAX_DRAIN: Final = 200
TRANSCRIPT_LIMIT: Final = 500
# What an operator types to hand the chat back (the desk has no buttons for it).
_RETURN_COMMAND: Final = re.compile(r"^\s*(?:вернуть\s+боту|/bot)\s*$", re.IGNORECASE)
# Why the queue entry exists when an operator opened the chat themselves.
REASON_OPERATOR: Final = "operator"


class Texts:
    joined = "Оператор {name} подключился к разговору."
    transferred = "Разговор передан оператору {name}, он ответит здесь же."
    returned = "Оператор передал разговор мне. Чем ещё могу помочь?"
    resolved = "Оператор завершил разговор. Спасибо, что написали нам."
    requeued = (
        "Оператор отключился, передаю разговор следующему свободному оператору. "
        "Ваше место в очереди: {place}."
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------- errors


class OperatorError(Exception):
    """Root of the operator service's errors."""


class UnknownConversation(OperatorError):
    def __init__(self, conversation_id: int) -> None:
        super().__init__(f"no conversation {conversation_id}")
        self.conversation_id = conversation_id


class UnknownOperator(OperatorError):
    def __init__(self, operator_id: int) -> None:
        super().__init__(f"no operator {operator_id}")
        self.operator_id = operator_id


class OperatorUnavailable(OperatorError):
    """The operator's account is disabled, or (a transfer's target) offline."""

    def __init__(self, operator_id: int) -> None:
        super().__init__(f"operator {operator_id} is not available")
        self.operator_id = operator_id


class NotOwner(OperatorError):
    """The conversation is not this operator's (another one's, the queue's or the bot's)."""

    def __init__(self, conversation_id: int, owner: Owner, owner_operator_id: int | None) -> None:
        super().__init__(f"conversation {conversation_id} is owned by {owner.value}")
        self.conversation_id = conversation_id
        self.owner = owner
        self.owner_operator_id = owner_operator_id


class AlreadyTaken(OperatorError):
    """Another operator owns the conversation already."""

    def __init__(self, conversation_id: int, owner_operator_id: int | None) -> None:
        super().__init__(f"conversation {conversation_id} is taken already")
        self.conversation_id = conversation_id
        self.owner_operator_id = owner_operator_id


class EmptyText(OperatorError):
    """A reply or a note without text."""


# -------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One waiting chat, in the queue's order (``position`` 1 is next)."""

    position: int
    entry_id: int
    conversation_id: int
    channel: str
    display_name: str | None
    reason: str
    priority: int
    waiting_since: datetime
    out_of_hours: bool
    summary: str
    details: dict[str, Any]
    owner: Owner


@dataclass(frozen=True, slots=True)
class ChatItem:
    """A chat an operator owns."""

    conversation_id: int
    entry_id: int | None
    channel: str
    display_name: str | None
    reason: str | None
    taken_at: datetime | None
    last_message_at: datetime | None
    last_customer_text: str | None


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    id: int
    sender: Literal["customer", "bot", "operator", "system"]
    text: str
    at: datetime
    operator_id: int | None


@dataclass(frozen=True, slots=True)
class NoteView:
    id: int
    operator_id: int
    operator_name: str
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class EntryView:
    id: int
    status: HandoffStatus
    reason: str
    summary: str
    details: dict[str, Any]
    priority: int
    created_at: datetime
    taken_at: datetime | None
    operator_id: int | None


@dataclass(frozen=True, slots=True)
class ChatView:
    """One conversation as an operator sees it."""

    conversation_id: int
    channel: str
    display_name: str | None
    account_number: str | None
    owner: Owner
    owner_operator_id: int | None
    owner_name: str | None
    status: ConversationStatus
    desk_topic_id: int | None  # the Telegram desk's forum topic, once opened
    entry: EntryView | None  # the open queue entry, else the last one
    queue_position: int | None
    messages: tuple[TranscriptLine, ...]
    notes: tuple[NoteView, ...]


@dataclass(frozen=True, slots=True)
class TeamMember:
    """An operator as the team list shows them: presence and load."""

    operator_id: int
    display_name: str
    presence: Presence
    chats: int
    capacity: int


@dataclass(frozen=True, slots=True)
class OperatorEvent:
    """Published on :data:`OPERATOR_EVENTS_TOPIC` after a commit."""

    type: EventType
    conversation_id: int | None = None
    owner_operator_id: int | None = None
    operator_id: int | None = None  # who acted (presence: whose)
    presence: Presence | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "type": self.type,
                "conversation_id": self.conversation_id,
                "owner_operator_id": self.owner_operator_id,
                "operator_id": self.operator_id,
                "presence": self.presence.value if self.presence is not None else None,
                **self.extra,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> OperatorEvent:
        data = json.loads(raw)
        known = {"type", "conversation_id", "owner_operator_id", "operator_id", "presence"}
        return cls(
            type=data["type"],
            conversation_id=data.get("conversation_id"),
            owner_operator_id=data.get("owner_operator_id"),
            operator_id=data.get("operator_id"),
            presence=Presence(data["presence"]) if data.get("presence") else None,
            extra={k: v for k, v in data.items() if k not in known},
        )


@dataclass(frozen=True, slots=True)
class _Ref:
    channel: str
    chat_id: str
    owner: Owner
    owner_operator_id: int | None


_SENDERS: Final[dict[Sender, Literal["customer", "bot", "operator", "system"]]] = {
    Sender.CUSTOMER: "customer",
    Sender.BOT: "bot",
    Sender.OPERATOR: "operator",
    Sender.SYSTEM: "system",
}


class OperatorService:
    def __init__(
        self,
        conversations: ConversationService,
        locks: LockStore,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._conv = conversations
        self._locks = locks
        self._clock = clock
        self._settings = conversations.settings

    # ------------------------------------------------------------- reading

    async def queue(self) -> list[QueueItem]:
        """The waiting chats: higher priority first, then the longest waiting."""
        async with self._conv.sessions() as s:
            rows = (
                await s.execute(
                    select(HandoffQueueEntry, Conversation, ChannelIdentity.display_name)
                    .join(Conversation, Conversation.id == HandoffQueueEntry.conversation_id)
                    .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
                    .where(HandoffQueueEntry.status == HandoffStatus.WAITING)
                    .order_by(*operator_queue.QUEUE_ORDER)
                )
            ).all()
        return [
            QueueItem(
                position=n,
                entry_id=entry.id,
                conversation_id=conv.id,
                channel=conv.channel,
                display_name=name,
                reason=entry.reason,
                priority=entry.priority,
                waiting_since=entry.created_at,
                out_of_hours=entry.out_of_hours,
                summary=entry.summary,
                details=dict(entry.details or {}),
                owner=conv.owner,
            )
            for n, (entry, conv, name) in enumerate(rows, start=1)
        ]

    async def team(self) -> list[TeamMember]:
        """Every active operator with their presence, chats and capacity."""
        async with self._conv.sessions() as s:
            operators = list(
                await s.scalars(
                    select(Operator).where(Operator.active.is_(True)).order_by(Operator.id)
                )
            )
            counts = {op.id: await operator_queue.chats_owned(s, op.id) for op in operators}
        default = self._settings.operator_capacity
        return [
            TeamMember(
                op.id,
                op.display_name,
                op.presence,
                counts[op.id],
                default if op.capacity is None else op.capacity,
            )
            for op in operators
        ]

    async def chats_of(self, operator_id: int) -> list[ChatItem]:
        """The chats the operator owns, the longest held first."""
        async with self._conv.sessions() as s:
            rows = (
                await s.execute(
                    select(Conversation, ChannelIdentity.display_name)
                    .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
                    .where(
                        Conversation.owner == Owner.OPERATOR,
                        Conversation.owner_operator_id == operator_id,
                    )
                    .order_by(Conversation.id)
                )
            ).all()
            items = []
            for conv, name in rows:
                entry = await self._open_entry(s, conv.id)
                last = (
                    await s.execute(
                        select(Message.created_at, Message.text, Message.sender)
                        .where(Message.conversation_id == conv.id)
                        .order_by(Message.id.desc())
                        .limit(1)
                    )
                ).first()
                last_customer = await s.scalar(
                    select(Message.text)
                    .where(Message.conversation_id == conv.id, Message.sender == Sender.CUSTOMER)
                    .order_by(Message.id.desc())
                    .limit(1)
                )
                items.append(
                    ChatItem(
                        conversation_id=conv.id,
                        entry_id=entry.id if entry else None,
                        channel=conv.channel,
                        display_name=name,
                        reason=entry.reason if entry else None,
                        taken_at=entry.taken_at if entry else None,
                        last_message_at=last[0] if last else None,
                        last_customer_text=last_customer,
                    )
                )
        items.sort(
            key=lambda i: (i.taken_at or datetime.max.replace(tzinfo=UTC), i.conversation_id)
        )
        return items

    async def chat(self, conversation_id: int) -> ChatView:
        """The transcript (sender marked), the queue entry's summary and
        details, who owns the chat, and the operators' notes."""
        async with self._conv.sessions() as s:
            row = (
                await s.execute(
                    select(Conversation, ChannelIdentity)
                    .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
                    .where(Conversation.id == conversation_id)
                )
            ).first()
            if row is None:
                raise UnknownConversation(conversation_id)
            conv, identity = row
            account = (
                await s.get(Account, identity.current_account_id)
                if identity.current_account_id is not None
                else None
            )
            entry = await self._open_entry(s, conv.id) or await s.scalar(
                select(HandoffQueueEntry)
                .where(HandoffQueueEntry.conversation_id == conv.id)
                .order_by(HandoffQueueEntry.id.desc())
                .limit(1)
            )
            owner_name = None
            if conv.owner_operator_id is not None:
                owner_name = await s.scalar(
                    select(Operator.display_name).where(Operator.id == conv.owner_operator_id)
                )
            messages = (
                await s.execute(
                    select(
                        Message.id,
                        Message.sender,
                        Message.text,
                        Message.created_at,
                        Message.operator_id,
                    )
                    .where(Message.conversation_id == conv.id)
                    .order_by(Message.id.desc())
                    .limit(TRANSCRIPT_LIMIT)
                )
            ).all()
            notes = (
                await s.execute(
                    select(OperatorNote, Operator.display_name)
                    .join(Operator, Operator.id == OperatorNote.operator_id)
                    .where(OperatorNote.conversation_id == conv.id)
                    .order_by(OperatorNote.id)
                )
            ).all()
            place = await operator_queue.position(s, conv.id)
        return ChatView(
            conversation_id=conv.id,
            channel=conv.channel,
            display_name=identity.display_name,
            account_number=account.number if account is not None else None,
            owner=conv.owner,
            owner_operator_id=conv.owner_operator_id,
            owner_name=owner_name,
            status=conv.status,
            desk_topic_id=conv.desk_topic_id,
            entry=_entry_view(entry) if entry is not None else None,
            queue_position=place,
            messages=tuple(
                TranscriptLine(m_id, _SENDERS[sender], text, at, op_id)
                for m_id, sender, text, at, op_id in reversed(messages)
            ),
            notes=tuple(
                NoteView(n.id, n.operator_id, name, n.text, n.created_at) for n, name in notes
            ),
        )

    # ------------------------------------------------------------- acting

    async def take(self, operator_id: int, conversation_id: int) -> None:
        """The operator takes the chat (from the queue, or from the bot). The
        customer is told who joined. :class:`AlreadyTaken` if another
        operator owns it; taking one's own chat again does nothing."""
        if await self._take(operator_id, conversation_id):
            await self._publish(OperatorEvent("queue", conversation_id, operator_id, operator_id))

    async def reply(self, operator_id: int, conversation_id: int, text: str) -> None:
        """Send the customer ``text`` from the operator; a queued chat (or the
        bot's) is taken first. :class:`NotOwner` if another operator owns it.
        "вернуть боту" (or ``/bot``) as the whole text hands the chat back."""
        text = text.strip()
        if not text:
            raise EmptyText("an empty reply")
        if _RETURN_COMMAND.match(text):
            await self.return_to_bot(operator_id, conversation_id)
            return
        ref = await self._ref(conversation_id)
        if ref.owner is not Owner.OPERATOR:
            try:
                await self.take(operator_id, conversation_id)
            except AlreadyTaken as exc:
                raise NotOwner(conversation_id, Owner.OPERATOR, exc.owner_operator_id) from exc
        elif ref.owner_operator_id != operator_id:
            raise NotOwner(conversation_id, ref.owner, ref.owner_operator_id)
        now = self._clock()

        async def mine(session: AsyncSession, conv: Conversation) -> None:
            if conv.owner is not Owner.OPERATOR or conv.owner_operator_id != operator_id:
                raise NotOwner(conv.id, conv.owner, conv.owner_operator_id)
            await session.execute(
                update(HandoffQueueEntry)
                .where(
                    HandoffQueueEntry.conversation_id == conv.id,
                    HandoffQueueEntry.status == HandoffStatus.TAKEN,
                    HandoffQueueEntry.first_response_at.is_(None),
                )
                .values(first_response_at=now)
                .execution_options(synchronize_session=False)
            )

        await self._conv.post(
            ref.channel,
            ref.chat_id,
            [Reply(text)],
            sender=Sender.OPERATOR,
            operator_id=operator_id,
            before=mine,
        )
        await self._publish(OperatorEvent("message", conversation_id, operator_id, operator_id))

    async def transfer(self, operator_id: int, conversation_id: int, to_operator_id: int) -> None:
        """Hand the chat to another (active, not offline) operator."""
        if to_operator_id == operator_id:
            return
        async with self._conv.sessions() as s:
            target = await s.get(Operator, to_operator_id)
        if target is None:
            raise UnknownOperator(to_operator_id)
        if not target.active or target.presence is Presence.OFFLINE:
            raise OperatorUnavailable(to_operator_id)
        async with self._locked(conversation_id) as (s, conv):
            self._must_own(conv, operator_id)
            await self._update_owned(s, conv, operator_id, owner_operator_id=to_operator_id)
            entry = await self._open_entry(s, conv.id)
            if entry is not None:
                entry.operator_id = to_operator_id
            notice = Reply(Texts.transferred.format(name=target.display_name))
            await self._conv.add_messages(s, conv, [notice], sender=Sender.SYSTEM, now=self._now())
            await s.commit()
        await self._conv.committed(conv, "outbound")
        await self._publish(
            OperatorEvent(
                "chat",
                conversation_id,
                to_operator_id,
                operator_id,
                extra={"from_operator_id": operator_id},
            )
        )
        await self.drain()

    async def return_to_bot(self, operator_id: int, conversation_id: int) -> None:
        """The bot answers the customer again ("вернуть боту")."""
        await self._release(operator_id, conversation_id, HandoffOutcome.RETURNED)

    async def resolve(self, operator_id: int, conversation_id: int) -> None:
        """Close the chat; the customer then gets the NPS question, and their
        next messages are its answers (dialogs/flows/nps.py)."""
        await self._release(operator_id, conversation_id, HandoffOutcome.RESOLVED)

    async def set_presence(self, operator_id: int, presence: Presence) -> None:
        """Online takes chats from the queue (the backlog is drained at once);
        away keeps one's chats and takes no new ones; offline hands one's
        chats back to the queue, in the places they had, so that nobody
        waits on an operator who left."""
        now = self._now()
        async with self._conv.transaction() as s:
            changed = await s.execute(
                update(Operator)
                .where(Operator.id == operator_id)
                .values(presence=presence, presence_changed_at=now)
                .returning(Operator.id)
                .execution_options(synchronize_session=False)
            )
            if changed.first() is None:
                raise UnknownOperator(operator_id)
            await s.commit()
        await self._publish(OperatorEvent("presence", operator_id=operator_id, presence=presence))
        if presence is Presence.OFFLINE:
            for item in await self.chats_of(operator_id):
                await self._requeue(operator_id, item.conversation_id)
        if presence is not Presence.AWAY:
            await self.drain()

    async def add_note(self, operator_id: int, conversation_id: int, text: str) -> None:
        """A private note on the chat: operators see it, the customer never."""
        text = text.strip()
        if not text:
            raise EmptyText("an empty note")
        async with self._conv.transaction() as s:
            found = (
                await s.execute(
                    select(Conversation.owner_operator_id).where(Conversation.id == conversation_id)
                )
            ).first()
            if found is None:
                raise UnknownConversation(conversation_id)
            owner_operator_id = found[0]
            if await s.get(Operator, operator_id) is None:
                raise UnknownOperator(operator_id)
            s.add(
                OperatorNote(
                    conversation_id=conversation_id,
                    operator_id=operator_id,
                    text=pii.redact_text(text),
                    created_at=self._now(),
                )
            )
            await s.commit()
        await self._publish(
            OperatorEvent(
                "chat", conversation_id, owner_operator_id, operator_id, extra={"note": True}
            )
        )

    async def drain(self) -> None:
        """Give queued chats to online operators with a free place, the
        least busy first, in the queue's order, until one side runs out."""
        try:
            async with self._locks.lock(DRAIN_LOCK):
                skip: set[int] = set()
                for _ in range(MAX_DRAIN):
                    async with self._conv.sessions() as s:
                        pick = await operator_queue.next_assignment(s, self._settings, skip)
                    if pick is None:
                        return
                    try:
                        took = await self._take(pick.operator_id, pick.conversation_id)
                    except (
                        AlreadyTaken,
                        OperatorUnavailable,
                        UnknownOperator,
                        UnknownConversation,
                        LockTimeout,
                    ):
                        skip.add(pick.conversation_id)
                        continue
                    if took:
                        await self._publish(
                            OperatorEvent(
                                "queue",
                                pick.conversation_id,
                                pick.operator_id,
                                extra={"assigned": True},
                            )
                        )
        except LockTimeout:
            # Another process drains now; it reads the queue again before it stops.
            log.info("operators' queue: a drain is running elsewhere")

    async def after_turn(self, report: TurnReport) -> None:
        """The pipeline's hook after a committed customer turn: the operators
        hear of the customer's message, and of the queue's changes."""
        if report.queued or report.left_queue:
            await self._publish(
                OperatorEvent("queue", report.conversation_id, report.owner_operator_id)
            )
        if report.owner is not Owner.BOT:
            await self._publish(
                OperatorEvent("message", report.conversation_id, report.owner_operator_id)
            )
        if report.queued:
            await self.drain()

    # ------------------------------------------------------------ plumbing

    def _now(self) -> datetime:
        return self._clock()

    async def _publish(self, event: OperatorEvent) -> None:
        try:
            await self._conv.pubsub.publish(OPERATOR_EVENTS_TOPIC, event.to_json())
        except PubSubError as exc:
            log.warning("operator event not published (%s)", type(exc).__name__)

    async def _ref(self, conversation_id: int) -> _Ref:
        async with self._conv.sessions() as s:
            row = (
                await s.execute(
                    select(
                        Conversation.channel,
                        Conversation.chat_id,
                        Conversation.owner,
                        Conversation.owner_operator_id,
                    ).where(Conversation.id == conversation_id)
                )
            ).first()
        if row is None:
            raise UnknownConversation(conversation_id)
        return _Ref(*row)

    @contextlib.asynccontextmanager
    async def _locked(
        self, conversation_id: int
    ) -> AsyncIterator[tuple[AsyncSession, Conversation]]:
        """The chat's lock, a write transaction and the conversation read under it."""
        ref = await self._ref(conversation_id)
        async with self._conv.lock(ref.channel, ref.chat_id), self._conv.transaction() as s:
            conv = await s.get(Conversation, conversation_id, populate_existing=True)
            if conv is None:
                raise UnknownConversation(conversation_id)
            yield s, conv

    @staticmethod
    def _must_own(conv: Conversation, operator_id: int) -> None:
        if conv.owner is not Owner.OPERATOR or conv.owner_operator_id != operator_id:
            raise NotOwner(conv.id, conv.owner, conv.owner_operator_id)

    @staticmethod
    async def _update_owned(
        s: AsyncSession, conv: Conversation, operator_id: int, **values: Any
    ) -> None:
        """Set ``values`` on the conversation only while ``operator_id`` owns
        it (the statement checks: a process without this lock may have moved
        it); the loaded ``conv`` then shows them. :class:`NotOwner` if not."""
        changed = await s.execute(
            update(Conversation)
            .where(
                Conversation.id == conv.id,
                Conversation.owner == Owner.OPERATOR,
                Conversation.owner_operator_id == operator_id,
            )
            .values(**values)
            .returning(Conversation.id)
            .execution_options(synchronize_session=False)
        )
        if changed.first() is None:
            raise NotOwner(conv.id, conv.owner, conv.owner_operator_id)
        for column, value in values.items():
            set_committed_value(conv, column, value)

    @staticmethod
    async def _open_entry(s: AsyncSession, conversation_id: int) -> HandoffQueueEntry | None:
        return await s.scalar(
            select(HandoffQueueEntry)
            .where(
                HandoffQueueEntry.conversation_id == conversation_id,
                HandoffQueueEntry.status.in_((HandoffStatus.WAITING, HandoffStatus.TAKEN)),
            )
            .order_by(HandoffQueueEntry.id.desc())
            .limit(1)
        )

    async def _take(self, operator_id: int, conversation_id: int) -> bool:
        """Claim the chat for the operator; False if it was theirs already."""
        now = self._now()
        async with self._locked(conversation_id) as (s, conv):
            operator = await s.get(Operator, operator_id)
            if operator is None:
                raise UnknownOperator(operator_id)
            if not operator.active:
                raise OperatorUnavailable(operator_id)
            if conv.owner is Owner.OPERATOR:
                if conv.owner_operator_id == operator_id:
                    return False
                raise AlreadyTaken(conv.id, conv.owner_operator_id)
            # The claim: of two takes at once (another process, no lock) one
            # matches the row, the other waits for its commit and matches none.
            claimed = await s.execute(
                update(Conversation)
                .where(Conversation.id == conv.id, Conversation.owner != Owner.OPERATOR)
                .values(
                    owner=Owner.OPERATOR,
                    owner_operator_id=operator_id,
                    status=ConversationStatus.OPERATOR,
                )
                .returning(Conversation.id)
                .execution_options(synchronize_session=False)
            )
            if claimed.first() is None:
                raise AlreadyTaken(conv.id, None)
            set_committed_value(conv, "owner", Owner.OPERATOR)
            set_committed_value(conv, "owner_operator_id", operator_id)
            set_committed_value(conv, "status", ConversationStatus.OPERATOR)
            entry = await self._open_entry(s, conv.id)
            state = DialogState.load(conv.state)
            if entry is None:
                # Opened by the operator, not by an escalation: an entry all the
                # same, for the summary, the KPIs and the NPS.
                entry = await self._operator_entry(s, conv, state, now)
            entry.status = HandoffStatus.TAKEN
            entry.operator_id = operator_id
            entry.taken_at = now
            # The bot's half-done forms would only confuse once it is back.
            state.clear_forms()
            state.queued_notice_sent = False
            notice = Reply(Texts.joined.format(name=operator.display_name))
            await self._conv.add_messages(
                s,
                conv,
                [notice],
                sender=Sender.SYSTEM,
                now=now,
                conversation={"state": state.dump()},
            )
            await s.commit()
        await self._conv.committed(conv, "outbound")
        await self._publish(OperatorEvent("chat", conversation_id, operator_id, operator_id))
        return True

    async def _operator_entry(
        self, s: AsyncSession, conv: Conversation, state: DialogState, now: datetime
    ) -> HandoffQueueEntry:
        number = await s.scalar(
            select(Account.number)
            .join(ChannelIdentity, ChannelIdentity.current_account_id == Account.id)
            .where(ChannelIdentity.id == conv.identity_id)
        )
        messages = await handoff.last_customer_messages(s, conv.id)
        forms = [f for f in (state.active, *state.suspended) if f is not None]
        entry = HandoffQueueEntry(
            conversation_id=conv.id,
            reason=REASON_OPERATOR,
            summary=handoff.build_summary(state.recent_intents, number, messages),
            details=handoff.build_details(
                REASON_OPERATOR, number, state.recent_intents, [(f.name, f.slots) for f in forms]
            ),
            priority=0,
            out_of_hours=False,
            created_at=now,
        )
        s.add(entry)
        await s.flush()
        return entry

    async def _requeue(self, operator_id: int, conversation_id: int) -> None:
        """Back to the queue from an operator who went offline."""
        async with self._locked(conversation_id) as (s, conv):
            try:
                self._must_own(conv, operator_id)
                await self._update_owned(
                    s,
                    conv,
                    operator_id,
                    owner=Owner.QUEUE,
                    owner_operator_id=None,
                    status=ConversationStatus.QUEUED,
                )
            except NotOwner:
                return  # moved meanwhile
            entry = await self._open_entry(s, conv.id)
            if entry is not None:
                entry.status = HandoffStatus.WAITING
                await s.flush()
            place = await operator_queue.position(s, conv.id)
            notice = Reply(Texts.requeued.format(place=place or 1))
            await self._conv.add_messages(s, conv, [notice], sender=Sender.SYSTEM, now=self._now())
            await s.commit()
        await self._conv.committed(conv, "outbound")
        await self._publish(OperatorEvent("queue", conversation_id, None, operator_id))

    async def _release(
        self, operator_id: int, conversation_id: int, outcome: HandoffOutcome
    ) -> None:
        """The operator lets the chat go: back to the bot, or resolved (NPS)."""
        now = self._now()
        async with self._locked(conversation_id) as (s, conv):
            self._must_own(conv, operator_id)
            await self._update_owned(
                s,
                conv,
                operator_id,
                owner=Owner.BOT,
                owner_operator_id=None,
                status=ConversationStatus.BOT,
            )
            entry = await self._open_entry(s, conv.id)
            if entry is not None:
                entry.status = HandoffStatus.CLOSED
                entry.outcome = outcome
                entry.closed_at = now
            state = DialogState.load(conv.state)
            state.clear_forms()
            state.queued_notice_sent = False
            state.fallbacks = 0
            if outcome is HandoffOutcome.RESOLVED:
                state.active = nps.start_form(entry.id if entry else None, operator_id)
                notices = [Reply(Texts.resolved)]
                bot_says = [nps.question()]
            else:
                notices = []
                bot_says = [Reply(Texts.returned, buttons=MENU)]
            if notices:
                await self._conv.add_messages(s, conv, notices, sender=Sender.SYSTEM, now=now)
            await self._conv.add_messages(
                s, conv, bot_says, sender=Sender.BOT, now=now, conversation={"state": state.dump()}
            )
            await s.commit()
        await self._conv.committed(conv, "outbound")
        await self._publish(
            OperatorEvent(
                "chat", conversation_id, None, operator_id, extra={"outcome": outcome.value}
            )
        )
        await self.drain()


def _entry_view(entry: HandoffQueueEntry) -> EntryView:
    return EntryView(
        id=entry.id,
        status=entry.status,
        reason=entry.reason,
        summary=entry.summary,
        details=dict(entry.details or {}),
        priority=entry.priority,
        created_at=entry.created_at,
        taken_at=entry.taken_at,
        operator_id=entry.operator_id,
    )


__all__ = [
    "OPERATOR_EVENTS_TOPIC",
    "AlreadyTaken",
    "ChatItem",
    "ChatView",
    "EmptyText",
    "NotOwner",
    "OperatorError",
    "OperatorEvent",
    "OperatorService",
    "OperatorUnavailable",
    "QueueItem",
    "TeamMember",
    "UnknownConversation",
    "UnknownOperator",
]
