"""Appeal notices and deadlines: the scheduled work on appeals.

Every so often (``notice_interval_seconds``) each process runs one pass:

1. deadlines: an appeal still REGISTERED at its preliminary-review deadline
   (48 hours) goes to IN_REVIEW ("взято в работу"), which the customer is
   told of like any status change; an open appeal past its decision deadline
   (10 working days) gets a high priority and a task for the supervisors,
   once (the status stays: only staff decide an appeal);
2. notices: every status change not yet told (``notified_at`` NULL), from
   the console or from step 1, goes to the customer's chat through
   :meth:`ConversationService.post` (sender SYSTEM), and the change is marked
   told in the transaction that writes the message and its outbox row (the
   post's ``before`` hook).

Correctness across processes comes from the database, not the scheduler:
every process runs the pass, a deadline move re-checks the appeal under its
row lock, and a notice is claimed by ``UPDATE ... WHERE notified_at IS NULL``
inside the post's transaction (on PostgreSQL a second claimer waits for the
first to commit and then matches no row), so a notice is written once.

Where a notice goes: the appeal's own conversation, else the most recent
conversation of an identity linked to the appeal's account. A change with no
such chat is marked told with nobody to tell (logged): staff see the status
in the console. On WhatsApp free text is allowed only within 24 hours of the
customer's last message; outside it, with no approved reply template
(``TWILIO_TEMPLATES``), the adapter would hold the message for an operator,
so the notice waits pending instead and goes out once the customer writes
again. With a template, the outbox sends it as that template.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels.whatsapp import CHANNEL as WHATSAPP
from bot.channels.whatsapp import REPLY_TEMPLATE, WINDOW
from bot.conversations import ConversationService, UnknownConversation
from config import Settings
from dialogs.flows.appeal_status import Texts, status_notice
from dialogs.messages import Reply
from handlers.appeals import (
    NoticeTarget,
    PendingNotice,
    claim_notice,
    due_for_review,
    escalate_overdue,
    notice_target,
    overdue_decisions,
    pending_notices,
    still_pending,
    take_into_review,
)
from storage.errors import OutageLog, is_storage_failure
from storage.locks import LockTimeout
from storage.models import Conversation, Sender
from storage.tasks import cancel_and_wait

log = logging.getLogger(__name__)

JOB_ID: Final = "appeal-notices"
STOP_TIMEOUT_SECONDS: Final = 10.0


class _AlreadyTold(Exception):
    """Another pass claimed the notice first: nothing is written."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class PassStats:
    """What one pass did (for logs and tests)."""

    reviewed: int = 0  # moved to IN_REVIEW at the review deadline
    escalated: int = 0  # past the decision deadline: priority and a task
    sent: int = 0  # notices written into a chat
    unreachable: int = 0  # no chat to tell: marked told
    deferred: int = 0  # WhatsApp outside the 24-hour window: left pending
    skipped: int = 0  # told by another pass before this one came to it
    lost_claims: int = 0  # another pass told it while this one waited for the chat


class AppealNotices:
    """One pass of the appeal jobs; safe to run in every process at once."""

    def __init__(
        self,
        settings: Settings,
        conversations: ConversationService,
        *,
        outage: OutageLog | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self._conversations = conversations
        self._outage = outage
        self._clock = clock
        self._random = random.Random()  # where a pass starts: no secret in it

    async def run_once(self) -> PassStats:
        stats = PassStats()
        await self.run_deadlines(stats)
        await self.send_pending(stats)
        return stats

    # --- deadlines -------------------------------------------------------------

    async def run_deadlines(self, stats: PassStats | None = None) -> PassStats:
        stats = stats or PassStats()
        now = self._clock()
        batch = self.settings.notice_batch_size
        async with self._conversations.sessions() as session:
            to_review = await due_for_review(session, now, batch)
            overdue = await overdue_decisions(session, now, batch)
        # One transaction an appeal: a row lock is held for one appeal at a time.
        for appeal_id in to_review:
            async with self._conversations.transaction() as session:
                moved = await take_into_review(session, appeal_id, Texts.auto_review_comment, now)
                await session.commit()
            if moved is not None:
                stats.reviewed += 1
                log.info("appeal %s taken into review at its review deadline", appeal_id)
        for appeal_id in overdue:
            async with self._conversations.transaction() as session:
                task_id = await escalate_overdue(session, appeal_id, now, self.settings.tz)
                await session.commit()
            if task_id is not None:
                stats.escalated += 1
                log.info("appeal %s overdue: priority raised, task %s opened", appeal_id, task_id)
        return stats

    # --- notices ---------------------------------------------------------------

    async def send_pending(self, stats: PassStats | None = None) -> PassStats:
        """Tell every pending status change, oldest first, page by page (a
        deferred WhatsApp notice does not hold up the ones after it)."""
        stats = stats or PassStats()
        after = 0
        while True:
            async with self._conversations.sessions() as session:
                page = await pending_notices(session, self.settings.notice_batch_size, after)
                targets = [await notice_target(session, n) for n in page]
            if not page:
                return stats
            chats: dict[tuple[str, str] | None, list[tuple[PendingNotice, NoticeTarget | None]]]
            chats = {}
            for notice, target in zip(page, targets, strict=True):
                key = (target.channel, target.chat_id) if target is not None else None
                chats.setdefault(key, []).append((notice, target))
            groups = list(chats.values())
            # The passes of other processes walk the same page. Each starts at
            # a chat of its own choosing (a chat's notices keep their order), so
            # they seldom reach one chat together, where one would wait on its
            # lock only to find it told; what another pass told is skipped.
            start = self._random.randrange(len(groups))
            for group in groups[start:] + groups[:start]:
                async with self._conversations.sessions() as session:
                    pending = await still_pending(session, [n.change_id for n, _ in group])
                for notice, target in group:
                    if notice.change_id not in pending:
                        stats.skipped += 1
                    elif not await self._tell(notice, target, stats):
                        break  # the chat's later notices wait too: they go in order
            after = page[-1].change_id

    async def _tell(
        self, notice: PendingNotice, target: NoticeTarget | None, stats: PassStats
    ) -> bool:
        """Tell one notice; False when its chat is to be left for a later pass."""
        if target is None:
            async with self._conversations.transaction() as session:
                claimed = await claim_notice(session, notice.change_id, self._clock())
                await session.commit()
            if claimed:
                stats.unreachable += 1
                log.info("appeal %s: no chat to tell of its status change", notice.appeal_id)
            return True
        if self._outside_whatsapp_window(target):
            stats.deferred += 1
            return False
        text = status_notice(
            notice.number, notice.status, notice.comment, notice.decision_due_at, self.settings.tz
        )

        async def claim(session: AsyncSession, conv: Conversation) -> None:
            # In the post's transaction, under the chat's lock: the claim
            # commits with the message and its outbox row, or not at all.
            if not await claim_notice(session, notice.change_id, self._clock()):
                raise _AlreadyTold

        try:
            await self._conversations.post(
                target.channel, target.chat_id, [Reply(text)], sender=Sender.SYSTEM, before=claim
            )
        except _AlreadyTold:
            stats.lost_claims += 1
            return True
        except (LockTimeout, UnknownConversation) as exc:
            # The chat is busy (a long turn) or gone: the next pass tries again.
            log.info("appeal notice %s postponed (%s)", notice.change_id, type(exc).__name__)
            return False
        stats.sent += 1
        return True

    def _outside_whatsapp_window(self, target: NoticeTarget) -> bool:
        if target.channel != WHATSAPP or REPLY_TEMPLATE in self.settings.twilio_templates:
            return False
        last = target.last_customer_message_at
        return last is None or self._clock() - last > WINDOW

    # --- the scheduled job -------------------------------------------------------

    async def run_job(self) -> None:
        """The scheduler's entry: one pass, its failures logged, never raised."""
        try:
            stats = await self.run_once()
        except Exception as exc:
            if self._outage is not None and is_storage_failure(exc):
                self._outage.failed(exc)
            else:
                log.exception("appeal notices pass failed")
            return
        if self._outage is not None:
            self._outage.recovered()
        if stats.sent or stats.reviewed or stats.escalated:
            log.info(
                "appeal jobs: %d notices sent, %d taken into review, %d escalated",
                stats.sent,
                stats.reviewed,
                stats.escalated,
            )


class NoticeScheduler:
    """Runs :meth:`AppealNotices.run_job` every ``notice_interval_seconds``
    on APScheduler's asyncio scheduler, one run at a time per process."""

    def __init__(self, settings: Settings, notices: AppealNotices) -> None:
        self.settings = settings
        self.notices = notices
        self._scheduler: Any = None
        self._running: set[asyncio.Task[Any]] = set()

    @property
    def started(self) -> bool:
        return self._scheduler is not None

    async def start(self) -> None:
        if self._scheduler is not None:
            return
        # APScheduler logs every run at INFO ("Running job ...", "executed
        # successfully"): a pair of lines every interval in every process.
        logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        scheduler.add_job(
            self._job,
            "interval",
            seconds=self.settings.notice_interval_seconds,
            id=JOB_ID,
            max_instances=1,  # a slow pass is not run twice over in one process
            coalesce=True,  # passes missed while one ran are one pass, not a burst
            misfire_grace_time=None,
        )
        scheduler.start()
        self._scheduler = scheduler

    def run_soon(self) -> None:
        """A pass now, besides the schedule (the console, after a status
        change: the customer hears of it at once, not at the next interval)."""
        if self._scheduler is None:
            return
        task = asyncio.create_task(self._job(), name="appeal-notices-now")
        self._running.add(task)

    async def _job(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await self.notices.run_job()
        finally:
            self._running.discard(task)

    async def stop(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # the shutdown runs on the loop: no new runs after this
        for task in list(self._running):
            if not await cancel_and_wait(task, STOP_TIMEOUT_SECONDS):
                log.warning("appeal notices pass did not stop in %.0f s", STOP_TIMEOUT_SECONDS)
