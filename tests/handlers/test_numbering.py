"""Appeal numbers: distinct under concurrency, and on PostgreSQL the shared
counter row is not held until a turn's commit."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings
from handlers.numbering import next_number, next_value
from storage.db import begin_at_first_write, create_engine, create_session_factory

# SQLite has one writer at a time: the counter is part of the turn there.
POSTGRES = pytest.mark.parametrize(
    "db_settings", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def _held_turn(
    sessions: async_sessionmaker[AsyncSession], taken: asyncio.Event, release: asyncio.Event
) -> str:
    """A turn that takes a number, then stays in its block until told to end."""
    async with sessions() as session, begin_at_first_write(session):
        number = await next_number(session, "A", 2026)
        taken.set()
        await release.wait()
        await session.commit()
    return number


async def test_numbers_are_distinct_and_follow_each_other(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with session_factory() as session:
        got = [await next_number(session, "A", 2026) for _ in range(3)]
        await session.commit()
    assert got == ["A-2026-000001", "A-2026-000002", "A-2026-000003"]


@POSTGRES
async def test_a_turn_that_took_a_number_does_not_hold_up_the_next_one(
    db_settings: Settings, db_engine: AsyncEngine
) -> None:
    sessions = create_session_factory(db_engine)
    taken, release = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(_held_turn(sessions, taken, release))
    await taken.wait()
    # Another turn, while the first is still in its transaction: on a
    # connection that gives up on a row lock at once instead of waiting.
    impatient = create_engine(db_settings, pool_size=1, max_overflow=0)
    try:
        async with impatient.connect() as conn:
            await conn.execute(text("SET lock_timeout = '100ms'"))
            await conn.commit()
        async with create_session_factory(impatient)() as session, begin_at_first_write(session):
            try:
                second = await next_number(session, "A", 2026)
            except DBAPIError as exc:  # LockNotAvailableError on the old code
                pytest.fail(f"the counter row was still held by the first turn: {exc}")
            await session.commit()
    finally:
        release.set()
        await impatient.dispose()
    assert (await first, second) == ("A-2026-000001", "A-2026-000002")


@POSTGRES
async def test_a_turn_that_fails_after_taking_a_number_leaves_a_gap_not_a_repeat(
    db_settings: Settings, db_engine: AsyncEngine
) -> None:
    sessions = create_session_factory(db_engine)
    async with sessions() as session, begin_at_first_write(session):
        assert await next_value(session, "A-2026") == 1
        await session.rollback()
    async with sessions() as session, begin_at_first_write(session):
        assert await next_value(session, "A-2026") == 2
        await session.commit()
