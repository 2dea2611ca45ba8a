"""The delivery worker: outbox rows out through the channel adapters.

The conversation service writes replies and their PENDING outbox rows in one
transaction, then calls :meth:`DeliveryWorker.on_committed`; a periodic sweep picks up
anything else that is due (retries, rows left by a crash). A row is claimed
before it is sent by moving its ``next_attempt_at`` forward under a
conditional UPDATE (a lease), so two workers, in one process or several,
never send it twice; a worker that dies mid-send leaves the lease to expire
and the row is tried again (at-least-once towards the platform, deduplicated
by message id in the widget).

Rows of one conversation go out in order: after a failure the later rows of
that conversation wait for the next pass.

A widget socket may be held by another process: the adapter then hands the
row over through pub/sub (:class:`bot.errors.HandedOver`), the process that
holds the socket pushes it and marks it sent, and this worker leaves the row
alone until its lease runs out (the outbox stays the source of truth).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot.channels.base import ChannelAdapter
from bot.errors import (
    HandedOver,
    PermanentDeliveryError,
    RecipientOffline,
    RetryAfter,
    UnknownChannel,
)
from bot.metrics import BotMetrics
from dialogs.messages import Reply
from storage.errors import OutageLog, is_storage_failure
from storage.models import DeliveryStatus, OutboxEntry
from storage.tasks import cancel_and_wait

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 8
    base_backoff_seconds: float = 2.0  # 2, 4, 8, ... capped
    max_backoff_seconds: float = 600.0
    lease_seconds: float = 60.0
    # A web chat with no open tab: look again later; the history on the
    # customer's return marks the row sent anyway.
    offline_park_seconds: float = 300.0
    sweep_interval_seconds: float = 5.0
    # The sweep leaves rows this young to the turn's own on_committed pass,
    # so a customer's replies go out before the turn returns (the widget's
    # ack follows its replies) and are not raced for.
    sweep_min_age_seconds: float = 5.0
    batch_size: int = 100
    # Storing a pass's outcomes is retried this often while the rows' lease
    # holds: a reply already sent and not marked so would go out again.
    record_retry_seconds: float = 0.5

    def backoff(self, attempts: int) -> float:
        """Delay before the next try after ``attempts`` failed attempts."""
        exp = self.base_backoff_seconds * (2 ** max(attempts - 1, 0))
        return float(min(self.max_backoff_seconds, exp))


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    OFFLINE = "offline"
    HANDED_OVER = "handed_over"  # pushed by the process that holds the socket
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class _Claimed:
    """A leased outbox row, detached from any session."""

    id: int
    conversation_id: int
    message_id: int
    channel: str
    chat_id: str
    body: dict[str, Any]
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class _Result:
    row: _Claimed
    outcome: Outcome
    attempts: int
    delay: float  # seconds until the next try, when it stays pending
    error: str | None


@dataclass(slots=True)
class PassStats:
    outcomes: dict[Outcome, int] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def __getitem__(self, outcome: Outcome) -> int:
        return self.outcomes.get(outcome, 0)


class DeliveryWorker:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        adapters: Mapping[str, ChannelAdapter],
        policy: DeliveryPolicy | None = None,
        metrics: BotMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        outage: OutageLog | None = None,
    ) -> None:
        self._sf = session_factory
        bind = session_factory.kw["bind"]
        assert isinstance(bind, AsyncEngine)
        self._autocommit = bind.execution_options(isolation_level="AUTOCOMMIT")
        # The claim statements, built once per shape (building them, with their
        # aliased subquery, cost more than running them).
        self._claims: dict[tuple[bool, bool], Any] = {}
        self._outage = outage
        self._adapters = adapters
        self.policy = policy or DeliveryPolicy()
        self._metrics = metrics
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="delivery-worker")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            try:
                await asyncio.wait_for(task, timeout=5)
            except TimeoutError:
                await cancel_and_wait(task, 5)

    def wake(self) -> None:
        self._wake.set()

    async def on_committed(self, conversation_id: int) -> None:
        """Send that conversation's new replies now (the pipeline's hook)."""
        try:
            await self.run_once(conversation_id)
        except Exception:
            # The rows are committed; the sweep will send them.
            log.exception("delivery right after commit failed; the sweep retries")
            self.wake()

    async def _loop(self) -> None:
        while not self._stopping:
            # Cleared before the pass: a wake-up during it triggers another.
            self._wake.clear()
            try:
                await self.run_once(min_age_seconds=self.policy.sweep_min_age_seconds)
            except Exception as exc:
                if self._outage is not None and is_storage_failure(exc):
                    self._outage.failed(exc)  # one line per outage, not a traceback a sweep
                else:
                    log.exception("delivery sweep failed")
            else:
                if self._outage is not None:
                    self._outage.recovered()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.policy.sweep_interval_seconds)

    # --- one pass -------------------------------------------------------------

    async def run_once(
        self, conversation_id: int | None = None, *, min_age_seconds: float = 0.0
    ) -> PassStats:
        """Try every due row (of one conversation, if given; created at least
        ``min_age_seconds`` ago) once."""
        stats = PassStats()
        loop = asyncio.get_running_loop()
        leased_until = loop.time() + self.policy.lease_seconds
        claimed = await self._claim_due(conversation_id, min_age_seconds)
        while claimed:
            by_conversation: dict[int, list[_Claimed]] = {}
            for row in claimed:
                by_conversation.setdefault(row.conversation_id, []).append(row)
            all_sent = True
            for rows in by_conversation.values():
                results: list[_Result] = []
                for row in rows:
                    result = await self._send(row)
                    results.append(result)
                    stats.add(result.outcome)
                    if result.outcome not in (Outcome.SENT, Outcome.HANDED_OVER):
                        break  # the later rows of this conversation wait their turn
                all_sent = all_sent and all(r.outcome is Outcome.SENT for r in results)
                released = [r.id for r in rows[len(results) :]]
                await self._record_within(leased_until, results, released)
            if conversation_id is None or not all_sent:
                break
            # Rows of a later turn committed while ours were out (the customer
            # answered the first reply at once, maybe through another process)
            # found ours leased and held back: their own pass claimed nothing,
            # so this one takes them now rather than leaving them to the sweep.
            # Asked after our outcomes are committed: a turn committed after
            # this claim sees ours sent and claims its rows itself.
            leased_until = loop.time() + self.policy.lease_seconds
            claimed = await self._claim_due(conversation_id, min_age_seconds)
        return stats

    async def _claim_due(
        self, conversation_id: int | None, min_age_seconds: float
    ) -> list[_Claimed]:
        """Lease the due rows in one statement; rows another worker holds are
        not due any more, so each row is claimed by one worker only."""
        now = self._clock()
        params: dict[str, object] = {
            "now": now,
            "lease": now + timedelta(seconds=self.policy.lease_seconds),
        }
        if conversation_id is not None:
            params["claim_conversation_id"] = conversation_id
        if min_age_seconds > 0:
            params["created_before"] = now - timedelta(seconds=min_age_seconds)
        shape = (conversation_id is not None, min_age_seconds > 0)
        statement = self._claims.get(shape)
        if statement is None:
            statement = self._claims[shape] = _claim_statement(*shape, self.policy.batch_size)
        # One statement in autocommit: without the round trips of BEGIN and COMMIT.
        async with self._autocommit.connect() as conn:
            rows = (await conn.execute(statement, params)).all()
        return sorted((_Claimed(*row) for row in rows), key=lambda r: r.id)

    async def _send(self, row: _Claimed) -> _Result:
        policy = self.policy
        attempts = row.attempts
        try:
            adapter = self._adapters.get(row.channel)
            if adapter is None:
                raise UnknownChannel(f"no adapter for channel {row.channel!r}")
            await adapter.send(
                row.chat_id,
                Reply.from_json(row.body),
                message_id=row.message_id,
                at=row.created_at,
                sender=str(row.body.get("sender", "bot")),
            )
        except HandedOver as exc:
            # The process holding the socket marks it sent; the lease is the
            # only wait if that process died before it could.
            result = _Result(row, Outcome.HANDED_OVER, attempts, policy.lease_seconds, str(exc))
        except RecipientOffline as exc:
            result = _Result(row, Outcome.OFFLINE, attempts, policy.offline_park_seconds, str(exc))
        except RetryAfter as exc:
            attempts += 1
            result = _Result(row, Outcome.RATE_LIMITED, attempts, exc.retry_after, str(exc))
        except PermanentDeliveryError as exc:
            result = _Result(row, Outcome.FAILED, attempts + 1, 0.0, str(exc))
        except Exception as exc:  # DeliveryError, or an adapter that leaked one
            attempts += 1
            error = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, UnknownChannel):
                log.warning(
                    "delivery of outbox %s failed (attempt %s): %s", row.id, attempts, error
                )
            result = _Result(row, Outcome.RETRY, attempts, policy.backoff(attempts), error)
        else:
            result = _Result(row, Outcome.SENT, attempts, 0.0, None)
        if (
            result.outcome in (Outcome.RETRY, Outcome.RATE_LIMITED)
            and attempts >= policy.max_attempts
        ):
            result = _Result(row, Outcome.FAILED, attempts, 0.0, result.error)
        if self._metrics is not None:
            self._metrics.deliveries.labels(row.channel, result.outcome.value).inc()
        return result

    async def _record_within(
        self, leased_until: float, results: Sequence[_Result], released: Sequence[int]
    ) -> None:
        """:meth:`_record`, tried again on a storage failure until the rows'
        lease is nearly over (event loop time): the replies are out already,
        and a row whose outcome is not stored is sent again once its lease
        runs out, a duplicate for the customer (a pool exhausted under load
        did that)."""
        loop = asyncio.get_running_loop()
        retry = self.policy.record_retry_seconds
        warned = False
        while True:
            try:
                await self._record(results, released)
                return
            except Exception as exc:
                if not is_storage_failure(exc) or loop.time() + retry >= leased_until - retry:
                    raise
                if not warned:
                    log.warning(
                        "delivery outcome not stored (%s); retrying within the lease",
                        type(exc).__name__,
                    )
                    warned = True
            await asyncio.sleep(retry)

    async def _record(self, results: Sequence[_Result], released: Sequence[int]) -> None:
        """Store the outcomes of a conversation's rows in one transaction;
        rows held back behind a failure lose their lease (due again now)."""
        now = self._clock()
        if not released and all(r.outcome is Outcome.SENT for r in results):
            # The usual pass: everything went out; one statement, in autocommit.
            async with self._autocommit.connect() as conn:
                await conn.execute(_MARK_SENT, {"ids": [r.row.id for r in results], "now": now})
            return
        async with self._sf.begin() as session:
            for r in results:
                values: dict[str, object]
                if r.outcome is Outcome.SENT:
                    values = {"status": DeliveryStatus.SENT, "sent_at": now}
                elif r.outcome is Outcome.FAILED:
                    values = {
                        "status": DeliveryStatus.FAILED,
                        "attempts": r.attempts,
                        "last_error": r.error,
                    }
                else:
                    values = {
                        "attempts": r.attempts,
                        "last_error": r.error,
                        "next_attempt_at": now + timedelta(seconds=r.delay),
                    }
                await session.execute(
                    update(OutboxEntry)
                    .where(
                        OutboxEntry.id == r.row.id,
                        OutboxEntry.status == DeliveryStatus.PENDING,
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            if released:
                await session.execute(
                    update(OutboxEntry)
                    .where(
                        OutboxEntry.id.in_(list(released)),
                        OutboxEntry.status == DeliveryStatus.PENDING,
                    )
                    .values(next_attempt_at=now)
                    .execution_options(synchronize_session=False)
                )

    async def mark_delivered(self, channel: str, chat_id: str, message_ids: Sequence[int]) -> int:
        """Mark pending rows of these messages sent: the customer saw them
        another way (the widget's history on reconnect)."""
        if not message_ids:
            return 0
        async with self._sf.begin() as session:
            result = await session.execute(
                update(OutboxEntry)
                .where(
                    OutboxEntry.channel == channel,
                    OutboxEntry.chat_id == chat_id,
                    OutboxEntry.status == DeliveryStatus.PENDING,
                    OutboxEntry.message_id.in_(list(message_ids)),
                )
                .values(status=DeliveryStatus.SENT, sent_at=self._clock())
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]


# The usual outcome of a pass, built once: building the statement on every
# pass cost more than its cache lookup.
_MARK_SENT: Final = (
    update(OutboxEntry)
    .where(
        OutboxEntry.id.in_(bindparam("ids", expanding=True)),
        OutboxEntry.status == DeliveryStatus.PENDING,
    )
    .values(status=DeliveryStatus.SENT, sent_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


def _claim_statement(by_conversation: bool, by_age: bool, batch_size: int) -> Any:
    """Lease the due rows (``:now``, ``:lease``; ``:claim_conversation_id`` and
    ``:created_before`` when asked for) in one statement; rows another worker
    holds are not due any more, so each row is claimed by one worker only."""
    # A row waits while an earlier pending row of its conversation waits
    # (backoff, retry_after, another worker's lease): replies go out in order.
    earlier = aliased(OutboxEntry)
    held_back = (
        select(earlier.id)
        .where(
            earlier.conversation_id == OutboxEntry.conversation_id,
            earlier.status == DeliveryStatus.PENDING,
            earlier.id < OutboxEntry.id,
            earlier.next_attempt_at > bindparam("now"),
        )
        .exists()
    )
    due = select(OutboxEntry.id).where(
        OutboxEntry.status == DeliveryStatus.PENDING,
        OutboxEntry.next_attempt_at <= bindparam("now"),
        ~held_back,
    )
    if by_conversation:
        due = due.where(OutboxEntry.conversation_id == bindparam("claim_conversation_id"))
    if by_age:
        due = due.where(OutboxEntry.created_at <= bindparam("created_before"))
    due = due.order_by(OutboxEntry.id).limit(batch_size)
    return (
        update(OutboxEntry)
        .where(
            OutboxEntry.id.in_(due.scalar_subquery()),
            # Re-checked on the row itself: a concurrent claim wins once.
            OutboxEntry.status == DeliveryStatus.PENDING,
            OutboxEntry.next_attempt_at <= bindparam("now"),
        )
        .values(next_attempt_at=bindparam("lease"))
        .returning(
            OutboxEntry.id,
            OutboxEntry.conversation_id,
            OutboxEntry.message_id,
            OutboxEntry.channel,
            OutboxEntry.chat_id,
            OutboxEntry.body,
            OutboxEntry.attempts,
            OutboxEntry.created_at,
        )
        .execution_options(synchronize_session=False)
    )
