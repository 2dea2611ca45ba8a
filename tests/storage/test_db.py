"""The engine and column types behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.db import (
    COMMITS_ALONE,
    begin_at_first_write,
    create_engine,
    create_session_factory,
    defers_begin,
)
from storage.models import (
    ChannelIdentity,
    Conversation,
    Direction,
    Message,
    Outage,
    OutageKind,
    Sender,
    Service,
)
from tests.conftest import PG_ADMIN_DSN, make_settings

MSK = timezone(timedelta(hours=3))


async def test_datetimes_come_back_aware_utc(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    moscow_noon = datetime(2026, 11, 27, 12, 0, tzinfo=MSK)
    async with session_factory() as s:
        s.add_all(
            [
                Outage(kind=OutageKind.PLANNED, service=Service.HEATING, street="ул. А",
                       reason="a", starts_at=moscow_noon, ends_at=moscow_noon),
                # Naive values are taken as UTC, as PostgreSQL does.
                Outage(kind=OutageKind.PLANNED, service=Service.HEATING, street="ул. Б",
                       reason="b", starts_at=datetime(2026, 11, 27, 10, 0),
                       ends_at=datetime(2026, 11, 27, 10, 0)),
            ]
        )  # fmt: skip
        await s.commit()
    async with session_factory() as s:
        rows = (await s.execute(select(Outage).order_by(Outage.street))).scalars().all()
        earlier = (
            (
                await s.execute(
                    select(Outage.street).where(
                        Outage.starts_at < datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
                    )
                )
            )
            .scalars()
            .all()
        )
    assert rows[0].starts_at == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert rows[0].starts_at.utcoffset() == timedelta(0)
    assert rows[1].starts_at == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert earlier == ["ул. А"]


async def test_json_none_is_sql_null(session_factory: async_sessionmaker[AsyncSession]) -> None:
    async with session_factory() as s:
        identity = ChannelIdentity(channel="widget", user_id="u1")
        s.add(identity)
        await s.flush()
        state = {"flow": "submit_reading", "slots": {"value": "1234,5"}}
        conv = Conversation(channel="widget", chat_id="c1", identity_id=identity.id, state=state)
        s.add(conv)
        await s.flush()
        now = datetime.now(UTC)
        s.add_all(
            [
                Message(conversation_id=conv.id, direction=Direction.IN, sender=Sender.CUSTOMER,
                        text="привет", payload=None, created_at=now),
                Message(conversation_id=conv.id, direction=Direction.OUT, sender=Sender.BOT,
                        text="Здравствуйте!", payload={"buttons": ["Показания"]}, created_at=now),
            ]
        )  # fmt: skip
        await s.commit()
    async with session_factory() as s:
        plain = (await s.execute(select(Message.text).where(Message.payload.is_(None)))).all()
        state = (await s.execute(select(Conversation.state))).scalar_one()
        # DISTINCT over a JSON column: fails on PostgreSQL's plain json type.
        distinct = (await s.execute(select(Message).distinct())).scalars().all()
    assert [t for (t,) in plain] == ["привет"]
    assert state == {"flow": "submit_reading", "slots": {"value": "1234,5"}}
    assert len(distinct) == 2


async def _backend_pid(factory: async_sessionmaker[AsyncSession]) -> int:
    """The server process of the connection a new session gets."""
    async with factory() as s:
        return int((await s.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(pid: int) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        for _ in range(200):  # until the backend is really gone
            if not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            ):
                return
            await asyncio.sleep(0.01)
        pytest.fail(f"backend {pid} still alive")
    finally:
        await admin.close()


@pytest.mark.postgres
async def test_a_dropped_idle_connection_is_replaced(pg_database: str) -> None:
    engine = create_engine(make_settings(pg_database))
    factory = create_session_factory(engine)
    try:
        pid = await _backend_pid(factory)
        await _terminate(pid)  # the pooled connection is now dead
        assert await _backend_pid(factory) != pid
    finally:
        await engine.dispose()


def _terminate_while_the_loop_is_busy(pid: int) -> None:
    """Terminate a backend by blocking calls, so that this event loop reads
    nothing meanwhile: the server's goodbye (its FATAL error, then the closed
    socket) waits unread when the pooled connection is next taken, as it does
    when a busy process is handed a connection the server has just dropped."""
    import subprocess
    import time

    def psql(sql: str) -> str:
        return subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-tAc", sql],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip

    assert psql(f"SELECT pg_terminate_backend({pid})") == "t"
    for _ in range(200):
        if psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}") == "0":
            return
        time.sleep(0.01)
    pytest.fail(f"backend {pid} still alive")


@pytest.mark.postgres
async def test_a_connection_dropped_while_the_loop_was_busy_is_replaced(
    pg_database: str,
) -> None:
    engine = create_engine(make_settings(pg_database))
    factory = create_session_factory(engine)
    try:
        pid = await _backend_pid(factory)
        _terminate_while_the_loop_is_busy(pid)  # no await: the loop reads nothing
        assert await _backend_pid(factory) != pid
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_pooled_connection_past_descriptor_1024_is_reused(pg_database: str) -> None:
    # A process holding thousands of widget sockets gives its database
    # connections descriptors past select()'s limit; the checkout's look for
    # unread input must still see a live connection as live.
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip("the descriptor limit is below 1200")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    engine = create_engine(make_settings(pg_database))
    factory = create_session_factory(engine)
    try:
        pid = await _backend_pid(factory)
        # The same connection, not replaced as if dropped.
        assert await _backend_pid(factory) == pid
    finally:
        await engine.dispose()
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.postgres
async def test_a_connection_dropped_mid_session_fails_cleanly(pg_database: str) -> None:
    engine = create_engine(make_settings(pg_database))
    factory = create_session_factory(engine)
    try:
        async with factory() as s:
            pid = (await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await _terminate(pid)
            with pytest.raises(DBAPIError) as caught:
                await s.execute(text("SELECT 1"))
            assert caught.value.connection_invalidated
            await s.rollback()
        async with factory() as s:
            assert (await s.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_statement_that_commits_alone_outlives_the_block_s_rollback(
    pg_database: str,
) -> None:
    # The inbox entry a turn writes with its load: durable even when the
    # turn's own transaction (begun at its next write) rolls back.
    engine = create_engine(make_settings(pg_database))
    factory = create_session_factory(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE scratch (name text)"))
        alone = {COMMITS_ALONE: True}
        insert = text("INSERT INTO scratch VALUES (:name)")
        async with factory() as s, begin_at_first_write(s):
            assert defers_begin(s)
            await s.execute(insert, {"name": "alone"}, execution_options=alone)
            await s.execute(insert, {"name": "in the transaction"})
            await s.rollback()
        async with factory() as s:
            names = (await s.scalars(text("SELECT name FROM scratch"))).all()
            assert names == ["alone"]
            # In a transaction already, it would not be durable alone: refused.
            await s.execute(insert, {"name": "begun"})
            assert not defers_begin(s)
            with pytest.raises(RuntimeError):
                await s.execute(insert, {"name": "late"}, execution_options=alone)
    finally:
        await engine.dispose()
