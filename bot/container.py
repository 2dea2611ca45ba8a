"""The composition root: every long-lived object, built once from Settings.

Construction is cheap and synchronous (nothing connects yet);
:meth:`Container.start` does the work of a start-up (migrations and demo data
in embedded mode, the NLU model, the delivery worker, the scheduler of the
appeal jobs) and :meth:`Container.close` undoes it. Unprocessed inbox entries
(a crash, an outage) are replayed by a background task, starting at once: a
start-up never waits for, or fails on, a conversation whose lock a dead
process left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import configure_mappers

from bot.channels import ChannelAdapter, ChannelRegistry
from bot.conversations import ConversationService, HistoryItem
from bot.delivery import DeliveryPolicy, DeliveryWorker
from bot.metrics import BotMetrics
from bot.notices import AppealNotices, NoticeScheduler
from bot.operators.service import OperatorService
from bot.pipeline import HandleResult, Pipeline, Refusal, ReplayIncomplete
from config import Settings
from dialogs.engine import DialogEngine
from dialogs.messages import Button, InboundMessage
from nlu.base import NluParser
from nlu.features import Lemmatizer
from nlu.rasa.breaker import FallbackNluParser
from storage.crypto import PersonalDataVault
from storage.db import create_engine, create_session_factory
from storage.errors import OutageLog, is_storage_failure
from storage.keys import KeyBuilder
from storage.locks import (
    LockStore,
    LockTimeout,
    MemoryLockStore,
    RedisLockStore,
    fence_statements,
)
from storage.pubsub import MemoryPubSub, PubSub, RedisPubSub
from storage.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from storage.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bot.operators.telegram_desk import TelegramDesk

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 2.0
REPLAY_FIRST_DELAY_SECONDS = 2.0
REPLAY_MAX_DELAY_SECONDS = 60.0
# A pass that found chats busy (their turns still running) comes back soon:
# it skips busy chats without waiting, so it is cheap, and backing off as
# for a failure left entries unanswered for up to a minute under load.
REPLAY_BUSY_DELAY_SECONDS = 2.0
CLOSE_TIMEOUT_SECONDS = 10.0


def redis_client(settings: Settings) -> Redis:
    """A client whose pool waits for a free connection rather than failing.

    redis-py's default pool refuses a command outright (MaxConnectionsError)
    once 100 are in flight, which a burst of turns in one process reaches: the
    turn then failed as if Redis were down. The blocking pool queues it for up
    to ``redis_pool_timeout_seconds`` instead.
    """
    assert settings.redis_url is not None
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_seconds,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


def build_locks(settings: Settings) -> LockStore:
    if settings.redis_url is None:
        return MemoryLockStore(wait_seconds=settings.lock_wait_seconds)
    return RedisLockStore(
        redis_client(settings),
        KeyBuilder(settings.redis_key_prefix),
        ttl_seconds=settings.lock_ttl_seconds,
        wait_seconds=settings.lock_wait_seconds,
    )


def build_pubsub(settings: Settings) -> PubSub:
    if settings.redis_url is None:
        return MemoryPubSub()
    return RedisPubSub(redis_client(settings), KeyBuilder(settings.redis_key_prefix))


def build_rate_limiter(settings: Settings) -> RateLimiter:
    if settings.redis_url is None:
        return MemoryRateLimiter()
    return RedisRateLimiter(redis_client(settings), KeyBuilder(settings.redis_key_prefix))


async def build_nlu(settings: Settings) -> NluParser:
    """The configured parser, trained first if the embedded model is missing."""
    from nlu.factory import build_parser

    # Loading or training the embedded model is CPU work: off the event loop.
    return await asyncio.to_thread(build_parser, settings)


class NotStarted(RuntimeError):
    """The container is used before :meth:`Container.start`."""


class Container:
    def __init__(
        self,
        settings: Settings,
        *,
        nlu: NluParser | None = None,
        delivery_policy: DeliveryPolicy | None = None,
        extra_channels: Sequence[ChannelAdapter] = (),
    ) -> None:
        self.settings = settings
        self.metrics = BotMetrics()
        # One warning per outage, shared by turns, the replay, readiness and delivery.
        self.outage = OutageLog(log, "storage")
        self.db: AsyncEngine = create_engine(settings)
        self.session_factory: async_sessionmaker[AsyncSession] = create_session_factory(self.db)
        self.vault = PersonalDataVault(settings.secret_key.get_secret_value())
        self.locks = build_locks(settings)
        if isinstance(self.locks, RedisLockStore):
            # A turn stalled past its lock's TTL writes nothing (storage/locks.py).
            fence_statements(self.db)
        self._pubsub = build_pubsub(settings)
        self.engine = DialogEngine(settings)
        self.rate_limiter = build_rate_limiter(settings)
        self.channels = ChannelRegistry.from_settings(settings, extra=extra_channels)
        for adapter in self.channels.values():
            adapter.share_rate_limiter(self.rate_limiter)  # shared by every process on Redis
        self.delivery = DeliveryWorker(
            self.session_factory,
            self.channels,
            delivery_policy,
            metrics=self.metrics,
            outage=self.outage,
        )
        self.conversations = ConversationService(
            settings,
            self.session_factory,
            self.locks,
            self._pubsub,
            channels=self.channels,
            on_committed=self.delivery.on_committed,
        )
        # The operators' side (console, Telegram desk): ownership, queue, NPS.
        self.operators = OperatorService(self.conversations, self.locks)
        # Appeal deadlines and status notices, a pass every so often.
        self.notices = AppealNotices(settings, self.conversations, outage=self.outage)
        self.scheduler = NoticeScheduler(settings, self.notices)
        self.desk: TelegramDesk | None = None
        if settings.operator_bot_token is not None:
            # python-telegram-bot is imported only when the desk is configured.
            from bot.operators.telegram_desk import TelegramDesk

            self.desk = TelegramDesk.from_settings(
                settings,
                conversations=self.conversations,
                operators=self.operators,
                locks=self.locks,
                pubsub=self._pubsub,
                vault=self.vault,
            )
        self._nlu = nlu
        self._owns_nlu = nlu is None
        self._pipeline: Pipeline | None = None
        self.replayed = 0  # inbox entries answered by the background replay
        # Set at start and when a turn failed: an inbox entry may be accepted
        # but not answered; the background replay answers it once it can.
        self._replay_wanted = asyncio.Event()
        # Set by close: what stops the replay loop, as the cancellation alone
        # may not (see _replay_loop).
        self._closing = False
        self._replayer: asyncio.Task[None] | None = None

    @property
    def nlu(self) -> NluParser:
        if self._nlu is None:
            raise NotStarted("the NLU parser is built by Container.start()")
        return self._nlu

    def nlu_status(self) -> dict[str, Any] | None:
        """The NLU backend's state when it can fall back (Rasa), else None."""
        if isinstance(self._nlu, FallbackNluParser):
            return self._nlu.status()
        return None

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise NotStarted("the pipeline is built by Container.start()")
        return self._pipeline

    # --- lifecycle ----------------------------------------------------------

    async def prepare_storage(self) -> None:
        """Embedded mode (SQLite): migrate, and load the demo data once."""
        if not self.settings.is_sqlite:
            return  # PostgreSQL is migrated by a deploy step (python -m bot db upgrade)
        from storage.migrate import upgrade_async

        await upgrade_async(self.settings)
        if self.settings.load_demo_data:
            await self.load_demo_data()

    async def load_demo_data(self) -> bool:
        from storage.demo_data import load_demo_data

        async with self.session_factory() as session:
            # load_demo_data commits (or rolls back) itself.
            loaded = await load_demo_data(session, self.vault, self.settings, datetime.now(UTC))
        log.info("demo data %s", "loaded" if loaded else "already present")
        return bool(loaded)

    async def start(self, *, worker: bool = True) -> None:
        started = time.perf_counter()
        await self.prepare_storage()
        if self._nlu is None:
            self._nlu = await build_nlu(self.settings)
        # Work done once, here rather than in the first customer's turn, where
        # it would block the loop under that chat's lock (on a slow machine
        # long enough for a short lock TTL to run out): SQLAlchemy configures
        # its mappers at the first query, pymorphy3 loads its dictionaries at
        # the first word.
        configure_mappers()
        Lemmatizer.analyzer()
        breaker = self._nlu
        if isinstance(breaker, FallbackNluParser):
            self.metrics.watch_nlu(lambda: breaker.degraded, lambda: breaker.fallback_parses)
        self._pipeline = Pipeline(
            self.settings,
            self.session_factory,
            self._nlu,
            self.locks,
            self.engine,
            self.vault,
            conversations=self.conversations,
            after_turn=self.operators.after_turn,
        )
        # Once the pipeline can take what an adapter receives, before any send.
        for adapter in self.channels.values():
            await adapter.start(self)
        if worker:
            await self.delivery.start()
            await self.scheduler.start()
        if self.desk is not None:
            await self.desk.start()  # its Bot API part starts in the background
        # In the background: a stale lock (its TTL) or a slow database must not
        # hold up, or fail, the start-up.
        self._replay_wanted.set()
        self._replayer = asyncio.create_task(
            self._replay_loop(started_at=datetime.now(UTC)), name="inbox-replay"
        )
        log.info(
            "started in %.2f s (channels: %s; inbox replay running)",
            time.perf_counter() - started,
            ", ".join(self.channels) or "none",
        )

    async def close(self) -> None:
        self._closing = True
        if self._replayer is not None:
            task, self._replayer = self._replayer, None
            if not await cancel_and_wait(task, CLOSE_TIMEOUT_SECONDS):
                log.warning("inbox replay did not stop in %.0f s", CLOSE_TIMEOUT_SECONDS)
        await self.scheduler.stop()
        if self.desk is not None:
            await self.desk.close()
        await self.delivery.stop()
        await self.channels.close()
        if self._nlu is not None and self._owns_nlu:
            await self._nlu.close()
        await self._pubsub.close()
        await self.locks.close()
        await self.rate_limiter.close()
        await self.db.dispose()

    # --- what channels call (bot.channels.base.ChannelHost) ---------------------

    @property
    def pubsub(self) -> PubSub:
        return self._pubsub

    def refusal(self, msg: InboundMessage) -> Refusal | None:
        return self.pipeline.refusal(msg)

    async def history(self, channel: str, chat_id: str, limit: int) -> list[HistoryItem]:
        return await self.conversations.history(channel, chat_id, limit)

    async def last_buttons(self, channel: str, chat_id: str) -> tuple[Button, ...]:
        return await self.conversations.last_buttons(channel, chat_id)

    async def handle(self, msg: InboundMessage) -> HandleResult:
        """Process one inbound message, measured."""
        m = self.metrics
        m.inbound.labels(msg.channel).inc()
        started = time.perf_counter()
        try:
            result = await self.pipeline.handle(msg)
        except Exception as exc:
            m.turn_errors.labels(msg.channel).inc()
            if is_storage_failure(exc):
                self.outage.failed(exc)
            self._replay_wanted.set()
            raise
        self.outage.recovered()
        m.turn_seconds.labels(msg.channel).observe(time.perf_counter() - started)
        if result.duplicate:
            m.duplicates.labels(msg.channel).inc()
        if result.handed_off:
            m.handoffs.labels(msg.channel).inc()
        m.replies.labels(msg.channel).inc(len(result.replies))
        return result

    async def _replay_loop(self, started_at: datetime) -> None:
        delay = 0.0  # the start-up pass runs at once
        sweep = self.settings.inbox_replay_sweep_seconds
        # The start-up pass answers what was left before this process started;
        # a message received since is its live turn's, which would otherwise
        # race the pass for it (answered once either way, but the sender was
        # told "duplicate" for its own message).
        first: datetime | None = started_at
        # The flag, not only the cancellation, ends the loop: a cancellation
        # can be lost inside redis-py while a pass waits for a chat's lock (on
        # Python 3.11 its commands run in asyncio.wait_for, which may return a
        # call that has just finished instead of raising: CPython gh-86296),
        # and a loop that lived on after close kept passing over a closed
        # container ("inbox replay did not stop in 10 s", seen where a lock
        # outlived its wait).
        while not self._closing:
            # A pass when a turn here failed, and every so often anyway: what
            # another process accepted and then died (or failed) with is
            # answered by the survivors, not only at the next start-up.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._replay_wanted.wait(), sweep)
            wanted = self._replay_wanted.is_set()
            if wanted and delay:
                await asyncio.sleep(delay)
            if self._closing:
                return
            self._replay_wanted.clear()
            # A periodic pass leaves young entries to the turns still running.
            before = None if wanted else datetime.now(UTC) - timedelta(seconds=sweep)
            if first is not None:
                before, first = first, None
            try:
                done = await self.pipeline.replay_unprocessed(received_before=before)
            except Exception as exc:
                if is_storage_failure(exc):
                    self.outage.failed(exc)
                elif isinstance(exc, ReplayIncomplete):
                    self.replayed += exc.done
                    # Held by a live turn elsewhere, or a dead one's until its TTL.
                    log.info("inbox replay: %d conversations busy; retrying", exc.busy)
                elif isinstance(exc, LockTimeout):
                    log.info("inbox replay: a conversation is busy; retrying")
                else:
                    log.warning("inbox replay failed (%s); retrying", type(exc).__name__)
                self._replay_wanted.set()
                if isinstance(exc, ReplayIncomplete | LockTimeout):
                    delay = REPLAY_BUSY_DELAY_SECONDS
                else:
                    delay = min(
                        max(delay * 2, REPLAY_FIRST_DELAY_SECONDS), REPLAY_MAX_DELAY_SECONDS
                    )
                continue
            self.outage.recovered()
            delay = REPLAY_FIRST_DELAY_SECONDS
            self.replayed += done
            if done:
                log.info("replayed %d unanswered inbox entries", done)

    async def mark_delivered(self, channel: str, chat_id: str, message_ids: Sequence[int]) -> int:
        return await self.delivery.mark_delivered(channel, chat_id, message_ids)

    async def ping_database(self) -> bool:
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS), self.db.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            if is_storage_failure(exc):
                self.outage.failed(exc)
            else:
                log.warning("database not reachable: %s", type(exc).__name__)
            return False
        self.outage.recovered()
        return True
