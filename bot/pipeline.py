"""The path of one inbound message (shared/design.md, "The path of one message").

A chain of small steps in one order, aiogram's middleware shape: each step
gets the turn and the rest of the chain, and either calls it or finishes the
turn itself. The order is the contract:

1. deliver: once everything below is done and the lock released, hand the
   committed replies to delivery and publish the conversation's event.
2. inbox: record the message, unique per channel + platform message id; a
   duplicate delivery stops here, so nothing is answered twice. A storage
   failure after this is :class:`StoredUnanswered` (do not send it again).
   On PostgreSQL, when the chat's lock is free at once (the usual case),
   the inbox step takes it first and the entry is written by the
   conversation step's first statement, with the load (committed by that
   statement alone): one round trip less. A busy lock, or a lock store that
   fails, keeps the order written here.
3. lock: the chat's lock, so two messages of one chat never run at once,
   across processes too; the state is read only under it (aiogram#1012).
4. errors: a storage failure propagates as :class:`StorageUnavailable` with
   the inbox entry left unprocessed (:meth:`Pipeline.replay_unprocessed`
   runs it again later); any other error becomes an apology and a handoff.
5. conversation: ONE transaction for the rest. The inbox entry is claimed
   as processed (committed only with the turn; a replay that lost the race
   stops here) and the conversation, identity, linked account and dialog
   state are loaded: on PostgreSQL both in one statement.
6. persist: wraps the steps after it and writes what they decided, even
   when one of them finished early: the customer's message, the replies and
   their outbox rows, the new state (on PostgreSQL one statement); one commit.
7. ownership gate: the bot answers only a conversation it owns
   (``Conversation.owner``). While an operator owns it the message is only
   stored (and the operators told, after the commit); while the queue owns
   it, "отмена" leaves the queue, a question about the queue gets the
   customer's place, and the queue notice is said once.
8. validate: empty and oversized messages are refused, in one wording
   (:func:`refusal`, which the widget asks too).
9. understand: a button payload is parsed, anything else goes to the NLU.
10. engine: one step of the dialog engine; a handoff it asks for is queued.

Message texts are personal data: never logged, SNILS and phone numbers
redacted before they are stored (handlers.pii), and the inbox keeps the text
and the button payload encrypted.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.conversations import (
    ClaimLost,
    ConversationService,
    CustomerLine,
    InboxClaim,
    Loaded,
    OnCommitted,
)
from config import Settings
from dialogs import format as fmt
from dialogs.context import FlowContext
from dialogs.engine import DialogEngine
from dialogs.forms import is_cancel
from dialogs.messages import Attachment, Button, InboundMessage, Reply
from dialogs.state import DialogState
from dialogs.texts import MENU
from handlers import handoff, pii
from handlers import queue as operator_queue
from nlu.base import NluParser, NluUnavailable
from nlu.payload import parse_payload
from nlu.types import FALLBACK_INTENT, Intent, ParseResult
from storage.crypto import PersonalDataVault
from storage.db import defers_begin
from storage.errors import StorageUnavailable as StorageUnavailable  # re-exported
from storage.errors import is_storage_failure
from storage.locks import LockStore, LockTimeout
from storage.models import InboxEntry, Owner, Sender
from storage.pubsub import MemoryPubSub, PubSub

if TYPE_CHECKING:
    from bot.channels.base import ChannelAdapter

log = logging.getLogger(__name__)

# A replay pass tries a chat's lock this long, then leaves the chat for the
# next pass: waiting the full lock wait per busy chat made one pass take
# minutes under load, and the entries behind it went unanswered meanwhile.
REPLAY_LOCK_WAIT_SECONDS: Final = 0.2

ERROR_REASON: Final = "error"
# A form left unanswered this long is forgotten: a customer coming back days
# later starts afresh instead of being asked "Передать показание ...?".
FORM_TIMEOUT: Final = timedelta(hours=12)
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
ERROR_PRIORITY: Final = 1


class Texts:
    empty = "Напишите, пожалуйста, вопрос текстом: картинки и пустые сообщения я пока не понимаю."
    too_long = (
        "Сообщение слишком длинное: я читаю до {limit} символов. "
        "Напишите, пожалуйста, короче, в чём вопрос."
    )
    nlu_unavailable = (
        "Извините, сейчас я плохо понимаю свободный текст. Выберите, пожалуйста, тему кнопкой."
    )
    apology = (
        "Извините, у меня что-то пошло не так. Я передал разговор оператору, "
        "он ответит здесь же, в этом чате."
    )
    apology_closed = (
        "Извините, у меня что-то пошло не так. Я передал разговор оператору: "
        "сейчас контакт-центр закрыт, оператор ответит {when}."
    )
    callback = "Заявка на обратный звонок: {number}."
    callback_description = "Сбой бота, клиент ждёт ответа оператора.\n{summary}"
    queued_notice = (
        "Вы в очереди, оператор скоро ответит здесь же. Если вопрос уже решён, напишите «отмена»."
    )
    queued_place = (
        "Вы в очереди, ваше место: {place}. Оператор ответит здесь же. "
        "Если вопрос уже решён, напишите «отмена»."
    )
    place_after_handoff = (
        "Ваше место в очереди: {place}. Если вопрос решится раньше, напишите «отмена»."
    )
    leave_button = "Выйти из очереди"
    queue_left = "Хорошо, вызов оператора отменил. Чем могу помочь?"


# The queue notice's button; "отмена" and "выйти из очереди" do the same.
LEAVE_QUEUE_PAYLOAD: Final = '/deny{"queue":"leave"}'
_LEAVE_QUEUE: Final = re.compile(r"выйти\s+из\s+очереди|не\s+нужен\s+оператор", re.IGNORECASE)
# A waiting customer asking about the queue gets their place again.
_ASKS_PLACE: Final = re.compile(
    r"очеред|сколько\s+(?:ещ[её]\s+)?ждать|долго\s+ещ[её]|какое\s+место|когда\s+ответ",
    re.IGNORECASE,
)


class PipelineError(Exception):
    """Root of the pipeline's errors."""


class ReplayIncomplete(LockTimeout):
    """A replay pass skipped conversations whose lock was held; retry later."""

    def __init__(self, done: int, busy: int) -> None:
        super().__init__(f"replayed {done}; {busy} conversations busy")
        self.done = done
        self.busy = busy


class StoredUnanswered(StorageUnavailable):
    """The inbox holds the message but its turn failed: a replay answers it, so
    the sender must not be asked to send it again. A plain StorageUnavailable
    from :meth:`Pipeline.handle` means it was never stored (resend it, same id)."""


@dataclass(frozen=True)
class HandleResult:
    duplicate: bool
    replies: tuple[Reply, ...]
    conversation_id: int | None
    # The turn put the conversation in the operators' queue (committed).
    handed_off: bool = False


DUPLICATE: Final = HandleResult(duplicate=True, replies=(), conversation_id=None)


@dataclass(frozen=True, slots=True)
class TurnReport:
    """What the operators' side hears of a committed turn (bot/operators)."""

    conversation_id: int
    owner: Owner
    owner_operator_id: int | None
    queued: bool  # this turn put the conversation in the queue
    left_queue: bool  # the customer left the queue


AfterTurn = Callable[[TurnReport], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message cannot be read, and what the customer is told."""

    code: str  # "empty", "too_long"
    text: str


def refusal(
    msg: InboundMessage, settings: Settings, *, form_active: bool = False
) -> Refusal | None:
    """The one check of a message's size and emptiness (every channel). A
    file without text is for the form in progress (an appeal's photo)."""
    if not msg.text.strip() and msg.payload is None and not (msg.attachments and form_active):
        return Refusal("empty", Texts.empty)
    limit = settings.max_message_chars
    if len(msg.text) > limit:
        return Refusal("too_long", Texts.too_long.format(limit=limit))
    return None


# Classified by storage (storage/errors.py), where the drivers' errors are known.
_is_storage_failure = is_storage_failure


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _record_statement(insert: Callable[..., Any]) -> Any:
    """INSERT of an inbox entry that skips a duplicate delivery (no row back)."""
    columns = ("channel", "platform_message_id", "chat_id", "body", "received_at")
    return (
        insert(InboxEntry)
        .values({name: bindparam(name) for name in columns})
        .on_conflict_do_nothing(index_elements=["channel", "platform_message_id"])
        .returning(InboxEntry.id)
    )


_RECORD_PG: Final = _record_statement(postgresql.insert)
_RECORD_SQLITE: Final = _record_statement(sqlite.insert)


@dataclass(slots=True)
class TurnContext:
    """One message on its way through the chain; steps fill it in."""

    msg: InboundMessage
    now: datetime
    entry_id: int = 0
    session: AsyncSession | None = None
    loaded: Loaded | None = None
    state: DialogState = field(default_factory=DialogState)
    parse: ParseResult | None = None
    nlu_down: bool = False
    intent: str | None = None
    replies: list[Reply] = field(default_factory=list)
    handed_off: bool = False
    left_queue: bool = False
    # How long to wait for the chat's lock (None: the store's wait). A replay
    # does not wait: a busy chat is left for the next pass.
    lock_wait: float | None = None
    # The inbox step took the chat's lock itself (it was free): the entry is
    # then written by the conversation step's first statement.
    locked: bool = False
    record: dict[str, Any] | None = None

    @property
    def db(self) -> AsyncSession:
        assert self.session is not None, "used before the conversation step"
        return self.session

    @property
    def conversation(self) -> Loaded:
        assert self.loaded is not None, "used before the conversation step"
        return self.loaded


Next = Callable[[TurnContext], Awaitable[HandleResult]]


class Step(Protocol):
    def __call__(self, turn: TurnContext, call_next: Next) -> Awaitable[HandleResult]: ...


def _chain(steps: Sequence[Step], endpoint: Next) -> Next:
    """``steps[0]`` outermost: each gets the turn and the rest of the chain.
    No wrapper coroutine between two steps: every resumption of a turn (one
    per round trip) passes through each frame of the chain."""
    handler = endpoint
    for step in reversed(steps):
        handler = functools.partial(step, call_next=handler)
    return handler


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        nlu: NluParser,
        locks: LockStore,
        engine: DialogEngine,
        vault: PersonalDataVault,
        channels: Mapping[str, ChannelAdapter] | None = None,
        on_committed: OnCommitted | None = None,
        clock: Callable[[], datetime] = _utcnow,
        conversations: ConversationService | None = None,
        pubsub: PubSub | None = None,
        after_turn: AfterTurn | None = None,
    ) -> None:
        self._settings = settings
        # Told of every committed turn (the operator service: events, drain).
        self.after_turn = after_turn
        self._nlu = nlu
        self._engine = engine
        self._vault = vault
        self._clock = clock
        # The container passes its service; tests and benchmarks get one built
        # from the arguments above.
        self.conversations = conversations or ConversationService(
            settings,
            session_factory,
            locks,
            pubsub or MemoryPubSub(),
            channels=channels,
            on_committed=on_committed,
            clock=clock,
        )
        self._autocommit = self.conversations.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._postgres = self.conversations.engine.dialect.name == "postgresql"
        # The order is the contract: see the module docstring.
        turn_steps: list[Step] = [
            self._lock,
            self._errors,
            self._conversation,
            self._persist,
            self._status_gate,
            self._validate,
            self._understand,
        ]
        self._handle = _chain([self._deliver, self._inbox, *turn_steps], self._step_engine)
        self._replay = _chain([self._deliver, *turn_steps], self._step_engine)

    # ------------------------------------------------------------------ API

    async def handle(self, msg: InboundMessage) -> HandleResult:
        """Process one inbound message exactly once (see the module docstring)."""
        clean = _CONTROL.sub("", msg.text)
        if clean != msg.text:
            # NUL and other control characters: PostgreSQL refuses NUL in text.
            msg = dataclasses.replace(msg, text=clean)
        return await self._handle(TurnContext(msg=msg, now=self._clock()))

    def refusal(self, msg: InboundMessage) -> Refusal | None:
        """What the validate step would answer to this message, if anything."""
        return refusal(msg, self._settings)

    async def replay_unprocessed(self, received_before: datetime | None = None) -> int:
        """Run again the inbox entries left unprocessed (after a crash); how many.

        ``received_before`` leaves younger entries alone: a periodic pass in
        one process should not race the turns still running in another. A
        conversation whose lock is held (a live turn elsewhere, or a dead
        process's lock until its TTL) is skipped, not waited on, so one busy
        chat does not hold up the others; :class:`ReplayIncomplete` then says
        how many were left for the next pass.
        """
        query = (
            select(InboxEntry.id, InboxEntry.body)
            .where(InboxEntry.processed_at.is_(None))
            .order_by(InboxEntry.id)
        )
        if received_before is not None:
            query = query.where(InboxEntry.received_at < received_before)
        try:
            async with self.conversations.sessions() as session:
                rows = (await session.execute(query)).all()
        except Exception as exc:
            if _is_storage_failure(exc):
                raise StorageUnavailable("cannot read the inbox") from exc
            raise
        done = 0
        busy: set[tuple[str, str]] = set()
        for entry_id, body in rows:
            msg = self._decode(body)
            chat = (msg.channel, msg.chat_id)
            if chat in busy:
                continue  # its older entry is still waiting: keep the order
            turn = TurnContext(
                msg=msg, now=self._clock(), entry_id=entry_id, lock_wait=REPLAY_LOCK_WAIT_SECONDS
            )
            try:
                result = await self._replay(turn)
            except LockTimeout:
                busy.add(chat)
                continue
            if not result.duplicate:
                done += 1
        if busy:
            raise ReplayIncomplete(done, len(busy))
        return done

    # ---------------------------------------------------------------- steps

    async def _deliver(self, turn: TurnContext, call_next: Next) -> HandleResult:
        result = await call_next(turn)
        if not result.duplicate and turn.loaded is not None:
            conv = turn.loaded.conversation
            await self.conversations.committed(conv, "turn")
            if self.after_turn is not None:
                report = TurnReport(
                    conv.id, conv.owner, conv.owner_operator_id, result.handed_off, turn.left_queue
                )
                try:
                    await self.after_turn(report)
                except Exception:
                    # Committed already: the operators catch up at the next event.
                    log.exception("after_turn failed for conversation %s", conv.id)
        return result

    async def _inbox(self, turn: TurnContext, call_next: Next) -> HandleResult:
        if self._postgres:
            # The usual case, a free lock: taken first, and the entry written
            # in the statement that loads the conversation (one round trip
            # less). A busy lock or a failing lock store: the order below.
            msg = turn.msg
            try:
                async with self.conversations.lock(msg.channel, msg.chat_id, wait_seconds=0):
                    turn.locked = True
                    turn.record = self._entry(msg)
                    return await call_next(turn)
            except (LockTimeout, StorageUnavailable) as exc:
                if turn.locked:
                    if isinstance(exc, LockTimeout):
                        raise
                    if not turn.entry_id:
                        raise StorageUnavailable("cannot record the inbound message") from exc
                    raise StoredUnanswered(str(exc)) from exc
            turn.record = None
        try:
            entry_id = await self._record(turn.msg)
        except Exception as exc:
            if _is_storage_failure(exc):
                raise StorageUnavailable("cannot record the inbound message") from exc
            raise
        if entry_id is None:
            return DUPLICATE
        turn.entry_id = entry_id
        try:
            return await call_next(turn)
        except StorageUnavailable as exc:
            raise StoredUnanswered(str(exc)) from exc

    async def _lock(self, turn: TurnContext, call_next: Next) -> HandleResult:
        if turn.locked:
            return await call_next(turn)  # taken by the inbox step
        async with self.conversations.lock(
            turn.msg.channel, turn.msg.chat_id, wait_seconds=turn.lock_wait
        ):
            return await call_next(turn)

    async def _errors(self, turn: TurnContext, call_next: Next) -> HandleResult:
        try:
            return await call_next(turn)
        except Exception as exc:
            if _is_storage_failure(exc):
                raise StorageUnavailable("the turn could not be stored") from exc
            if not turn.entry_id:
                raise  # not in the inbox: there is nothing to answer for
            log.exception(
                "turn failed: channel=%s inbox_id=%s error=%s",
                turn.msg.channel,
                turn.entry_id,
                type(exc).__name__,
            )
            try:
                return await self._apologise(turn, exc)
            except Exception as again:
                if _is_storage_failure(again):
                    raise StorageUnavailable("the apology could not be stored") from again
                raise

    async def _conversation(self, turn: TurnContext, call_next: Next) -> HandleResult:
        turn.loaded = None
        # The transaction begins at the turn's first write: most turns write
        # only the one statement of the persist step, and send no BEGIN/COMMIT.
        async with self.conversations.transaction(lazy_begin=True) as session:
            turn.session = session
            try:
                msg = turn.msg
                loaded: Loaded | None
                if turn.record is not None and defers_begin(session):
                    # The inbox entry (a duplicate delivery stops here) and the
                    # load: one statement, the entry committed by it alone.
                    loaded = await self.conversations.record_and_load(
                        session, turn.record, turn.now, msg.user_id, msg.display_name
                    )
                    if loaded is None:
                        return DUPLICATE
                    assert loaded.pending_claim is not None
                    turn.entry_id = loaded.pending_claim.entry_id
                else:
                    if turn.record is not None:
                        entry_id = await self._record(msg)
                        if entry_id is None:
                            return DUPLICATE
                        turn.entry_id = entry_id
                    # Checked first: a replay that lost the race does no work.
                    # The claim is written with the turn (on PostgreSQL in its
                    # one statement, which writes nothing if another run
                    # claimed it).
                    loaded = await self.conversations.load(
                        session,
                        msg.channel,
                        msg.chat_id,
                        msg.user_id,
                        msg.display_name,
                        claim=InboxClaim(turn.entry_id, turn.now),
                        claim_later=True,
                    )
                    if loaded is None:
                        return DUPLICATE
                turn.loaded = loaded
                conv = loaded.conversation
                turn.state = DialogState.load(conv.state)
                last = conv.last_customer_message_at
                if last is not None and msg.received_at - last > FORM_TIMEOUT:
                    turn.state.clear_forms()
                return await call_next(turn)
            except ClaimLost:
                turn.loaded = None
                return DUPLICATE  # rolled back: nothing of this run is kept
            finally:
                turn.session = None

    async def _persist(self, turn: TurnContext, call_next: Next) -> HandleResult:
        result = await call_next(turn)
        if result.duplicate:
            return result
        conv = turn.conversation.conversation
        await self.conversations.add_messages(
            turn.db,
            conv,
            turn.replies,
            sender=Sender.BOT,
            now=turn.now,
            customer=self._customer_line(turn.msg, turn.intent),
            conversation={
                "state": turn.state.dump(),
                "last_customer_message_at": turn.msg.received_at,
            },
            claim=turn.conversation.pending_claim,
        )
        await turn.db.commit()
        log.info(
            "turn done: conversation=%s intent=%s replies=%d",
            conv.id,
            turn.intent,
            len(turn.replies),
        )
        return result

    async def _status_gate(self, turn: TurnContext, call_next: Next) -> HandleResult:
        conv = turn.conversation.conversation
        if conv.owner is Owner.BOT:
            return await call_next(turn)
        if conv.owner is Owner.QUEUE:
            msg = turn.msg
            leaving = (
                is_cancel(msg.text)
                or msg.payload == LEAVE_QUEUE_PAYLOAD
                or bool(_LEAVE_QUEUE.search(msg.text))
            )
            if leaving and await handoff.cancel_waiting(turn.db, conv, turn.now):
                turn.replies.append(Reply(Texts.queue_left, buttons=MENU))
                turn.state.queued_notice_sent = False
                turn.left_queue = True
                return self._done(turn)
            if not turn.state.queued_notice_sent or _ASKS_PLACE.search(msg.text):
                turn.replies.append(await self._queue_notice(turn.db, conv.id))
                turn.state.queued_notice_sent = True
        # An operator answers (or will): the bot only stores the message.
        return self._done(turn)

    async def _queue_notice(self, session: AsyncSession, conversation_id: int) -> Reply:
        place = await operator_queue.position(session, conversation_id)
        leave = (Button(Texts.leave_button, LEAVE_QUEUE_PAYLOAD),)
        if place is None:
            return Reply(Texts.queued_notice, buttons=leave)
        return Reply(Texts.queued_place.format(place=place), buttons=leave)

    async def _validate(self, turn: TurnContext, call_next: Next) -> HandleResult:
        refused = refusal(turn.msg, self._settings, form_active=turn.state.active is not None)
        if refused is not None:
            turn.replies.append(Reply(refused.text))
            return self._done(turn)
        return await call_next(turn)

    async def _understand(self, turn: TurnContext, call_next: Next) -> HandleResult:
        msg = turn.msg
        if msg.payload is not None:
            turn.parse = parse_payload(msg.payload)
        if turn.parse is None:
            try:
                turn.parse = await self._nlu.parse(msg.text)
            except NluUnavailable:
                log.warning("NLU unavailable; the turn goes on as a fallback")
                intent = Intent(name=FALLBACK_INTENT, confidence=0.0)
                turn.parse = ParseResult(text=msg.text, intent=intent)
                turn.nlu_down = True
        return await call_next(turn)

    async def _step_engine(self, turn: TurnContext) -> HandleResult:
        assert turn.parse is not None
        loaded = turn.conversation
        ctx = FlowContext(
            session=turn.db,
            settings=self._settings,
            vault=self._vault,
            now=turn.now,
            identity=loaded.identity,
            conversation=loaded.conversation,
            channel=turn.msg.channel,
            attachments=turn.msg.attachments,
        )
        ctx.hold_account(loaded.account)
        before = turn.state
        step = await self._engine.step(ctx, turn.state, turn.parse)
        turn.intent = step.intent
        turn.state = step.state
        if turn.nlu_down and step.state.active is None:
            turn.replies.append(Reply(Texts.nlu_unavailable))
        turn.replies.extend(step.replies)
        if step.handoff is not None:
            conv = loaded.conversation
            number = loaded.account.number if loaded.account is not None else None
            queued = await handoff.enqueue(
                turn.db,
                self._settings,
                conv,
                step.handoff.reason,
                step.handoff.summary,
                turn.now,
                step.handoff.priority,
                details=_details(step.handoff.reason, number, step.state, before),
            )
            turn.state.queued_notice_sent = False
            turn.handed_off = True
            if conv.owner is Owner.QUEUE and not queued.already_queued:
                turn.replies.append(await self._place_notice(turn.db, conv.id))
        return self._done(turn)

    async def _place_notice(self, session: AsyncSession, conversation_id: int) -> Reply:
        """Said once a chat joins the queue: its place, and how to leave."""
        place = await operator_queue.position(session, conversation_id)
        leave = (Button(Texts.leave_button, LEAVE_QUEUE_PAYLOAD),)
        return Reply(Texts.place_after_handoff.format(place=place or 1), buttons=leave)

    def _done(self, turn: TurnContext) -> HandleResult:
        return HandleResult(
            duplicate=False,
            replies=tuple(turn.replies),
            conversation_id=turn.conversation.conversation.id,
            handed_off=turn.handed_off,
        )

    # ---------------------------------------------------------------- inbox

    def _encode(self, msg: InboundMessage) -> dict[str, Any]:
        # Enough to know it was oversized, without storing megabytes.
        text = msg.text[: self._settings.max_message_chars + 1]
        return {
            "channel": msg.channel,
            "chat_id": msg.chat_id,
            "user_id": msg.user_id,
            "text_enc": self._vault.encrypt(text),
            "platform_message_id": msg.platform_message_id,
            "received_at": msg.received_at.isoformat(),
            "payload_enc": self._vault.encrypt(msg.payload) if msg.payload else None,
            "attachments": [
                {"kind": a.kind, "url": a.url, "file_id": a.file_id, "mime_type": a.mime_type}
                for a in msg.attachments
            ],
            "display_name_enc": (
                self._vault.encrypt(msg.display_name) if msg.display_name else None
            ),
        }

    def _decode(self, body: dict[str, Any]) -> InboundMessage:
        name = body.get("display_name_enc")
        return InboundMessage(
            channel=body["channel"],
            chat_id=body["chat_id"],
            user_id=body["user_id"],
            text=self._vault.decrypt(body["text_enc"]),
            platform_message_id=body["platform_message_id"],
            received_at=datetime.fromisoformat(body["received_at"]),
            payload=pii.decrypt_payload(self._vault, body),
            attachments=tuple(Attachment(**a) for a in body.get("attachments") or ()),
            display_name=self._vault.decrypt(name) if name else None,
        )

    def _entry(self, msg: InboundMessage) -> dict[str, Any]:
        """The inbox entry's columns."""
        return {
            "channel": msg.channel,
            "platform_message_id": msg.platform_message_id,
            "chat_id": msg.chat_id,
            "body": self._encode(msg),
            "received_at": msg.received_at,
        }

    async def _record(self, msg: InboundMessage) -> int | None:
        """The new inbox entry's id; None for a duplicate delivery."""
        service = self.conversations
        statement = _RECORD_PG if self._postgres else _RECORD_SQLITE
        params = self._entry(msg)
        # One statement in autocommit: durable before the turn starts, and
        # without the two round trips of BEGIN and COMMIT.
        async with service.write_gate(), self._autocommit.connect() as conn:
            entry_id = (await conn.execute(statement, params)).scalar()
        return None if entry_id is None else int(entry_id)

    # --------------------------------------------------------- the apology

    async def _apologise(self, turn: TurnContext, exc: BaseException) -> HandleResult:
        msg = turn.msg
        now = turn.now
        turn.loaded = None
        async with self.conversations.transaction() as session:
            loaded = await self.conversations.load(
                session,
                msg.channel,
                msg.chat_id,
                msg.user_id,
                msg.display_name,
                claim=InboxClaim(turn.entry_id, now, type(exc).__name__),
            )
            if loaded is None:
                return DUPLICATE
            conv = loaded.conversation
            state = DialogState.load(conv.state)
            state.clear_forms()
            number = loaded.account.number if loaded.account is not None else None
            messages = await handoff.last_customer_messages(session, conv.id)
            messages.append(self._stored_text(msg))
            summary = handoff.build_summary(state.recent_intents, number, messages)
            queued = await handoff.enqueue(
                session,
                self._settings,
                conv,
                ERROR_REASON,
                summary,
                now,
                ERROR_PRIORITY,
                details=_details(ERROR_REASON, number, state, DialogState.load(conv.state)),
            )
            if queued.out_of_hours:
                when = fmt.when(queued.next_opening, now, self._settings.tz)
                text = Texts.apology_closed.format(when=when)
                account_id = loaded.identity.current_account_id
                callback = await self._callback_request(session, conv, account_id, summary, now)
                if callback is not None:
                    text += " " + Texts.callback.format(number=callback)
            else:
                text = Texts.apology
            replies = [Reply(text)]
            if conv.owner is Owner.QUEUE and not queued.already_queued:
                replies.append(await self._place_notice(session, conv.id))
            state.queued_notice_sent = False
            await self.conversations.add_messages(
                session,
                conv,
                replies,
                sender=Sender.BOT,
                now=now,
                customer=self._customer_line(msg, None),
                conversation={"state": state.dump(), "last_customer_message_at": msg.received_at},
            )
            await session.commit()
        turn.loaded = loaded
        return HandleResult(
            duplicate=False, replies=tuple(replies), conversation_id=conv.id, handed_off=True
        )

    async def _callback_request(
        self,
        session: AsyncSession,
        conv: Any,
        account_id: int | None,
        summary: str,
        now: datetime,
    ) -> str | None:
        """Out of hours an escalation also registers a call-back request."""
        description = Texts.callback_description.format(summary=summary)
        try:
            async with session.begin_nested():
                info = await handoff.register_callback(
                    session, self._vault, self._settings, conv, account_id, description, now
                )
        except Exception as exc:
            if _is_storage_failure(exc):
                raise
            # The queue entry is what matters; the appeal is a courtesy.
            log.exception("call-back request failed: %s", type(exc).__name__)
            return None
        return info.number

    # -------------------------------------------------------------- storage

    def _stored_text(self, msg: InboundMessage) -> str:
        limit = self._settings.max_message_chars
        text = msg.text if len(msg.text) <= limit else msg.text[:limit] + "…"
        return pii.redact_text(text)

    def _customer_line(self, msg: InboundMessage, intent: str | None) -> CustomerLine:
        button = pii.redact_payload(msg.payload) if msg.payload else None
        return CustomerLine(
            text=self._stored_text(msg), at=msg.received_at, button=button, intent=intent
        )


def _details(
    reason: str, account_number: str | None, after: DialogState, before: DialogState
) -> dict[str, Any]:
    """The queue entry's card: what the bot collected before the handoff
    (the forms of the state before the step: a handoff clears them)."""
    forms = [before.active, *reversed(before.suspended), before.resume_after_link]
    return handoff.build_details(
        reason,
        account_number,
        after.recent_intents,
        [(f.name, f.slots) for f in forms if f is not None],
    )
