"""Notices benchmark: how fast a pass tells pending appeal status changes.

N customers each have a widget conversation and one appeal whose status was
just changed (a pending notice). ``--workers`` passes of the notices job run
at once on one event loop, as several processes would (each notice is
claimed in the transaction that writes it; the chat's lock is an in-process
lock here). Printed: the wall time, notices a second, statements a notice,
and the check that each customer got exactly one notice.

Run: ``.venv/bin/python bench/notices.py [--notices 500] [--workers 2]
[--db sqlite|postgres|both]``.
PostgreSQL: a throw-away database on 127.0.0.1:5432 (user postgres), dropped
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch_db import create_database, drop_database
from sqlalchemy import event, func, select

from bot.conversations import ConversationService
from bot.notices import AppealNotices, PassStats
from config import Settings, load_settings
from handlers.appeals import NewAppeal, change_status, create_appeal
from storage.crypto import PersonalDataVault
from storage.db import create_engine, create_session_factory
from storage.locks import MemoryLockStore
from storage.migrate import upgrade
from storage.models import (
    Appeal,
    AppealCategory,
    AppealStatus,
    ChannelIdentity,
    Conversation,
    Message,
    Sender,
)
from storage.pubsub import MemoryPubSub


def settings_for(url: str) -> Settings:
    return load_settings(
        environment="test", database_url=url, secret_key="bench-secret", load_demo_data=False
    )


async def seed(settings: Settings, count: int) -> None:
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    vault = PersonalDataVault(settings.secret_key.get_secret_value())
    now = datetime.now(UTC)
    async with sessions() as s:
        for i in range(count):
            identity = ChannelIdentity(channel="webchat", user_id=f"bench-{i}")
            s.add(identity)
            await s.flush()
            conv = Conversation(
                channel="webchat", chat_id=f"bench-{i}", identity_id=identity.id, state={}
            )
            s.add(conv)
            await s.flush()
            info = await create_appeal(
                s,
                vault,
                settings,
                NewAppeal(
                    category=AppealCategory.CHARGES,
                    description="Прошу сделать перерасчёт",
                    conversation_id=conv.id,
                ),
                now,
            )
            appeal_id = await s.scalar(select(Appeal.id).where(Appeal.number == info.number))
            assert appeal_id is not None
            await change_status(s, appeal_id, AppealStatus.IN_REVIEW, "Передано в отдел", now)
        await s.commit()
    await engine.dispose()


async def measure(settings: Settings, count: int, workers: int) -> None:
    await seed(settings, count)
    engine = create_engine(settings)
    statements = 0

    def counted(*_args: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine.sync_engine, "before_cursor_execute", counted)
    sessions = create_session_factory(engine)
    # No channel adapters: the outbox rows stay for a delivery worker.
    conversations = ConversationService(settings, sessions, MemoryLockStore(), MemoryPubSub())
    passes = [AppealNotices(settings, conversations) for _ in range(workers)]
    started = time.perf_counter()
    results: list[PassStats] = list(await asyncio.gather(*(p.send_pending() for p in passes)))
    elapsed = time.perf_counter() - started
    async with sessions() as s:
        told = await s.scalar(
            select(func.count(func.distinct(Message.conversation_id))).where(
                Message.sender == Sender.SYSTEM
            )
        )
        written = await s.scalar(
            select(func.count()).select_from(Message).where(Message.sender == Sender.SYSTEM)
        )
    await engine.dispose()
    sent = sum(r.sent for r in results)
    print(
        f"{settings.database_url.split(':')[0]}: {count} notices, {workers} passes at once: "
        f"{elapsed:.2f} s, {sent / elapsed:.0f} notices/s, "
        f"{statements / max(sent, 1):.1f} statements a notice, "
        f"skipped (told by the other pass) {sum(r.skipped for r in results)}, "
        f"claims lost waiting for a chat {sum(r.lost_claims for r in results)}; "
        f"customers told {told}, notices written {written} (want {count} and {count})"
    )


async def run_postgres(count: int, workers: int) -> None:
    url, name = await create_database("heatdesk_bench_notices")
    try:
        settings = settings_for(url)
        await asyncio.to_thread(upgrade, settings)
        await measure(settings, count, workers)
    finally:
        await drop_database(name)


async def run_sqlite(count: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(f"sqlite+aiosqlite:///{tmp}/bench.sqlite3")
        await asyncio.to_thread(upgrade, settings)
        await measure(settings, count, workers)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--notices", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    if args.db in ("sqlite", "both"):
        await run_sqlite(args.notices, args.workers)
    if args.db in ("postgres", "both"):
        await run_postgres(args.notices, args.workers)


if __name__ == "__main__":
    asyncio.run(main())
