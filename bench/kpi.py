"""KPI benchmark: how long the dashboard's figures take on a month of history.

Fills a fresh database with a synthetic month at the company's scale
(``--per-day`` conversations a day, each with a few customer and bot
messages; a quarter handed to operators, with their replies; appeals and NPS
answers), then times :func:`handlers.kpi.compute_kpis` for the last 7 and the
whole 30 days, and once more with an index on ``messages.created_at`` made by
this script (the schema has none: the KPI query over messages scans the
table), so the figures say whether the index is worth a migration.

PostgreSQL (a database made on 127.0.0.1:5432 and dropped at the end) and an
SQLite file, one after the other.

    .venv/bin/python bench/kpi.py [--per-day 1000] [--days 30] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout, not whatever the venv has installed

from scratch_db import create_database, drop_database  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from config import load_settings  # noqa: E402
from handlers.kpi import compute_kpis, day_bounds  # noqa: E402
from storage.db import create_engine, create_session_factory  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.models import (  # noqa: E402
    Appeal,
    AppealCategory,
    AppealStatus,
    ChannelIdentity,
    Conversation,
    Direction,
    HandoffOutcome,
    HandoffQueueEntry,
    HandoffStatus,
    Message,
    NpsResponse,
    Operator,
    OperatorRole,
    Sender,
)

CHANNELS = ("telegram", "whatsapp", "webchat")
OPERATORS = 12
BATCH = 5000


Rows = dict[str, list[dict[str, object]]]


def rows_for(per_day: int, days: int, end: date, seed: int = 8) -> Rows:
    rnd = random.Random(seed)
    since, _ = day_bounds(end - timedelta(days=days), end)
    out: Rows = {
        k: [] for k in ("identities", "conversations", "messages", "handoffs", "appeals", "nps")
    }
    out["operators"] = [
        {
            "id": i,
            "login": f"op{i}",
            "display_name": f"Оператор {i}",
            "role": OperatorRole.OPERATOR,
            "password_hash": "-",
            "active": True,
            "created_at": since,
        }
        for i in range(1, OPERATORS + 1)
    ]
    conv = msg = entry = appeal = 0
    for day in range(days):
        for _ in range(per_day):
            conv += 1
            channel = rnd.choice(CHANNELS)
            start = since + timedelta(days=day, seconds=rnd.uniform(8 * 3600, 20 * 3600))
            out["identities"].append({"id": conv, "channel": channel, "user_id": f"u{conv}"})
            out["conversations"].append(
                {"id": conv, "channel": channel, "chat_id": f"c{conv}", "identity_id": conv}
            )
            at = start
            for _ in range(rnd.randint(2, 6)):
                for sender in (Sender.CUSTOMER, Sender.BOT):
                    msg += 1
                    at += timedelta(seconds=rnd.uniform(5, 90))
                    inbound = sender == Sender.CUSTOMER
                    out["messages"].append(
                        {
                            "id": msg,
                            "conversation_id": conv,
                            "direction": Direction.IN if inbound else Direction.OUT,
                            "sender": sender,
                            "text": "…",
                            "operator_id": None,
                            "created_at": at,
                        }
                    )
            if rnd.random() < 0.25:
                entry += 1
                op = rnd.randint(1, OPERATORS)
                taken = at + timedelta(seconds=rnd.uniform(10, 600))
                first = taken + timedelta(seconds=rnd.uniform(10, 120))
                closed = first + timedelta(seconds=rnd.uniform(120, 1800))
                out["handoffs"].append(
                    {
                        "id": entry,
                        "conversation_id": conv,
                        "reason": "operator",
                        "summary": "",
                        "status": HandoffStatus.CLOSED,
                        "operator_id": op,
                        "outcome": HandoffOutcome.RESOLVED,
                        "created_at": at,
                        "taken_at": taken,
                        "first_response_at": first,
                        "closed_at": closed,
                    }
                )
                for k in range(rnd.randint(1, 5)):
                    msg += 1
                    out["messages"].append(
                        {
                            "id": msg,
                            "conversation_id": conv,
                            "direction": Direction.OUT,
                            "sender": Sender.OPERATOR,
                            "text": "…",
                            "operator_id": op,
                            "created_at": first + timedelta(seconds=30 * k),
                        }
                    )
                out["nps"].append(
                    {
                        "conversation_id": conv,
                        "handoff_id": entry,
                        "operator_id": op,
                        "channel": channel,
                        "score": rnd.choice((10, 10, 9, 9, 9, 8, 7, 6, 3)),
                        "created_at": closed + timedelta(minutes=1),
                    }
                )
            if rnd.random() < 0.1:
                appeal += 1
                resolved = at + timedelta(hours=rnd.uniform(1, 40))
                out["appeals"].append(
                    {
                        "number": f"A-B-{appeal:06d}",
                        "conversation_id": conv,
                        "channel": channel,
                        "category": AppealCategory.CHARGES,
                        "description": "…",
                        "status": AppealStatus.RESOLVED,
                        "created_at": at,
                        "review_due_at": at,
                        "decision_due_at": at,
                        "resolved_at": resolved,
                    }
                )
    return out


async def fill(url: str, rows: Rows) -> None:
    settings = load_settings(environment="test", database_url=url, secret_key="bench")
    await upgrade_async(settings)
    engine = create_engine(settings)
    try:
        for key, model in (
            ("operators", Operator),
            ("identities", ChannelIdentity),
            ("conversations", Conversation),
            ("messages", Message),
            ("handoffs", HandoffQueueEntry),
            ("appeals", Appeal),
            ("nps", NpsResponse),
        ):
            data = rows[key]
            for i in range(0, len(data), BATCH):
                async with engine.begin() as conn:
                    await conn.execute(insert(model), data[i : i + BATCH])
        if url.startswith("postgresql"):
            async with engine.connect() as conn:
                await conn.execute(text("COMMIT"))
                await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()


async def timed(url: str, end: date, days: int, repeat: int, now: datetime) -> list[float]:
    settings = load_settings(environment="test", database_url=url, secret_key="bench")
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    times = []
    try:
        for _ in range(repeat):
            async with sessions() as session:
                t0 = time.perf_counter()
                report = await compute_kpis(session, end - timedelta(days=days), end, now)
                times.append((time.perf_counter() - t0) * 1000)
        assert report.conversations > 0
    finally:
        await engine.dispose()
    return times


async def add_index(url: str) -> None:
    settings = load_settings(environment="test", database_url=url, secret_key="bench")
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE INDEX bench_messages_created ON messages (created_at)"))
            if url.startswith("sqlite"):
                await conn.execute(text("ANALYZE"))
        if url.startswith("postgresql"):
            async with engine.connect() as conn:
                await conn.execute(text("COMMIT"))
                await conn.execute(text("ANALYZE messages"))
    finally:
        await engine.dispose()


def show(label: str, times: list[float]) -> None:
    print(f"  {label:<28} median {statistics.median(times):7.1f} ms  min {min(times):7.1f} ms")


async def bench(url: str, name: str, args: argparse.Namespace) -> None:
    end = date(2026, 11, 27)
    now = datetime.combine(end, datetime.min.time(), UTC)
    rows = rows_for(args.per_day, args.days, end)
    t0 = time.perf_counter()
    await fill(url, rows)
    print(
        f"{name}: {len(rows['conversations'])} conversations, {len(rows['messages'])} messages, "
        f"{len(rows['handoffs'])} handoffs, {len(rows['appeals'])} appeals, "
        f"{len(rows['nps'])} NPS answers (filled in {time.perf_counter() - t0:.0f} s)"
    )
    for indexed in (False, True):
        if indexed:
            await add_index(url)
        suffix = " + index" if indexed else ""
        show(f"7 days{suffix}", await timed(url, end, 7, args.repeat, now))
        show(f"{args.days} days{suffix}", await timed(url, end, args.days, args.repeat, now))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()

    url, name = await create_database("heatdesk_bench_kpi")
    try:
        await bench(url, "PostgreSQL", args)
    finally:
        await drop_database(name)
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            await bench(f"sqlite+aiosqlite:///{tmp}/kpi.sqlite3", "SQLite", args)


if __name__ == "__main__":
    asyncio.run(main())
