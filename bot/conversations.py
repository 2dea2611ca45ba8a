"""The conversation service: the one writer of conversations.

Customer turns (the pipeline), operator replies and notices (appeal status
changes) all go through it, so that every message of a conversation is
written the same way: the message rows, their outbox rows (written SENT when
the channel shows replies inline, PENDING for the delivery worker otherwise),
the conversation's status, and after the commit an event on the
``conversations`` topic plus the delivery hook.

It also owns the two things there must be exactly one of: taking the per-chat
lock and the SQLite write gate (SQLite has one writer: queueing here beats its
busy-timeout polling).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from sqlalchemy import Select, and_, bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from config import Settings
from dialogs.messages import Button, Reply
from handlers import pii
from storage.db import COMMITS_ALONE, ONE_STATEMENT, begin_at_first_write, flush_pending
from storage.locks import LockStore
from storage.models import (
    Account,
    ChannelIdentity,
    Conversation,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    InboxEntry,
    Message,
    OutboxEntry,
    Sender,
)
from storage.pubsub import PubSub, PubSubError

if TYPE_CHECKING:
    from bot.channels.base import ChannelAdapter

log = logging.getLogger(__name__)

EVENTS_TOPIC: Final = "conversations"
# How far back the last reply's buttons are looked for.
_BUTTONS_LOOKBACK: Final = 20

HistorySender = Literal["customer", "bot", "operator"]
_SENDER_NAMES: Final[Mapping[Sender, HistorySender]] = {
    Sender.CUSTOMER: "customer",
    Sender.BOT: "bot",
    Sender.OPERATOR: "operator",
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ConversationError(Exception):
    """Root of the conversation service's errors."""


class ClaimLost(ConversationError):
    """The inbox entry was claimed by another run before this one could write:
    nothing of this run was written (it is a duplicate)."""


class UnknownConversation(ConversationError):
    """No conversation for that channel and chat (nobody ever wrote from it)."""


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One stored message as a channel shows it again (the widget's history)."""

    id: int
    sender: HistorySender
    text: str
    buttons: tuple[Button, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class ConversationEvent:
    """Published on the ``conversations`` topic after a commit (the console listens)."""

    kind: Literal["turn", "outbound"]
    conversation_id: int
    channel: str
    chat_id: str
    status: ConversationStatus

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "conversation_id": self.conversation_id,
                "channel": self.channel,
                "chat_id": self.chat_id,
                "status": self.status.value,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> ConversationEvent:
        data = json.loads(raw)
        return cls(
            kind=data["kind"],
            conversation_id=int(data["conversation_id"]),
            channel=str(data["channel"]),
            chat_id=str(data["chat_id"]),
            status=ConversationStatus(data["status"]),
        )


@dataclass(frozen=True, slots=True)
class Posted:
    """What :meth:`ConversationService.post` wrote."""

    conversation_id: int
    message_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CustomerLine:
    """The customer's message as it is stored (text already redacted)."""

    text: str
    at: datetime
    button: str | None = None  # the pressed button's payload
    intent: str | None = None


@dataclass(frozen=True, slots=True)
class InboxClaim:
    """Mark an inbox entry processed, once: committed with the turn."""

    entry_id: int
    now: datetime
    error: str | None = None

    def params(self) -> dict[str, Any]:
        return {"claim_id": self.entry_id, "claimed_at": self.now, "claim_error": self.error}

    async def run(self, session: AsyncSession) -> bool:
        """False if another run has claimed it already."""
        result = await session.execute(_CLAIM, self.params())
        return bool(getattr(result, "rowcount", 0) == 1)


@dataclass(slots=True)
class Loaded:
    """A conversation as a turn works on it. ``account`` is held for the
    turn so that the session's (weak) identity map keeps it: every
    ``session.get(Account, ...)`` of the turn is then answered without SQL."""

    identity: ChannelIdentity
    conversation: Conversation
    account: Account | None
    # load(claim_later=True): the claim goes out with the turn's writes.
    pending_claim: InboxClaim | None = None


OnCommitted = Callable[[int], Awaitable[None]]
# Runs inside :meth:`ConversationService.post`'s transaction, before the writes.
BeforePost = Callable[[AsyncSession, Conversation], Awaitable[None]]

_NO_GATE: Final = contextlib.nullcontext()


class ConversationService:
    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        locks: LockStore,
        pubsub: PubSub,
        channels: Mapping[str, ChannelAdapter] | None = None,
        on_committed: OnCommitted | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.sessions = session_factory
        self._locks = locks
        self.pubsub = pubsub
        self._channels: Mapping[str, ChannelAdapter] = channels or {}
        self._on_committed = on_committed
        self._clock = clock
        self._sqlite_writes: asyncio.Lock | None = asyncio.Lock() if settings.is_sqlite else None

    @property
    def engine(self) -> AsyncEngine:
        bind = self.sessions.kw["bind"]
        assert isinstance(bind, AsyncEngine)
        return bind

    # ------------------------------------------------------------ plumbing

    def lock(
        self, channel: str, chat_id: str, *, wait_seconds: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """The chat's lock: one writer per conversation, across processes
        (``wait_seconds`` overrides the store's wait; 0: only if free now)."""
        return self._locks.conversation(channel, chat_id, wait_seconds=wait_seconds)

    def write_gate(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Held around every write transaction (a no-op except on SQLite)."""
        return self._sqlite_writes if self._sqlite_writes is not None else _NO_GATE

    @contextlib.asynccontextmanager
    async def transaction(self, *, lazy_begin: bool = False) -> AsyncIterator[AsyncSession]:
        """A session for one write transaction, behind the write gate. The
        caller commits; leaving the block without a commit rolls back.
        ``lazy_begin``: the transaction begins at its first write
        (:func:`storage.db.begin_at_first_write`, PostgreSQL)."""
        async with self.write_gate(), self.sessions() as session:
            if not lazy_begin:
                yield session
                return
            async with begin_at_first_write(session):
                yield session

    def shows_inline(self, channel: str) -> bool:
        adapter = self._channels.get(channel)
        return adapter is not None and adapter.inline_replies

    # ------------------------------------------------------ a conversation

    @property
    def _postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def load(
        self,
        session: AsyncSession,
        channel: str,
        chat_id: str,
        user_id: str,
        display_name: str | None = None,
        *,
        claim: InboxClaim | None = None,
        claim_later: bool = False,
    ) -> Loaded | None:
        """The chat's conversation, identity and linked account, created on
        the first message; a closed conversation opens again. Call with the
        chat's lock held.

        With ``claim``, its inbox entry is marked processed in the same
        transaction first (on PostgreSQL in the same statement); None when
        another run has done that already (nothing is loaded then). With
        ``claim_later`` too, on PostgreSQL the entry is only read here (None
        if processed already) and claimed by :meth:`add_messages` in the
        statement that writes the turn (``Loaded.pending_claim``), so that a
        turn with no other write needs no transaction of its own."""
        where = {"conv_channel": channel, "conv_chat_id": chat_id}
        row: Any
        pending: InboxClaim | None = None
        if claim is not None and claim_later and self._postgres:
            params = {**where, "claim_id": claim.entry_id}
            got = (await session.execute(_LOAD_UNCLAIMED, params)).first()
            if got is None or got[0] is not None:
                return None
            row = got[1:] if got[1] is not None else None
            pending = claim
        elif claim is not None and self._postgres:
            got = (await session.execute(_CLAIM_AND_LOAD, {**where, **claim.params()})).first()
            if got is None:
                return None
            row = got[1:] if got[1] is not None else None
        else:
            if claim is not None and not await claim.run(session):
                return None
            row = (await session.execute(_LOAD, where)).first()
        return await self._loaded(session, row, channel, chat_id, user_id, display_name, pending)

    async def record_and_load(
        self,
        session: AsyncSession,
        entry: Mapping[str, Any],
        now: datetime,
        user_id: str,
        display_name: str | None = None,
    ) -> Loaded | None:
        """PostgreSQL: insert the inbox ``entry`` (its columns: channel,
        platform_message_id, chat_id, body, received_at) and load the chat's
        conversation as :meth:`load` does, in ONE statement. The entry is
        committed by that statement alone, whatever the turn does next; its
        claim goes out with the turn's writes (``Loaded.pending_claim``).
        None for a duplicate delivery (nothing written or loaded). Call
        with the chat's lock held, as the first statement of a block where
        :func:`storage.db.defers_begin`."""
        channel, chat_id = entry["channel"], entry["chat_id"]
        params = {**entry, "conv_channel": channel, "conv_chat_id": chat_id}
        got = (
            await session.execute(_RECORD_AND_LOAD, params, execution_options=_COMMITS_ALONE)
        ).first()
        if got is None:
            return None
        row = got[1:] if got[1] is not None else None
        claim = InboxClaim(int(got[0]), now)
        return await self._loaded(session, row, channel, chat_id, user_id, display_name, claim)

    async def _loaded(
        self,
        session: AsyncSession,
        row: Any,
        channel: str,
        chat_id: str,
        user_id: str,
        display_name: str | None,
        pending: InboxClaim | None,
    ) -> Loaded:
        if row is not None and row[1].user_id == user_id:
            # The usual case: a returning customer in their chat.
            conv, identity, account = row
            if conv.status is ConversationStatus.CLOSED:
                self.set_status(conv, ConversationStatus.BOT)
            return Loaded(identity, conv, account, pending)
        loaded = await self._load_slowly(session, channel, chat_id, user_id, display_name)
        loaded.pending_claim = pending
        return loaded

    async def _load_slowly(
        self,
        session: AsyncSession,
        channel: str,
        chat_id: str,
        user_id: str,
        display_name: str | None,
    ) -> Loaded:
        identity = await session.scalar(
            select(ChannelIdentity).where(
                ChannelIdentity.channel == channel, ChannelIdentity.user_id == user_id
            )
        )
        if identity is None:
            identity = ChannelIdentity(
                channel=channel,
                user_id=user_id,
                display_name=(display_name or None) and display_name[:200],
                failed_link_attempts=0,
            )
            try:
                async with session.begin_nested():
                    session.add(identity)
            except IntegrityError:
                # The same person wrote from another chat at the same moment.
                identity = await session.scalar(
                    select(ChannelIdentity).where(
                        ChannelIdentity.channel == channel, ChannelIdentity.user_id == user_id
                    )
                )
                assert identity is not None
        conv = await session.scalar(
            select(Conversation).where(
                Conversation.channel == channel, Conversation.chat_id == chat_id
            )
        )
        if conv is None:
            # The conversation lock is held: nobody else creates this row now.
            conv = Conversation(
                channel=channel,
                chat_id=chat_id,
                identity_id=identity.id,
                status=ConversationStatus.BOT,
                state={},
            )
            session.add(conv)
            await session.flush()  # its id is needed for the messages
        elif conv.status is ConversationStatus.CLOSED:
            self.set_status(conv, ConversationStatus.BOT)
        account = None
        if identity.current_account_id is not None:
            account = await session.get(Account, identity.current_account_id)
        return Loaded(identity, conv, account)

    def set_status(self, conv: Conversation, status: ConversationStatus) -> None:
        """Change a conversation's status (written with the transaction)."""
        conv.status = status

    # ------------------------------------------------------------ messages

    async def add_messages(
        self,
        session: AsyncSession,
        conv: Conversation,
        replies: Sequence[Reply],
        *,
        sender: Sender,
        now: datetime,
        customer: CustomerLine | None = None,
        conversation: Mapping[str, Any] | None = None,
        claim: InboxClaim | None = None,
    ) -> list[int]:
        """Write the customer's message (if any) and ``replies`` from
        ``sender``, with an outbox row per reply, and set the ``conversation``
        columns given (its state...): on PostgreSQL in one statement, else
        in three, whatever the number of replies. The replies' message ids,
        in order. With ``claim`` (``Loaded.pending_claim``), the inbox entry
        is claimed with them (in the same statement on PostgreSQL); if another
        run has claimed it, nothing is written and :class:`ClaimLost` raised."""
        if replies:
            # What is stored and sent: a customer's SNILS or phone never.
            texts = await pii.redact_outbound(session, self.settings, [r.text for r in replies])
            replies = [dataclasses.replace(r, text=t) for t, r in zip(texts, replies, strict=True)]
        rows: list[dict[str, Any]] = []
        if customer is not None:
            rows.append(
                {
                    "conversation_id": conv.id,
                    "direction": Direction.IN,
                    "sender": Sender.CUSTOMER,
                    "text": customer.text,
                    "payload": {"button": customer.button} if customer.button else None,
                    "intent": customer.intent[:40] if customer.intent else None,
                    "created_at": customer.at,
                }
            )
        rows.extend(
            {
                "conversation_id": conv.id,
                "direction": Direction.OUT,
                "sender": sender,
                "text": reply.text,
                "payload": reply.to_json() if reply.buttons else None,
                "intent": None,
                "created_at": now,
            }
            for reply in replies
        )
        inline = self.shows_inline(conv.channel)
        if replies and self._postgres:
            bodies = [outbox_body(reply, sender) for reply in replies]
            return await self._add_in_one_statement(
                session, conv, rows, bodies, conversation or {}, inline=inline, now=now, claim=claim
            )
        if claim is not None and not await claim.run(session):
            raise ClaimLost("the inbox entry was claimed by another run")
        for name, value in (conversation or {}).items():
            setattr(conv, name, value)  # written by the flush at commit
        if not rows:
            return []
        if not replies:
            await session.execute(insert(Message), rows)
            return []
        ids = list(
            (
                await session.execute(
                    insert(Message).returning(Message.id, sort_by_parameter_order=True), rows
                )
            ).scalars()
        )
        out_ids = ids[len(rows) - len(replies) :]
        await session.execute(
            insert(OutboxEntry),
            [
                {
                    "conversation_id": conv.id,
                    "message_id": message_id,
                    "channel": conv.channel,
                    "chat_id": conv.chat_id,
                    "body": outbox_body(reply, sender),
                    # A channel that shows replies inline has shown them.
                    "status": DeliveryStatus.SENT if inline else DeliveryStatus.PENDING,
                    "attempts": 1 if inline else 0,
                    "next_attempt_at": now,
                    "sent_at": now if inline else None,
                    "last_error": None,
                    "created_at": now,
                }
                for reply, message_id in zip(replies, out_ids, strict=True)
            ],
        )
        return out_ids

    async def _add_in_one_statement(
        self,
        session: AsyncSession,
        conv: Conversation,
        rows: list[dict[str, Any]],
        bodies: list[dict[str, object]],
        values: Mapping[str, Any],
        *,
        inline: bool,
        now: datetime,
        claim: InboxClaim | None = None,
    ) -> list[int]:
        """PostgreSQL: the messages, their outbox rows, the conversation's
        new state and the inbox claim in ONE statement of a fixed shape (rows
        travel as arrays), so that it is compiled and prepared once. Alone in
        its transaction it commits itself (``ONE_STATEMENT``)."""
        unknown = set(values) - {"state", "last_customer_message_at"}
        assert not unknown, f"not written in one statement: {unknown}"
        params: dict[str, Any] = {
            "conversation_id": conv.id,
            "directions": [r["direction"].value for r in rows],
            "senders": [r["sender"].value for r in rows],
            "texts": [r["text"] for r in rows],
            "payloads": [None if r["payload"] is None else json.dumps(r["payload"]) for r in rows],
            "intents": [r["intent"] for r in rows],
            "created": [r["created_at"] for r in rows],
            "bodies": [json.dumps(body) for body in bodies],
            "channel": conv.channel,
            "chat_id": conv.chat_id,
            "status": (DeliveryStatus.SENT if inline else DeliveryStatus.PENDING).value,
            "attempts": 1 if inline else 0,
            "now": now,
            "sent_at": now if inline else None,
            "set_state": "state" in values,
            "state": json.dumps(values.get("state")),
            "set_last": "last_customer_message_at" in values,
            "last_at": values.get("last_customer_message_at"),
            "claim_id": None,
            "claimed_at": None,
            "claim_error": None,
        }
        if claim is not None:
            params.update(claim.params())
        # Pending ORM changes first (a reopened conversation's status...): the
        # statement may be the block's only write and commit by itself.
        await flush_pending(session)
        # On the session's connection (its transaction, if any): a text
        # statement needs none of the ORM's execution path.
        connection = await session.connection()
        result = await connection.execute(_PG_WRITE, params, execution_options=_ONE_STATEMENT)
        ids = sorted(result.scalars())
        if not ids:
            raise ClaimLost("the inbox entry was claimed by another run")
        for name, value in values.items():
            # Already written: the ORM object learns it without a second UPDATE.
            set_committed_value(conv, name, value)
        return ids

    async def committed(
        self, conv: Conversation, kind: Literal["turn", "outbound"], *, deliver: bool = True
    ) -> None:
        """After a commit: publish the event and hand the new rows to delivery.
        Neither may fail the caller: the rows are committed, the sweep sends them."""
        event = ConversationEvent(kind, conv.id, conv.channel, conv.chat_id, conv.status)
        try:
            await self.pubsub.publish(EVENTS_TOPIC, event.to_json())
        except PubSubError as exc:
            log.warning("conversation event not published (%s)", type(exc).__name__)
        if deliver and self._on_committed is not None:
            try:
                await self._on_committed(conv.id)
            except Exception:
                log.exception("on_committed failed for conversation %s", conv.id)

    async def post(
        self,
        channel: str,
        chat_id: str,
        replies: Sequence[Reply],
        *,
        sender: Sender = Sender.OPERATOR,
        operator_id: int | None = None,
        before: BeforePost | None = None,
    ) -> Posted:
        """Write messages from ``sender`` (an operator, a notice) into the
        chat's conversation and deliver them, in order with the bot's own
        replies (the chat's lock is held while they are written).

        ``operator_id`` marks the operator who wrote them; ``before`` runs
        in the same transaction under the lock first (an ownership check
        that raises to write nothing)."""
        now = self._clock()
        async with self.lock(channel, chat_id), self.transaction() as session:
            conv = await session.scalar(
                select(Conversation).where(
                    Conversation.channel == channel, Conversation.chat_id == chat_id
                )
            )
            if conv is None:
                raise UnknownConversation(f"no {channel} conversation for that chat")
            if before is not None:
                await before(session, conv)
            ids = await self.add_messages(session, conv, replies, sender=sender, now=now)
            if operator_id is not None and ids:
                await session.execute(
                    update(Message)
                    .where(Message.id.in_(ids))
                    .values(operator_id=operator_id)
                    .execution_options(synchronize_session=False)
                )
            await session.commit()
        await self.committed(conv, "outbound")
        return Posted(conv.id, tuple(ids))

    # -------------------------------------------------------- what adapters read

    async def history(self, channel: str, chat_id: str, limit: int) -> list[HistoryItem]:
        """The chat's last ``limit`` messages, oldest first."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(
                        Message.id,
                        Message.sender,
                        Message.text,
                        Message.payload,
                        Message.created_at,
                    )
                    .join(Conversation, Conversation.id == Message.conversation_id)
                    .where(Conversation.channel == channel, Conversation.chat_id == chat_id)
                    .order_by(Message.id.desc())
                    .limit(limit)
                )
            ).all()
        return [
            HistoryItem(
                id=m_id,
                sender=_SENDER_NAMES.get(sender, "bot"),
                text=text,
                buttons=() if sender is Sender.CUSTOMER else _buttons(payload),
                at=at,
            )
            for m_id, sender, text, payload, at in reversed(rows)
        ]

    async def last_buttons(self, channel: str, chat_id: str) -> tuple[Button, ...]:
        """The buttons of the bot's last answer (its last reply that had any,
        since the customer last wrote): what a typed "2" or label chooses."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Message.direction, Message.payload)
                    .join(Conversation, Conversation.id == Message.conversation_id)
                    .where(Conversation.channel == channel, Conversation.chat_id == chat_id)
                    .order_by(Message.id.desc())
                    .limit(_BUTTONS_LOOKBACK)
                )
            ).all()
        for direction, payload in rows:
            if direction is Direction.IN:
                break
            buttons = _buttons(payload)
            if buttons:
                return buttons
        return ()


# Built once, with parameters: a turn neither builds nor keys them again.
# Their names are unlike any column's: an UPDATE would take those as SET values.
_CLAIM_ENTRY: Final = (
    update(InboxEntry)
    .where(InboxEntry.id == bindparam("claim_id"), InboxEntry.processed_at.is_(None))
    .values(processed_at=bindparam("claimed_at"), error=bindparam("claim_error"))
)
_CLAIM: Final = _CLAIM_ENTRY.execution_options(synchronize_session=False)
_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


def _with_conversation(query: _Query) -> _Query:
    """``query`` outer-joined to the conversation of (:conv_channel,
    :conv_chat_id), its identity and that identity's current account."""
    return (
        query.outerjoin(
            Conversation,
            and_(
                Conversation.channel == bindparam("conv_channel"),
                Conversation.chat_id == bindparam("conv_chat_id"),
            ),
        )
        .outerjoin(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
        .outerjoin(Account, Account.id == ChannelIdentity.current_account_id)
    )


_LOAD: Final = (
    select(Conversation, ChannelIdentity, Account)
    .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
    .outerjoin(Account, Account.id == ChannelIdentity.current_account_id)
    .where(
        Conversation.channel == bindparam("conv_channel"),
        Conversation.chat_id == bindparam("conv_chat_id"),
    )
)
# PostgreSQL: one round trip for both. The claim is a data-modifying CTE and
# the conversation is outer-joined to it, so a claimed entry of a new chat
# still returns a row (and an entry claimed already returns none).
_CLAIMED: Final = _CLAIM_ENTRY.returning(InboxEntry.id).cte("claimed")
_CLAIM_AND_LOAD: Final = _with_conversation(
    select(_CLAIMED.c.id, Conversation, ChannelIdentity, Account).select_from(_CLAIMED)
)

# PostgreSQL, load(claim_later=True): the entry is read, not claimed (a plain
# SELECT, which needs no transaction); a processed entry returns processed_at.
_LOAD_UNCLAIMED: Final = _with_conversation(
    select(InboxEntry.processed_at, Conversation, ChannelIdentity, Account).select_from(InboxEntry)
).where(InboxEntry.id == bindparam("claim_id"))
_ONE_STATEMENT: Final = {ONE_STATEMENT: True}
_COMMITS_ALONE: Final = {COMMITS_ALONE: True}

# PostgreSQL, record_and_load: the inbox insert is a data-modifying CTE (a
# duplicate inserts nothing and returns no row); the conversation is outer-
# joined to it, so the new entry of a new chat still returns a row.
_RECORDED: Final = (
    postgresql.insert(InboxEntry)
    .values(
        {
            name: bindparam(name)
            for name in ("channel", "platform_message_id", "chat_id", "body", "received_at")
        }
    )
    .on_conflict_do_nothing(index_elements=["channel", "platform_message_id"])
    .returning(InboxEntry.id)
    .cte("recorded")
)
_RECORD_AND_LOAD: Final = _with_conversation(
    select(_RECORDED.c.id, Conversation, ChannelIdentity, Account).select_from(_RECORDED)
)

# The outbox bodies (Reply.to_json()) travel as an array too, matched to the
# new outbound messages by their order. Enum columns hold their values. With
# a claim (:claim_id not null) nothing is written unless it is this run's.
_PG_WRITE: Final = text(
    """
WITH claimed AS (
    UPDATE inbox SET processed_at = CAST(:claimed_at AS timestamptz),
                     error = CAST(:claim_error AS varchar)
    WHERE id = CAST(:claim_id AS bigint) AND processed_at IS NULL
    RETURNING id
), go AS (
    SELECT CAST(:claim_id AS bigint) IS NULL OR EXISTS (SELECT 1 FROM claimed) AS ok
), new_messages AS (
    INSERT INTO messages (conversation_id, direction, sender, text, payload, intent, created_at)
    SELECT CAST(:conversation_id AS bigint), u.direction, u.sender, u.text,
           CAST(u.payload AS jsonb), u.intent, u.created_at
    FROM unnest(
        CAST(:directions AS varchar[]), CAST(:senders AS varchar[]), CAST(:texts AS text[]),
        CAST(:payloads AS text[]), CAST(:intents AS varchar[]), CAST(:created AS timestamptz[])
    ) WITH ORDINALITY AS u(direction, sender, text, payload, intent, created_at, n)
    WHERE (SELECT ok FROM go)
    ORDER BY u.n
    RETURNING id, direction
), out_messages AS (
    SELECT id, row_number() OVER (ORDER BY id) AS n FROM new_messages WHERE direction = 'out'
), conversation_update AS (
    UPDATE conversations SET
        state = CASE WHEN CAST(:set_state AS boolean)
                     THEN CAST(:state AS jsonb) ELSE state END,
        last_customer_message_at = CASE WHEN CAST(:set_last AS boolean)
                     THEN CAST(:last_at AS timestamptz) ELSE last_customer_message_at END,
        updated_at = now()
    WHERE id = CAST(:conversation_id AS bigint) AND (SELECT ok FROM go)
)
INSERT INTO outbox (conversation_id, message_id, channel, chat_id, body, status, attempts,
                    next_attempt_at, sent_at, created_at)
SELECT CAST(:conversation_id AS bigint), m.id, CAST(:channel AS varchar),
       CAST(:chat_id AS varchar), CAST(b.body AS jsonb),
       CAST(:status AS varchar), CAST(:attempts AS integer), CAST(:now AS timestamptz),
       CAST(:sent_at AS timestamptz), CAST(:now AS timestamptz)
FROM out_messages AS m
JOIN unnest(CAST(:bodies AS text[])) WITH ORDINALITY AS b(body, n) ON b.n = m.n
ORDER BY m.id
RETURNING message_id
"""
)


def outbox_body(reply: Reply, sender: Sender) -> dict[str, Any]:
    """An outbox row's body: the reply, and who wrote it unless the bot did
    (the widget labels an operator's messages)."""
    body = reply.to_json()
    if sender is not Sender.BOT:
        body["sender"] = sender.value
    return body


def _buttons(payload: dict[str, Any] | None) -> tuple[Button, ...]:
    raw = (payload or {}).get("buttons") or []
    if not isinstance(raw, list):
        return ()
    return tuple(
        Button(title=str(b.get("title", "")), payload=str(b.get("payload", "")))
        for b in raw
        if isinstance(b, dict)
    )
