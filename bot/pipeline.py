"""The path of one inbound message (shared/design.md, "The path of one message").

1. Record it in the inbox (unique per channel + platform message id): a
   duplicate delivery stops here, so nothing is answered twice.
2. Take the conversation's lock, so two messages of one chat never run at once.
3. Operator-owned or queued conversations only store the message.
   Otherwise: NLU (a button payload is parsed, not classified), one engine
   step, and in ONE transaction the inbound and outbound messages, their
   outbox rows, the new dialog state, a handoff entry if any, and the inbox
   entry marked processed.
4. After the commit, ``on_committed`` (delivery, console) is awaited.

An unexpected error in a turn becomes an apology and a handoff; a storage
failure propagates as :class:`StorageUnavailable` with the inbox entry left
unprocessed, and :meth:`Pipeline.replay_unprocessed` runs it again later.
Message texts are personal data: never logged, SNILS and phone numbers
redacted before they are stored (handlers.pii), and the inbox keeps the text
and the button payload encrypted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from dialogs import format as fmt
from dialogs.context import FlowContext
from dialogs.engine import DialogEngine
from dialogs.forms import is_cancel
from dialogs.messages import Attachment, InboundMessage, Reply
from dialogs.state import DialogState
from dialogs.texts import MENU
from handlers import handoff, pii
from nlu.base import NluParser, NluUnavailable
from nlu.payload import parse_payload
from nlu.types import FALLBACK_INTENT, Intent, ParseResult
from storage.crypto import PersonalDataVault
from storage.errors import StorageUnavailable as StorageUnavailable  # re-exported
from storage.errors import is_storage_failure
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

log = logging.getLogger(__name__)

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
    queue_left = "Хорошо, вызов оператора отменил. Чем могу помочь?"


class PipelineError(Exception):
    """Root of the pipeline's errors."""


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


# Classified by storage (storage/errors.py), where the drivers' errors are known.
_is_storage_failure = is_storage_failure


_NO_GATE: Final = contextlib.nullcontext()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        nlu: NluParser,
        locks: LockStore,
        engine: DialogEngine,
        vault: PersonalDataVault,
        inline_channels: frozenset[str] = frozenset({"cli", "test"}),
        on_committed: Callable[[int], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._settings = settings
        self._sessions = session_factory
        self._nlu = nlu
        self._locks = locks
        self._engine = engine
        self._vault = vault
        self._inline = inline_channels
        self._on_committed = on_committed
        self._clock = clock
        self._sqlite_writes: asyncio.Lock | None = asyncio.Lock() if settings.is_sqlite else None

    # ------------------------------------------------------------------ API

    async def handle(self, msg: InboundMessage) -> HandleResult:
        """Process one inbound message exactly once (see the module docstring)."""
        clean = _CONTROL.sub("", msg.text)
        if clean != msg.text:
            # NUL and other control characters: PostgreSQL refuses NUL in text.
            msg = dataclasses.replace(msg, text=clean)
        try:
            entry_id = await self._record(msg)
        except Exception as exc:
            if _is_storage_failure(exc):
                raise StorageUnavailable("cannot record the inbound message") from exc
            raise
        if entry_id is None:
            return HandleResult(duplicate=True, replies=(), conversation_id=None)
        try:
            return await self._process(entry_id, msg)
        except StorageUnavailable as exc:
            raise StoredUnanswered(str(exc)) from exc

    async def replay_unprocessed(self) -> int:
        """Run again every inbox entry left unprocessed (after a crash); how many."""
        try:
            async with self._sessions() as session:
                rows = (
                    await session.execute(
                        select(InboxEntry.id, InboxEntry.body)
                        .where(InboxEntry.processed_at.is_(None))
                        .order_by(InboxEntry.id)
                    )
                ).all()
        except Exception as exc:
            if _is_storage_failure(exc):
                raise StorageUnavailable("cannot read the inbox") from exc
            raise
        done = 0
        for entry_id, body in rows:
            result = await self._process(entry_id, self._decode(body))
            if not result.duplicate:
                done += 1
        return done

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

    async def _mark_processed(
        self, session: AsyncSession, entry_id: int, now: datetime, error: str | None = None
    ) -> bool:
        result = await session.execute(
            update(InboxEntry)
            .where(InboxEntry.id == entry_id, InboxEntry.processed_at.is_(None))
            .values(processed_at=now, error=error)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def _write_gate(self) -> contextlib.AbstractAsyncContextManager[None]:
        # SQLite has one writer: queueing here beats its busy-timeout polling.
        return self._sqlite_writes if self._sqlite_writes is not None else _NO_GATE

    async def _record(self, msg: InboundMessage) -> int | None:
        async with self._write_gate(), self._sessions() as session:
            entry = InboxEntry(
                channel=msg.channel,
                platform_message_id=msg.platform_message_id,
                chat_id=msg.chat_id,
                body=self._encode(msg),
                received_at=msg.received_at,
            )
            session.add(entry)
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                return None
            return entry.id

    # --------------------------------------------------------------- a turn

    async def _process(self, entry_id: int, msg: InboundMessage) -> HandleResult:
        async with self._locks.conversation(msg.channel, msg.chat_id):
            try:
                result = await self._turn(entry_id, msg)
            except Exception as exc:
                if _is_storage_failure(exc):
                    raise StorageUnavailable("the turn could not be stored") from exc
                log.exception(
                    "turn failed: channel=%s inbox_id=%s error=%s",
                    msg.channel,
                    entry_id,
                    type(exc).__name__,
                )
                try:
                    result = await self._apologise(entry_id, msg, exc)
                except Exception as again:
                    if _is_storage_failure(again):
                        raise StorageUnavailable("the apology could not be stored") from again
                    raise
        if result.conversation_id is not None and not result.duplicate:
            await self._notify(result.conversation_id)
        return result

    async def _notify(self, conversation_id: int) -> None:
        if self._on_committed is None:
            return
        try:
            await self._on_committed(conversation_id)
        except Exception:
            # Delivery retries from the outbox; a failed notification loses nothing.
            log.exception("on_committed failed for conversation %s", conversation_id)

    async def _turn(self, entry_id: int, msg: InboundMessage) -> HandleResult:
        now = self._clock()
        async with self._write_gate(), self._sessions() as session:
            identity, conv = await self._identity_and_conversation(session, msg)
            state = DialogState.load(conv.state)
            last = conv.last_customer_message_at
            if last is not None and msg.received_at - last > FORM_TIMEOUT:
                state.clear_forms()
            replies: list[Reply] = []
            intent: str | None = None
            handed_off = False

            queued = conv.status is ConversationStatus.QUEUED
            if queued and is_cancel(msg.text) and await handoff.cancel_waiting(session, conv, now):
                replies.append(Reply(Texts.queue_left, buttons=MENU))
                state.queued_notice_sent = False
                new_state = state.dump()
            elif conv.status in (ConversationStatus.OPERATOR, ConversationStatus.QUEUED):
                if queued and not state.queued_notice_sent:
                    replies.append(Reply(Texts.queued_notice))
                    state.queued_notice_sent = True
                new_state = state.dump()
            elif (
                not msg.text.strip()
                and msg.payload is None
                # A file is for the form in progress (an appeal's photo).
                and not (msg.attachments and state.active is not None)
            ):
                replies.append(Reply(Texts.empty))
                new_state = state.dump()
            elif len(msg.text) > self._settings.max_message_chars:
                limit = self._settings.max_message_chars
                replies.append(Reply(Texts.too_long.format(limit=limit)))
                new_state = state.dump()
            else:
                parse, nlu_down = await self._parse(msg)
                ctx = FlowContext(
                    session=session,
                    settings=self._settings,
                    vault=self._vault,
                    now=now,
                    identity=identity,
                    conversation=conv,
                    channel=msg.channel,
                    attachments=msg.attachments,
                )
                turn = await self._engine.step(ctx, state, parse)
                intent = turn.intent
                if nlu_down and turn.state.get("active") is None:
                    replies.append(Reply(Texts.nlu_unavailable))
                replies.extend(turn.replies)
                new_state = dict(turn.state)
                if turn.handoff is not None:
                    await handoff.enqueue(
                        session,
                        self._settings,
                        conv,
                        turn.handoff.reason,
                        turn.handoff.summary,
                        now,
                        turn.handoff.priority,
                    )
                    new_state["queued_notice_sent"] = False
                    handed_off = True

            await self._store(session, conv, msg, intent, replies, now)
            conv.state = new_state
            if not await self._mark_processed(session, entry_id, now):
                # Processed meanwhile (a replay): nothing of this run is kept.
                await session.rollback()
                return HandleResult(duplicate=True, replies=(), conversation_id=None)
            await session.commit()
            log.info(
                "turn done: conversation=%s intent=%s replies=%d", conv.id, intent, len(replies)
            )
            return HandleResult(
                duplicate=False,
                replies=tuple(replies),
                conversation_id=conv.id,
                handed_off=handed_off,
            )

    async def _parse(self, msg: InboundMessage) -> tuple[ParseResult, bool]:
        if msg.payload is not None:
            parsed = parse_payload(msg.payload)
            if parsed is not None:
                return parsed, False
        try:
            return await self._nlu.parse(msg.text), False
        except NluUnavailable:
            log.warning("NLU unavailable; the turn goes on as a fallback")
            fallback = ParseResult(
                text=msg.text, intent=Intent(name=FALLBACK_INTENT, confidence=0.0)
            )
            return fallback, True

    async def _apologise(
        self, entry_id: int, msg: InboundMessage, exc: BaseException
    ) -> HandleResult:
        now = self._clock()
        async with self._write_gate(), self._sessions() as session:
            identity, conv = await self._identity_and_conversation(session, msg)
            state = DialogState.load(conv.state)
            state.clear_forms()
            account = identity.current_account_id
            number = None
            if account is not None:
                row = await session.get(Account, account)
                number = row.number if row else None
            messages = await handoff.last_customer_messages(session, conv.id)
            messages.append(self._stored_text(msg))
            summary = handoff.build_summary(state.recent_intents, number, messages)
            queued = await handoff.enqueue(
                session, self._settings, conv, ERROR_REASON, summary, now, ERROR_PRIORITY
            )
            if queued.out_of_hours:
                when = fmt.when(queued.next_opening, now, self._settings.tz)
                text = Texts.apology_closed.format(when=when)
                number = await self._callback_request(session, conv, account, summary, now)
                if number is not None:
                    text += " " + Texts.callback.format(number=number)
            else:
                text = Texts.apology
            replies = [Reply(text)]
            await self._store(session, conv, msg, None, replies, now)
            state.queued_notice_sent = False
            conv.state = state.dump()
            if not await self._mark_processed(session, entry_id, now, type(exc).__name__):
                await session.rollback()
                return HandleResult(duplicate=True, replies=(), conversation_id=None)
            await session.commit()
            return HandleResult(
                duplicate=False, replies=tuple(replies), conversation_id=conv.id, handed_off=True
            )

    async def _callback_request(
        self,
        session: AsyncSession,
        conv: Conversation,
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

    async def _identity_and_conversation(
        self, session: AsyncSession, msg: InboundMessage
    ) -> tuple[ChannelIdentity, Conversation]:
        row = (
            await session.execute(
                select(Conversation, ChannelIdentity)
                .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
                .where(Conversation.channel == msg.channel, Conversation.chat_id == msg.chat_id)
            )
        ).first()
        if row is not None and row[1].user_id == msg.user_id:
            # The usual case, one round trip: a returning customer in their chat.
            found_conv, found_identity = row
            if found_conv.status is ConversationStatus.CLOSED:
                found_conv.status = ConversationStatus.BOT
            return found_identity, found_conv
        identity = await session.scalar(
            select(ChannelIdentity).where(
                ChannelIdentity.channel == msg.channel, ChannelIdentity.user_id == msg.user_id
            )
        )
        if identity is None:
            identity = ChannelIdentity(
                channel=msg.channel,
                user_id=msg.user_id,
                display_name=(msg.display_name or None) and msg.display_name[:200],
                failed_link_attempts=0,
            )
            try:
                async with session.begin_nested():
                    session.add(identity)
            except IntegrityError:
                # The same person wrote from another chat at the same moment.
                identity = await session.scalar(
                    select(ChannelIdentity).where(
                        ChannelIdentity.channel == msg.channel,
                        ChannelIdentity.user_id == msg.user_id,
                    )
                )
                assert identity is not None
        conv = await session.scalar(
            select(Conversation).where(
                Conversation.channel == msg.channel, Conversation.chat_id == msg.chat_id
            )
        )
        if conv is None:
            # The conversation lock is held: nobody else creates this row now.
            conv = Conversation(
                channel=msg.channel,
                chat_id=msg.chat_id,
                identity_id=identity.id,
                status=ConversationStatus.BOT,
                state={},
            )
            session.add(conv)
            await session.flush()
        elif conv.status is ConversationStatus.CLOSED:
            conv.status = ConversationStatus.BOT
        return identity, conv

    def _stored_text(self, msg: InboundMessage) -> str:
        limit = self._settings.max_message_chars
        text = msg.text if len(msg.text) <= limit else msg.text[:limit] + "…"
        return pii.redact_text(text)

    async def _store(
        self,
        session: AsyncSession,
        conv: Conversation,
        msg: InboundMessage,
        intent: str | None,
        replies: list[Reply],
        now: datetime,
    ) -> None:
        session.add(
            Message(
                conversation_id=conv.id,
                direction=Direction.IN,
                sender=Sender.CUSTOMER,
                text=self._stored_text(msg),
                payload={"button": pii.redact_payload(msg.payload)} if msg.payload else None,
                intent=intent[:40] if intent else None,
                created_at=msg.received_at,
            )
        )
        conv.last_customer_message_at = msg.received_at
        inline = msg.channel in self._inline
        texts = await pii.redact_outbound(session, self._settings, [r.text for r in replies])
        replies = [
            dataclasses.replace(r, text=text) for text, r in zip(texts, replies, strict=True)
        ]
        outs = [
            Message(
                conversation_id=conv.id,
                direction=Direction.OUT,
                sender=Sender.BOT,
                text=reply.text,
                payload=reply.to_json() if reply.buttons else None,
                created_at=now,
            )
            for reply in replies
        ]
        session.add_all(outs)
        # One INSERT for all the messages (their ids are needed below).
        await session.flush()
        for reply, out in zip(replies, outs, strict=True):
            session.add(
                OutboxEntry(
                    conversation_id=conv.id,
                    message_id=out.id,
                    channel=msg.channel,
                    chat_id=msg.chat_id,
                    body=reply.to_json(),
                    status=DeliveryStatus.SENT if inline else DeliveryStatus.PENDING,
                    attempts=1 if inline else 0,
                    next_attempt_at=now,
                    sent_at=now if inline else None,
                    created_at=now,
                )
            )
        await session.flush()
