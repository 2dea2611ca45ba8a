"""The delivery worker on real storage, with adapters built on the real base."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.channels.base import ChannelAdapter
from bot.delivery import DeliveryPolicy, DeliveryWorker, Outcome
from bot.errors import DeliveryError, PermanentDeliveryError, RecipientOffline, RetryAfter
from config import Settings
from dialogs.messages import Button, Reply
from storage.db import create_engine, create_session_factory
from storage.models import (
    ChannelIdentity,
    Conversation,
    DeliveryStatus,
    Direction,
    Message,
    OutboxEntry,
    Sender,
)
from tests.harness import Clock

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = DeliveryPolicy(max_attempts=3, base_backoff_seconds=2.0, offline_park_seconds=300.0)


@dataclass
class ScriptedAdapter(ChannelAdapter):
    """Fails as scripted (one exception per call, None = success), records sends."""

    script: list[Exception | None] = field(default_factory=list)
    sent: list[tuple[str, Reply, int | None]] = field(default_factory=list)
    name: str = "telegram"

    async def send(
        self,
        chat_id: str,
        reply: Reply,
        *,
        message_id: int | None = None,
        at: datetime | None = None,
        sender: str = "bot",
    ) -> None:
        await asyncio.sleep(0)  # let a concurrent worker interleave here
        error = self.script.pop(0) if self.script else None
        if error is not None:
            raise error
        self.sent.append((chat_id, reply, message_id))


async def add_replies(
    sf: async_sessionmaker[AsyncSession], texts: list[str], channel: str = "telegram"
) -> list[int]:
    """A conversation with bot messages and their pending outbox rows."""
    async with sf.begin() as s:
        identity = ChannelIdentity(channel=channel, user_id="u1")
        s.add(identity)
        await s.flush()
        conv = Conversation(channel=channel, chat_id="c1", identity_id=identity.id, state={})
        s.add(conv)
        await s.flush()
        ids = []
        for text in texts:
            reply = Reply(text, (Button("Да", "/affirm"),))
            msg = Message(
                conversation_id=conv.id,
                direction=Direction.OUT,
                sender=Sender.BOT,
                text=text,
                payload=reply.to_json(),
                created_at=T0,
            )
            s.add(msg)
            await s.flush()
            entry = OutboxEntry(
                conversation_id=conv.id,
                message_id=msg.id,
                channel=channel,
                chat_id="c1",
                body=reply.to_json(),
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=T0,
                created_at=T0,
            )
            s.add(entry)
            await s.flush()
            ids.append(entry.id)
    return ids


async def entry(sf: async_sessionmaker[AsyncSession], entry_id: int) -> OutboxEntry:
    async with sf() as s:
        row = await s.get(OutboxEntry, entry_id)
        assert row is not None
        return row


WorkerFactory = Callable[[ScriptedAdapter], DeliveryWorker]


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def make_worker(session_factory: async_sessionmaker[AsyncSession], clock: Clock) -> WorkerFactory:
    def make(adapter: ScriptedAdapter) -> DeliveryWorker:
        return DeliveryWorker(session_factory, {adapter.name: adapter}, POLICY, clock=clock)

    return make


async def test_sent_once_and_marked(
    session_factory: async_sessionmaker[AsyncSession], make_worker: WorkerFactory
) -> None:
    [eid] = await add_replies(session_factory, ["Здравствуйте!"])
    adapter = ScriptedAdapter()
    worker = make_worker(adapter)

    stats = await worker.run_once()
    assert stats[Outcome.SENT] == 1
    row = await entry(session_factory, eid)
    assert row.status is DeliveryStatus.SENT
    assert row.sent_at == T0
    assert [(c, r.text, r.buttons[0].title) for c, r, _ in adapter.sent] == [
        ("c1", "Здравствуйте!", "Да")
    ]
    assert adapter.sent[0][2] == row.message_id

    await worker.run_once()  # nothing left to do
    assert len(adapter.sent) == 1


async def test_failure_backs_off_then_fails_after_max_attempts(
    session_factory: async_sessionmaker[AsyncSession], make_worker: WorkerFactory, clock: Clock
) -> None:
    [eid] = await add_replies(session_factory, ["Ответ"])
    adapter = ScriptedAdapter(script=[DeliveryError("502")] * 5)
    worker = make_worker(adapter)

    await worker.run_once()
    row = await entry(session_factory, eid)
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
    assert row.next_attempt_at == T0 + timedelta(seconds=2)
    assert row.last_error is not None
    assert "502" in row.last_error

    clock.advance(timedelta(seconds=1))  # not due yet
    assert (await worker.run_once()).outcomes == {}
    assert len(adapter.script) == 4

    clock.advance(timedelta(seconds=1))
    await worker.run_once()
    row = await entry(session_factory, eid)
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 2)
    assert row.next_attempt_at == clock.now + timedelta(seconds=4)  # doubled

    clock.advance(timedelta(seconds=4))
    assert (await worker.run_once())[Outcome.FAILED] == 1
    row = await entry(session_factory, eid)
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 3)
    clock.advance(timedelta(seconds=3600))
    await worker.run_once()
    assert len(adapter.script) == 2  # never tried again
    assert adapter.sent == []


async def test_recovers_after_a_failure(
    session_factory: async_sessionmaker[AsyncSession], make_worker: WorkerFactory, clock: Clock
) -> None:
    [eid] = await add_replies(session_factory, ["Ответ"])
    adapter = ScriptedAdapter(script=[DeliveryError("timeout"), None])
    worker = make_worker(adapter)
    await worker.run_once()
    clock.advance(timedelta(seconds=2))
    await worker.run_once()
    row = await entry(session_factory, eid)
    assert (row.status, row.attempts, row.sent_at) == (DeliveryStatus.SENT, 1, clock.now)
    assert len(adapter.sent) == 1


async def test_retry_after_is_honoured(
    session_factory: async_sessionmaker[AsyncSession], make_worker: WorkerFactory, clock: Clock
) -> None:
    [eid] = await add_replies(session_factory, ["Ответ"])
    adapter = ScriptedAdapter(script=[RetryAfter(17)])
    worker = make_worker(adapter)
    assert (await worker.run_once())[Outcome.RATE_LIMITED] == 1
    row = await entry(session_factory, eid)
    assert row.next_attempt_at == T0 + timedelta(seconds=17)
    assert row.attempts == 1
    clock.advance(timedelta(seconds=16))
    await worker.run_once()
    assert adapter.sent == []
    clock.advance(timedelta(seconds=1))
    await worker.run_once()
    assert len(adapter.sent) == 1


async def test_permanent_error_fails_at_once(
    session_factory: async_sessionmaker[AsyncSession], make_worker: WorkerFactory
) -> None:
    [eid] = await add_replies(session_factory, ["Ответ"])
    worker = make_worker(ScriptedAdapter(script=[PermanentDeliveryError("bot blocked")]))
    await worker.run_once()
    row = await entry(session_factory, eid)
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 1)


async def test_a_failed_reply_holds_back_the_later_ones(
    session_factory: async_sessionmaker[AsyncSession], make_worker: WorkerFactory, clock: Clock
) -> None:
    first, second = await add_replies(session_factory, ["Первый", "Второй"])
    adapter = ScriptedAdapter(script=[DeliveryError("down")])
    worker = make_worker(adapter)
    await worker.run_once()
    assert adapter.sent == []
    assert (await entry(session_factory, second)).status is DeliveryStatus.PENDING
    clock.advance(timedelta(seconds=2))
    await worker.run_once()
    assert [r.text for _, r, _ in adapter.sent] == ["Первый", "Второй"]
    assert (await entry(session_factory, first)).status is DeliveryStatus.SENT


async def test_two_workers_send_each_row_once(
    session_factory: async_sessionmaker[AsyncSession], make_worker: WorkerFactory
) -> None:
    await add_replies(session_factory, [f"Ответ {i}" for i in range(6)])
    adapter = ScriptedAdapter()
    a, b = make_worker(adapter), make_worker(adapter)
    await asyncio.gather(a.run_once(), b.run_once(), a.run_once(1), b.run_once())
    assert sorted(r.text for _, r, _ in adapter.sent) == [f"Ответ {i}" for i in range(6)]


async def test_offline_recipient_stays_pending_until_shown(
    session_factory: async_sessionmaker[AsyncSession], make_worker: WorkerFactory, clock: Clock
) -> None:
    [eid] = await add_replies(session_factory, ["Ответ"], channel="webchat")
    adapter = ScriptedAdapter(script=[RecipientOffline("no tab")] * 10, name="webchat")
    worker = make_worker(adapter)
    assert (await worker.run_once())[Outcome.OFFLINE] == 1
    row = await entry(session_factory, eid)
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 0)  # not a failure
    assert row.next_attempt_at == T0 + timedelta(seconds=300)

    clock.advance(timedelta(seconds=10))
    assert await worker.mark_delivered("webchat", "c1", [row.message_id]) == 1
    row = await entry(session_factory, eid)
    assert (row.status, row.sent_at) == (DeliveryStatus.SENT, clock.now)
    assert await worker.mark_delivered("webchat", "c1", [row.message_id]) == 0


async def test_unknown_channel_is_retried_not_lost(
    session_factory: async_sessionmaker[AsyncSession], make_worker: WorkerFactory
) -> None:
    [eid] = await add_replies(session_factory, ["Ответ"], channel="whatsapp")
    await make_worker(ScriptedAdapter()).run_once()
    row = await entry(session_factory, eid)
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
    assert "whatsapp" in (row.last_error or "")


async def test_background_loop_sends_on_wake(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    adapter = ScriptedAdapter()
    worker = DeliveryWorker(
        session_factory,
        {adapter.name: adapter},
        DeliveryPolicy(sweep_interval_seconds=30),
    )
    await worker.start()
    try:
        async with session_factory() as s:
            assert (await s.scalars(select(OutboxEntry))).all() == []
        ids = await add_replies(session_factory, ["Ответ"])
        worker.wake()  # the rows are due: created at T0, in the past
        for _ in range(500):
            if (await entry(session_factory, ids[0])).status is DeliveryStatus.SENT:
                break
            await asyncio.sleep(0.01)
        assert (await entry(session_factory, ids[0])).status is DeliveryStatus.SENT
        assert [r.text for _, r, _ in adapter.sent] == ["Ответ"]
    finally:
        await worker.stop()


async def test_the_sweep_leaves_fresh_rows_to_their_turn(
    session_factory: async_sessionmaker[AsyncSession], make_worker: WorkerFactory, clock: Clock
) -> None:
    [eid] = await add_replies(session_factory, ["Ответ"])  # created at T0 == now
    adapter = ScriptedAdapter()
    worker = make_worker(adapter)
    assert (await worker.run_once(min_age_seconds=5)).outcomes == {}
    clock.advance(timedelta(seconds=5))
    assert (await worker.run_once(min_age_seconds=5))[Outcome.SENT] == 1
    assert (await entry(session_factory, eid)).status is DeliveryStatus.SENT


async def test_a_later_reply_waits_while_an_earlier_one_backs_off(
    session_factory: async_sessionmaker[AsyncSession], make_worker: WorkerFactory, clock: Clock
) -> None:
    first, second = await add_replies(session_factory, ["Первый", "Второй"])
    adapter = ScriptedAdapter(script=[DeliveryError("down")])
    worker = make_worker(adapter)
    await worker.run_once()  # the first fails; the second is held back
    assert (await entry(session_factory, first)).attempts == 1
    # The second is due, the first is not: sending the second now would put
    # the replies out of order.
    assert (await worker.run_once()).outcomes == {}
    assert (await entry(session_factory, second)).status is DeliveryStatus.PENDING
    clock.advance(timedelta(seconds=2))
    await worker.run_once()
    assert [r.text for _, r, _ in adapter.sent] == ["Первый", "Второй"]


@dataclass
class GatedAdapter(ScriptedAdapter):
    """Holds its first send until ``gate`` is set (a reply on its way)."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(
        self,
        chat_id: str,
        reply: Reply,
        *,
        message_id: int | None = None,
        at: datetime | None = None,
        sender: str = "bot",
    ) -> None:
        if not self.entered.is_set():
            self.entered.set()
            await self.gate.wait()
        await super().send(chat_id, reply, message_id=message_id, at=at)


async def add_later_reply(sf: async_sessionmaker[AsyncSession], text: str) -> int:
    """One more pending reply in the conversation of :func:`add_replies`."""
    async with sf.begin() as s:
        conv = await s.scalar(select(Conversation).where(Conversation.chat_id == "c1"))
        assert conv is not None
        msg = Message(
            conversation_id=conv.id,
            direction=Direction.OUT,
            sender=Sender.BOT,
            text=text,
            created_at=T0,
        )
        s.add(msg)
        await s.flush()
        row = OutboxEntry(
            conversation_id=conv.id,
            message_id=msg.id,
            channel="telegram",
            chat_id="c1",
            body=Reply(text).to_json(),
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=T0,
            created_at=T0,
        )
        s.add(row)
        await s.flush()
        return row.id


async def test_a_turn_committed_during_a_send_is_not_left_to_the_sweep(
    session_factory: async_sessionmaker[AsyncSession], make_worker: WorkerFactory
) -> None:
    # The customer answers the first reply while it is still being recorded
    # as sent, and that answer's turn runs in another process: its own pass
    # finds the earlier row leased and claims nothing. The worker that held
    # the earlier row sends the later one as soon as its own are done.
    [first] = await add_replies(session_factory, ["Первый"])
    conversation_id = (await entry(session_factory, first)).conversation_id
    adapter = GatedAdapter()
    holder, other = make_worker(adapter), make_worker(adapter)
    sending = asyncio.create_task(holder.run_once(conversation_id))
    await adapter.entered.wait()
    second = await add_later_reply(session_factory, "Второй")
    assert (await other.run_once(conversation_id)).outcomes == {}  # held back
    adapter.gate.set()
    stats = await sending
    assert stats[Outcome.SENT] == 2
    assert [r.text for _, r, _ in adapter.sent] == ["Первый", "Второй"]
    assert (await entry(session_factory, second)).status is DeliveryStatus.SENT


@dataclass
class PoolHoggingAdapter(ScriptedAdapter):
    """Sends, then takes the database's only connection, as a burst of turns
    takes a pool under load: storing the outcome waits for a connection."""

    engine: AsyncEngine | None = None
    held: list[AsyncConnection] = field(default_factory=list)

    async def send(
        self,
        chat_id: str,
        reply: Reply,
        *,
        message_id: int | None = None,
        at: datetime | None = None,
        sender: str = "bot",
    ) -> None:
        await super().send(chat_id, reply, message_id=message_id, at=at, sender=sender)
        assert self.engine is not None
        self.held.append(await self.engine.connect())


class _OnWarning(logging.Handler):
    def __init__(self, action: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.action = action

    def emit(self, record: logging.LogRecord) -> None:
        self.action()


async def test_a_sent_reply_whose_outcome_cannot_be_stored_at_once_is_not_sent_again(
    db_settings: Settings, clock: Clock
) -> None:
    """The reply is out, then storing that fails (no connection free in the
    pool): the outcome is stored once the database answers, within the lease.
    It used to stay pending and went out a second time when its lease ran out
    (bench/load.py counted one duplicate per such failure)."""
    engine = create_engine(db_settings, pool_size=1, max_overflow=0, pool_timeout=0.05)
    sf = create_session_factory(engine)
    adapter = PoolHoggingAdapter(engine=engine)
    worker = DeliveryWorker(sf, {adapter.name: adapter}, POLICY, clock=clock)
    tasks: set[asyncio.Task[None]] = set()

    def give_back() -> None:  # once the worker said it could not store the outcome
        while adapter.held:
            task = asyncio.get_running_loop().create_task(adapter.held.pop().close())
            tasks.add(task)

    handler = _OnWarning(give_back)
    delivery_log = logging.getLogger("bot.delivery")
    delivery_log.addHandler(handler)
    try:
        [eid] = await add_replies(sf, ["Здравствуйте!"])
        stats = await worker.run_once()
        assert stats[Outcome.SENT] == 1
        assert (await entry(sf, eid)).status is DeliveryStatus.SENT
        clock.advance(timedelta(seconds=POLICY.lease_seconds + 1))
        await worker.run_once()
        assert [r.text for _, r, _ in adapter.sent] == ["Здравствуйте!"]
    finally:
        delivery_log.removeHandler(handler)
        for conn in adapter.held:
            await conn.close()
        if tasks:
            await asyncio.wait(tasks)
        await engine.dispose()
