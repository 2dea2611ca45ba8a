"""The path of one message: inbox dedup, validation, lock, errors, replay."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.pipeline import Pipeline, ReplayIncomplete, StorageUnavailable
from config import Settings
from dialogs.context import FlowContext
from dialogs.engine import DialogEngine
from dialogs.flows import ALL_FLOWS
from dialogs.forms import Flow, Outcome
from dialogs.messages import Attachment, Turn
from dialogs.state import DialogState
from nlu.base import NluParser, NluUnavailable
from nlu.types import ParseResult
from storage.locks import MemoryLockStore
from storage.models import (
    Account,
    Appeal,
    AppealCategory,
    Conversation,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    HandoffQueueEntry,
    InboxEntry,
    Message,
    OutboxEntry,
)
from tests.dialogs.conftest import PipelineFactory
from tests.harness import ChatClient, Clock


async def _count(sf: async_sessionmaker[AsyncSession], direction: Direction | None = None) -> int:
    query = select(func.count()).select_from(Message)
    if direction is not None:
        query = query.where(Message.direction == direction)
    async with sf() as s:
        return int(await s.scalar(query) or 0)


async def test_a_duplicate_delivery_is_answered_once(chat: ChatClient) -> None:
    msg = chat.message("привет")
    first = await chat.pipeline.handle(msg)
    again = await chat.pipeline.handle(msg)
    assert first.duplicate is False
    assert first.replies
    assert again.duplicate is True
    assert again.replies == ()
    assert await _count(chat.sessions, Direction.IN) == 1


async def test_replies_are_stored_with_outbox_rows(chat: ChatClient) -> None:
    await chat.say("привет")
    async with chat.sessions() as s:
        rows = (await s.scalars(select(OutboxEntry))).all()
        conv = await s.scalar(select(Conversation))
        inbox = (await s.scalars(select(InboxEntry))).all()
    assert [r.status for r in rows] == [DeliveryStatus.SENT]
    assert rows[0].body["buttons"]
    assert conv is not None
    assert conv.state["recent_intents"] == ["greet"]
    assert all(e.processed_at is not None for e in inbox)


async def test_other_channels_leave_delivery_pending(
    make_pipeline: PipelineFactory, session_factory: async_sessionmaker[AsyncSession], clock: Clock
) -> None:
    committed: list[int] = []

    async def on_committed(conversation_id: int) -> None:
        committed.append(conversation_id)

    chat = ChatClient(make_pipeline(on_committed=on_committed), session_factory, clock, "webchat")
    await chat.say("привет")
    async with session_factory() as s:
        statuses = (await s.scalars(select(OutboxEntry.status))).all()
    assert statuses == [DeliveryStatus.PENDING]
    assert chat.last_result is not None
    assert committed == [chat.last_result.conversation_id]


async def test_empty_and_attachment_only_messages(chat: ChatClient) -> None:
    await chat.say("   ")
    assert chat.texts == [
        "Напишите, пожалуйста, вопрос текстом: картинки и пустые сообщения я пока не понимаю."
    ]
    photo = dataclasses.replace(chat.message(""), attachments=(Attachment(kind="photo"),))
    await chat.send(photo)
    assert "текстом" in chat.last_text


async def test_an_oversized_message_is_refused_clearly(chat: ChatClient) -> None:
    await chat.say("а" * 4097)
    assert chat.texts == [
        "Сообщение слишком длинное: я читаю до 4096 символов. "
        "Напишите, пожалуйста, короче, в чём вопрос."
    ]
    await chat.say("а" * 4096 + "")
    assert "слишком длинное" not in chat.last_text


@pytest.mark.parametrize(
    "line", ["<script>alert(1)</script>", "'; DROP TABLE accounts; --", "😀😀😀", "\x00\u202e"]
)
async def test_markup_sql_and_emoji_are_just_text(chat: ChatClient, line: str) -> None:
    await chat.say(line)
    assert chat.texts  # some answer, no crash
    async with chat.sessions() as s:
        accounts = await s.scalar(select(func.count()).select_from(Account))
        stored = await s.scalar(select(Message.text).where(Message.direction == Direction.IN))
    assert accounts == 3
    assert stored == line.replace("\x00", "")


class _SlowProbe(DialogEngine):
    """The real engine, recording how many steps run at once."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.running = 0
        self.peak = 0
        self._changed = asyncio.Event()

    async def step(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Turn:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self._changed.set()
        try:
            # Stay inside long enough for a second step to come in, if it can
            # (a fixed few milliseconds made that depend on the machine's load).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    while self.running < 2:
                        self._changed.clear()
                        await self._changed.wait()
            return await super().step(ctx, state, parse)
        finally:
            self.running -= 1
            self._changed.set()


async def test_the_lock_serialises_two_messages_of_one_chat(
    make_pipeline: PipelineFactory,
    session_factory: async_sessionmaker[AsyncSession],
    clock: Clock,
    db_settings: Settings,
) -> None:
    engine = _SlowProbe(db_settings)
    chat = ChatClient(make_pipeline(engine=engine), session_factory, clock)
    results = await asyncio.gather(
        chat.pipeline.handle(chat.message("привет")),
        chat.pipeline.handle(chat.message("спасибо")),
    )
    assert engine.peak == 1
    assert all(r.replies for r in results)
    async with session_factory() as s:
        conv = await s.scalar(select(Conversation))
    assert conv is not None
    assert sorted(conv.state["recent_intents"]) == ["greet", "thanks"]

    if db_settings.is_sqlite:
        return  # one SQLite writer: the pipeline queues all turns on purpose
    # Two different chats do run side by side.
    other = ChatClient(chat.pipeline, session_factory, clock, chat_id="chat-2", user_id="u2")
    engine.peak = 0
    await asyncio.gather(chat.say("привет"), other.say("привет"))
    assert engine.peak == 2


async def test_a_message_waiting_for_its_chats_lock_is_in_the_inbox_meanwhile(
    make_pipeline: PipelineFactory,
    session_factory: async_sessionmaker[AsyncSession],
    clock: Clock,
) -> None:
    # A free lock is taken before the entry is written (with the load); a
    # busy one must not delay the write: a lock timeout then loses nothing.
    locks = MemoryLockStore()
    chat = ChatClient(make_pipeline(locks=locks), session_factory, clock)
    async with locks.conversation("test", "chat-1"):
        turn = asyncio.create_task(chat.pipeline.handle(chat.message("привет")))
        for _ in range(500):
            if await _inbox_size(session_factory):
                break
            await asyncio.sleep(0.01)
        assert await _inbox_size(session_factory) == 1
        assert not turn.done()
        assert await _count(session_factory) == 0
    result = await asyncio.wait_for(turn, timeout=30)
    assert result.replies
    assert await _answered(session_factory) == {"chat-1": 1}


async def _inbox_size(sf: async_sessionmaker[AsyncSession]) -> int:
    async with sf() as s:
        return int(await s.scalar(select(func.count()).select_from(InboxEntry)) or 0)


class _Boom(Flow):
    name = "boom"
    intents = frozenset({"greet"})

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        ctx.session.add(
            HandoffQueueEntry(
                conversation_id=ctx.conversation.id,
                reason="x",
                summary="must be rolled back",
                created_at=ctx.now,
            )
        )
        raise RuntimeError("a bug in a flow")


def _engine_with(settings: Settings, flow: Flow) -> DialogEngine:
    others = [f for f in ALL_FLOWS if not f.intents & flow.intents]
    return DialogEngine(settings, [*others, flow])


async def test_an_engine_error_becomes_an_apology_and_a_handoff(
    make_pipeline: PipelineFactory,
    session_factory: async_sessionmaker[AsyncSession],
    clock: Clock,
    db_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chat = ChatClient(
        make_pipeline(engine=_engine_with(db_settings, _Boom())), session_factory, clock
    )
    with caplog.at_level(logging.INFO):
        await chat.say("добрый день, я Иван Петров")
    assert chat.texts == [
        "Извините, у меня что-то пошло не так. Я передал разговор оператору, "
        "он ответит здесь же, в этом чате.",
        "Ваше место в очереди: 1. Если вопрос решится раньше, напишите «отмена».",
    ]
    assert "RuntimeError" in caplog.text
    assert "Петров" not in caplog.text
    assert chat.last_result is not None
    assert chat.last_result.handed_off
    async with session_factory() as s:
        entries = (await s.scalars(select(HandoffQueueEntry))).all()
        conv = await s.scalar(select(Conversation))
        inbox = await s.scalar(select(InboxEntry))
        stored = (await s.scalars(select(Message.text).order_by(Message.id))).all()
    assert [e.reason for e in entries] == ["error"]
    assert "must be rolled back" not in entries[0].summary
    assert conv is not None
    assert conv.status is ConversationStatus.QUEUED
    assert inbox is not None
    assert inbox.processed_at is not None
    assert inbox.error == "RuntimeError"
    assert stored[0] == "добрый день, я Иван Петров"


class _RasaDown(NluParser):
    """The NLU backend at the network edge, timing out."""

    async def parse(self, text: str) -> ParseResult:
        raise NluUnavailable("timeout")


async def test_nlu_unavailable_is_a_fallback_with_an_apology(
    make_pipeline: PipelineFactory, session_factory: async_sessionmaker[AsyncSession], clock: Clock
) -> None:
    chat = ChatClient(make_pipeline(nlu=_RasaDown()), session_factory, clock)
    await chat.say("сколько я должен")
    assert chat.texts[0].startswith("Извините, сейчас я плохо понимаю свободный текст")
    assert "Баланс и начисления" in chat.button_titles
    # Buttons still work without the NLU.
    await chat.press("Баланс и начисления")
    assert "привяжем лицевой счёт" in chat.last_text


class _DropConnection(Flow):
    """Loses the database connection in the middle of a turn."""

    name = "drop"
    intents = frozenset({"greet"})

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        if ctx.settings.is_sqlite:
            raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O error"))
        await ctx.session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        await ctx.session.execute(text("SELECT 1"))
        return Outcome()


async def test_a_dropped_connection_keeps_the_message_for_replay(
    make_pipeline: PipelineFactory,
    session_factory: async_sessionmaker[AsyncSession],
    clock: Clock,
    db_settings: Settings,
) -> None:
    broken = make_pipeline(engine=_engine_with(db_settings, _DropConnection()))
    chat = ChatClient(broken, session_factory, clock)
    with pytest.raises(StorageUnavailable):
        await chat.say("привет")
    async with session_factory() as s:
        inbox = (await s.scalars(select(InboxEntry))).all()
    assert [e.processed_at for e in inbox] == [None]
    assert await _count(session_factory) == 0

    healthy: Pipeline = make_pipeline()
    assert await healthy.replay_unprocessed() == 1
    assert await healthy.replay_unprocessed() == 0
    async with session_factory() as s:
        texts = (await s.scalars(select(Message.text).order_by(Message.id))).all()
    assert texts[0] == "привет"
    assert texts[1].startswith("Здравствуйте!")


async def test_an_error_out_of_hours_also_registers_a_callback(
    make_pipeline: PipelineFactory,
    session_factory: async_sessionmaker[AsyncSession],
    clock: Clock,
    db_settings: Settings,
) -> None:
    clock.set(datetime(2026, 11, 29, 9, 0, tzinfo=UTC))  # Sunday noon
    pipeline = make_pipeline(engine=_engine_with(db_settings, _Boom()))
    chat = ChatClient(pipeline, session_factory, clock)
    await chat.say("привет")
    assert "оператор ответит завтра в 8:00" in chat.last_text
    assert "Заявка на обратный звонок: A-2026-000003." in chat.last_text
    async with session_factory() as s:
        appeal = await s.scalar(select(Appeal).where(Appeal.number == "A-2026-000003"))
    assert appeal is not None
    assert appeal.category is AppealCategory.CALLBACK


async def test_a_replay_skips_a_busy_conversation_and_answers_the_others(
    make_pipeline: PipelineFactory,
    session_factory: async_sessionmaker[AsyncSession],
    clock: Clock,
    db_settings: Settings,
) -> None:
    broken = make_pipeline(engine=_engine_with(db_settings, _DropConnection()))
    busy = ChatClient(broken, session_factory, clock, chat_id="busy", user_id="u-busy")
    free = ChatClient(broken, session_factory, clock, chat_id="free", user_id="u-free")
    for chat in (busy, free, busy):  # two unanswered entries of "busy", in order
        with pytest.raises(StorageUnavailable):
            await chat.say("привет")

    # Turns wait an hour for a lock here: a pass that waited like a turn
    # would never end (the guard below fails it instead of hanging).
    locks = MemoryLockStore(wait_seconds=3600)
    healthy = make_pipeline(locks=locks)
    # A live turn elsewhere holds "busy": the pass does not wait on it, and
    # does not hold up the other chat.
    async with locks.conversation("test", "busy"):
        with pytest.raises(ReplayIncomplete) as incomplete:
            await asyncio.wait_for(healthy.replay_unprocessed(), timeout=60)
    assert (incomplete.value.done, incomplete.value.busy) == (1, 1)
    assert await _answered(session_factory) == {"free": 1}
    # The next pass answers both of its entries, oldest first.
    assert await healthy.replay_unprocessed() == 2
    assert await _answered(session_factory) == {"free": 1, "busy": 2}


async def test_a_periodic_replay_leaves_young_entries_to_their_turns(
    make_pipeline: PipelineFactory,
    session_factory: async_sessionmaker[AsyncSession],
    clock: Clock,
    db_settings: Settings,
) -> None:
    broken = make_pipeline(engine=_engine_with(db_settings, _DropConnection()))
    chat = ChatClient(broken, session_factory, clock)
    with pytest.raises(StorageUnavailable):
        await chat.say("привет")
    healthy = make_pipeline()
    received = clock()
    assert await healthy.replay_unprocessed(received_before=received - timedelta(seconds=30)) == 0
    assert await healthy.replay_unprocessed(received_before=received + timedelta(seconds=1)) == 1


async def _answered(sf: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Processed inbox entries by chat."""
    async with sf() as s:
        rows = (
            await s.execute(
                select(InboxEntry.chat_id, func.count())
                .where(InboxEntry.processed_at.is_not(None))
                .group_by(InboxEntry.chat_id)
            )
        ).all()
    return {str(chat_id): int(n) for chat_id, n in rows}
