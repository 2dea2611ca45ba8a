"""Operators' queue benchmark: handoffs, draining a backlog, resolving.

The real path throughout: customers hand off through the Pipeline (inbox,
lock, embedded NLU, engine, one transaction, the operator service's hook),
then operators come online one after another and the backlog drains through
OperatorService (a conditional UPDATE and a join notice per chat), then every
chat is resolved (the NPS question written, the drain looked at again).

Run: ``.venv/bin/python bench/operators.py [--chats 150] [--operators 50]``
``[--db sqlite|postgres|both]``.
PostgreSQL: ``DATABASE_URL`` if it points at PostgreSQL, else a throw-away
database created on 127.0.0.1:5432 (user postgres) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch_db import drop_database, pg_database
from sqlalchemy import func, select

from bot.channels.base import InlineChannel
from bot.conversations import ConversationService
from bot.operators.service import OperatorService
from bot.pipeline import Pipeline
from config import Settings, load_settings
from dialogs.engine import DialogEngine
from dialogs.messages import InboundMessage
from nlu.embedded import EmbeddedNluParser, train_model
from storage.crypto import PersonalDataVault
from storage.db import create_engine, create_session_factory
from storage.locks import MemoryLockStore
from storage.models import (
    Base,
    Conversation,
    Operator,
    OperatorRole,
    Owner,
    Presence,
)
from storage.pubsub import MemoryPubSub

# Tuesday 10:00 Moscow: the contact center is open.
NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def ms(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values) * 1000:6.1f} ms  "
        f"p95 {percentile(values, 95) * 1000:6.1f} ms"
    )


async def bench(
    settings: Settings, nlu: EmbeddedNluParser, chats: int, operators: int, *, hook: bool = True
) -> None:
    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    sessions = create_session_factory(engine)
    vault = PersonalDataVault(settings.secret_key.get_secret_value())
    locks = MemoryLockStore()
    conversations = ConversationService(
        settings,
        sessions,
        locks,
        MemoryPubSub(),
        channels={"bench": InlineChannel("bench")},
        clock=lambda: NOW,
    )
    ops = OperatorService(conversations, locks, clock=lambda: NOW)
    pipeline = Pipeline(
        settings,
        sessions,
        nlu,
        locks,
        DialogEngine(settings),
        vault,
        clock=lambda: NOW,
        conversations=conversations,
        after_turn=ops.after_turn if hook else None,
    )
    kind = "SQLite" if settings.is_sqlite else "PostgreSQL"
    try:
        async with sessions() as s:
            staff = [
                Operator(
                    login=f"op{n}",
                    display_name=f"Оператор {n}",
                    role=OperatorRole.OPERATOR,
                    password_hash="-",
                    active=True,
                    presence=Presence.OFFLINE,
                    created_at=NOW,
                )
                for n in range(operators)
            ]
            s.add_all(staff)
            await s.commit()
            staff_ids = [op.id for op in staff]

        async def hand_off(n: int, latencies: list[float]) -> None:
            msg = InboundMessage(
                channel="bench",
                chat_id=f"chat-{n}",
                user_id=f"user-{n}",
                text="позовите оператора",
                platform_message_id=f"m-{n}",
                received_at=NOW,
            )
            started = time.perf_counter()
            result = await pipeline.handle(msg)
            latencies.append(time.perf_counter() - started)
            assert result.handed_off

        handoffs: list[float] = []
        start = time.perf_counter()
        await asyncio.gather(*(hand_off(n, handoffs) for n in range(chats)))
        elapsed = time.perf_counter() - start
        print(
            f"{kind:10} {chats} handoffs at once : {chats / elapsed:7.1f} turns/s  {ms(handoffs)}"
            + ("" if hook else "  (without the operator hook)")
        )
        if not hook:
            return

        start = time.perf_counter()
        for op_id in staff_ids:
            await ops.set_presence(op_id, Presence.ONLINE)
        elapsed = time.perf_counter() - start
        async with sessions() as s:
            assigned = await s.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.owner == Owner.OPERATOR)
            )
        print(
            f"{kind:10} backlog drained       : {assigned} chats to {operators} operators "
            f"in {elapsed:.2f} s ({(assigned or 0) / elapsed:6.1f} chats/s), "
            f"{len(await ops.queue())} left waiting"
        )

        async with sessions() as s:
            owned = (
                await s.execute(
                    select(Conversation.id, Conversation.owner_operator_id).where(
                        Conversation.owner == Owner.OPERATOR
                    )
                )
            ).all()
        resolves: list[float] = []
        start = time.perf_counter()
        for conv_id, owner_id in owned:
            began = time.perf_counter()
            assert owner_id is not None
            await ops.resolve(owner_id, conv_id)
            resolves.append(time.perf_counter() - began)
        elapsed = time.perf_counter() - start
        print(
            f"{kind:10} resolve one by one    : {len(owned) / elapsed:7.1f} chats/s  "
            f"{ms(resolves)}  (each drains what waits: "
            f"{len(await ops.queue())} left waiting)"
        )
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--chats", type=int, default=150)
    parser.add_argument("--operators", type=int, default=50)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--without-hook", action="store_true", help="the handoffs only, no operator service"
    )
    args = parser.parse_args()
    base = load_settings(environment="test", secret_key="bench-secret", load_demo_data=False)
    nlu = EmbeddedNluParser(train_model(), base.nlu_fallback_threshold)
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}"
            await bench(
                base.model_copy(update={"database_url": url}),
                nlu,
                args.chats,
                args.operators,
                hook=not args.without_hook,
            )
    if args.db in ("postgres", "both"):
        url, created = await pg_database()
        try:
            await bench(
                base.model_copy(update={"database_url": url}),
                nlu,
                args.chats,
                args.operators,
                hook=not args.without_hook,
            )
        finally:
            if created:
                await drop_database(created)


if __name__ == "__main__":
    asyncio.run(main())
