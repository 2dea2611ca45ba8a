"""Dialog benchmark: turns per second through the Pipeline and the engine.

Every turn takes the real path: inbox row, conversation lock, the embedded
NLU (real model), one engine step, and one transaction with the messages,
outbox rows and state. Many chats run a realistic script at once (greet,
link an account, balance, a meter reading with its confirmation, thanks).

Run: ``.venv/bin/python bench/dialog.py [--chats 40] [--rounds 2] [--db sqlite|postgres|both]``.
PostgreSQL: ``DATABASE_URL`` if it points at PostgreSQL, else a throw-away
database created on 127.0.0.1:5432 (user postgres) and dropped afterwards.

It also prints the SQL statements per turn (counted by a
``before_cursor_execute`` listener) and, on PostgreSQL, the round trips per
turn: those statements plus the BEGIN, COMMIT and ROLLBACK asyncpg sends
(on SQLite, the commits per turn). ``--root``
runs the same script against the code of another checkout (an older commit
in a ``git worktree``), to compare both in one run on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import itertools
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def _root() -> Path:
    """The checkout whose code is measured (``--root``, default this one)."""
    if "--root" in sys.argv:
        return Path(sys.argv[sys.argv.index("--root") + 1]).resolve()
    return Path(__file__).resolve().parent.parent


ROOT = _root()
sys.path.insert(0, str(ROOT))

from scratch_db import drop_database, pg_database  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker  # noqa: E402

from bot.pipeline import Pipeline  # noqa: E402
from config import Settings, load_settings  # noqa: E402
from dialogs.engine import DialogEngine  # noqa: E402
from dialogs.messages import InboundMessage  # noqa: E402
from nlu.embedded import EmbeddedNluParser, train_model  # noqa: E402
from storage.crypto import PersonalDataVault  # noqa: E402
from storage.db import create_engine, create_session_factory  # noqa: E402
from storage.demo_data import load_demo_data  # noqa: E402
from storage.locks import MemoryLockStore  # noqa: E402
from storage.models import Base  # noqa: E402

NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)

# (text, button payload or None): what one customer does.
SCRIPT: tuple[tuple[str, str | None], ...] = (
    ("Добрый день", None),
    ("хочу передать показания", None),
    ("1002003001 112-233-445 95", None),
    ("Отопление", '/submit_reading{"meter_type":"heating"}'),
    ("{value}", None),
    ("Да", "/affirm"),
    ("сколько я должен", None),
    ("начисления за март", None),
    ("как оплатить", None),
    ("где ваш офис", None),
    ("спасибо", None),
    ("до свидания", None),
)

_ids = itertools.count(1)
_readings = itertools.count(1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def run_chat(pipeline: Pipeline, chat: int, rounds: int, latencies: list[float]) -> int:
    turns = 0
    for _ in range(rounds):
        for text, payload in SCRIPT:
            if text == "{value}":
                # All chats share the demo meters: keep the values rising.
                text = f"{148.62 + next(_readings) * 0.001:.3f}".replace(".", ",")
            msg = InboundMessage(
                channel="test",
                chat_id=f"bench-{chat}",
                user_id=f"bench-user-{chat}",
                text=text,
                platform_message_id=f"b{next(_ids)}",
                received_at=NOW,
                payload=payload,
            )
            start = time.perf_counter()
            result = await pipeline.handle(msg)
            latencies.append(time.perf_counter() - start)
            if not result.replies:
                raise RuntimeError(f"no reply to {text!r}")
            turns += 1
    return turns


class RoundTrips:
    """Counts what a turn sends to the database: statements (a
    ``before_cursor_execute`` listener), and on PostgreSQL the BEGIN, COMMIT
    and ROLLBACK that asyncpg actually sends (SQLAlchemy's ``commit`` event
    fires for a transaction that never began, too)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements = 0
        self.commits = 0
        self.transaction_trips = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._statement)
        event.listen(engine.sync_engine, "commit", self._commit)
        _count_transaction_trips(self)

    def _statement(self, *_args: object) -> None:
        self.statements += 1

    def _commit(self, *_args: object) -> None:
        # A statement in autocommit (the inbox insert) has no COMMIT of its own.
        self.commits += 1

    def reset(self) -> None:
        self.statements = self.commits = self.transaction_trips = 0

    def summary(self, turns: int, postgres: bool) -> str:
        text = f"{self.statements / turns:4.1f} statements/turn"
        if postgres:
            trips = (self.statements + self.transaction_trips) / turns
            text += f", {trips:4.1f} round trips/turn (statements, BEGIN, COMMIT)"
        else:
            text += f", {self.commits / turns:3.1f} commits/turn"
        return text


def _count_transaction_trips(counter: RoundTrips) -> None:
    """asyncpg's transaction calls each send one simple query: count them."""
    from asyncpg.transaction import Transaction

    for name in ("start", "commit", "rollback"):
        original = getattr(Transaction, f"_heatdesk_{name}", None) or getattr(Transaction, name)
        setattr(Transaction, f"_heatdesk_{name}", original)

        def counted(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            counter.transaction_trips += 1
            return _original(self, *args, **kwargs)

        setattr(Transaction, name, counted)


def make_pipeline(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    nlu: EmbeddedNluParser,
    vault: PersonalDataVault,
) -> Pipeline:
    # Tests and benchmarks never read the wall clock for business time.
    kwargs: dict[str, Any] = {"clock": lambda: NOW}
    if "channels" in inspect.signature(Pipeline).parameters:
        from bot.channels.base import InlineChannel

        kwargs["channels"] = {"test": InlineChannel("test")}
    # An older checkout (--root) took a set of inline channel names, "test" among them.
    locks = MemoryLockStore()
    return Pipeline(settings, sessions, nlu, locks, DialogEngine(settings), vault, **kwargs)


async def bench(settings: Settings, nlu: EmbeddedNluParser, chats: int, rounds: int) -> None:
    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    sessions = create_session_factory(engine)
    vault = PersonalDataVault(settings.secret_key.get_secret_value())
    async with sessions() as session:
        await load_demo_data(session, vault, settings, NOW - timedelta(minutes=1))
    pipeline = make_pipeline(settings, sessions, nlu, vault)
    trips = RoundTrips(engine)
    kind = "SQLite" if settings.is_sqlite else "PostgreSQL"
    try:
        # Warm-up: one chat, sequential (connections, caches).
        await run_chat(pipeline, 10_000, 1, [])
        single: list[float] = []
        trips.reset()
        start = time.perf_counter()
        turns = await run_chat(pipeline, 10_001, rounds, single)
        seq_rate = turns / (time.perf_counter() - start)
        print(
            f"{kind:10} 1 chat    : {seq_rate:7.1f} turns/s  "
            f"p50 {statistics.median(single) * 1000:6.1f} ms  "
            f"p95 {percentile(single, 95) * 1000:6.1f} ms  "
            f"{trips.summary(turns, postgres=not settings.is_sqlite)}"
        )
        latencies: list[float] = []
        start = time.perf_counter()
        cpu = time.process_time()
        counts = await asyncio.gather(
            *(run_chat(pipeline, c, rounds, latencies) for c in range(chats))
        )
        elapsed = time.perf_counter() - start
        # This process's CPU (user + system) a turn: steadier than turns/s on
        # a shared machine, though it leaves out the database server's share.
        cpu_ms = (time.process_time() - cpu) * 1000 / sum(counts)
        print(
            f"{kind:10} {chats} chats : {sum(counts) / elapsed:7.1f} turns/s  "
            f"p50 {statistics.median(latencies) * 1000:6.1f} ms  "
            f"p95 {percentile(latencies, 95) * 1000:6.1f} ms  "
            f"p99 {percentile(latencies, 99) * 1000:6.1f} ms  ({sum(counts)} turns, "
            f"{cpu_ms:.1f} ms CPU a turn)"
        )
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--root", help="measure the code of this checkout instead")
    args = parser.parse_args()

    start = time.perf_counter()
    base = load_settings(environment="test", secret_key="bench-secret", load_demo_data=False)
    nlu = EmbeddedNluParser(train_model(), base.nlu_fallback_threshold)
    print(f"code: {ROOT}")
    print(f"NLU trained in {time.perf_counter() - start:.1f} s; script of {len(SCRIPT)} turns")

    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}"
            await bench(base.model_copy(update={"database_url": url}), nlu, args.chats, args.rounds)
    if args.db in ("postgres", "both"):
        url, created = await pg_database()
        try:
            settings = base.model_copy(update={"database_url": url})
            await bench(settings, nlu, args.chats, args.rounds)
        finally:
            if created:
                await drop_database(created)


if __name__ == "__main__":
    asyncio.run(main())
