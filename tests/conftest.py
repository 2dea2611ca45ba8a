"""Shared fixtures: real storage underneath every test.

``db_settings`` is parametrized over SQLite and the real PostgreSQL service
(127.0.0.1:5432, user postgres). Outside CI a missing PostgreSQL or Redis
skips its tests; in CI (``CI=true``) it fails them.

The schema is built by the Alembic migrations (``upgrade head``), so they are
exercised on every run, once per session and database:

- SQLite: migrated once into a template file, copied for each test;
- PostgreSQL: migrated once into the session's database; each test starts
  from empty tables with restarted ids, all tables but ``alembic_version``
  (what ``TRUNCATE ... RESTART IDENTITY CASCADE`` gives, done faster: see
  :func:`_empty_pg`).

Fixtures: ``db_settings``, ``db_engine``, ``session_factory``, ``db_session``
(empty schema); ``demo_data`` (a :class:`DemoContext` after loading
docs/demo-data.md), ``demo_session_factory``; ``vault``; ``redis_url``
(Redis db 15, flushed before and after the test); ``pg_database``.

Helpers for tests that run whole app processes: :func:`own_pg_database` (a
migrated database of the test's own) and :func:`shared_app_settings` (that
database and the test Redis, as several app containers share them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
import redis
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings, load_settings
from storage.crypto import PersonalDataVault
from storage.db import create_engine, create_session_factory
from storage.demo_data import load_demo_data
from storage.migrate import upgrade
from storage.models import Base

PG_ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

T = TypeVar("T")


def service_missing(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable: {exc!r}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def run_in_thread(fn: Callable[[], T]) -> T:
    """Run blocking or ``asyncio.run`` code off the test's event loop thread."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def make_settings(database_url: str, **overrides: object) -> Settings:
    return load_settings(
        **{
            "environment": "test",
            "database_url": database_url,
            "secret_key": "test-secret-key",
            "load_demo_data": False,
            **overrides,
        }
    )


def pg_url(database: str) -> str:
    """The SQLAlchemy URL of ``database`` on the admin DSN's server."""
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{database}"


async def pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# --------------------------------------------------------------------------
# Schemas, once per session
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"heatdesk_test_{uuid.uuid4().hex[:10]}"
    try:
        run_in_thread(lambda: asyncio.run(pg_admin(f'CREATE DATABASE "{name}"')))
        # Test data need no durability: commits stop waiting for the WAL flush.
        run_in_thread(
            lambda: asyncio.run(pg_admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
        )
    except (OSError, asyncpg.PostgresError) as exc:
        service_missing("PostgreSQL", exc)
    yield pg_url(name)
    run_in_thread(lambda: asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))


@dataclass(frozen=True)
class _MigratedPg:
    url: str
    tables: tuple[str, ...]  # children before parents
    sequences: tuple[str, ...]

    @property
    def dsn(self) -> str:
        return self.url.replace("postgresql+asyncpg", "postgresql")


@pytest.fixture(scope="session")
def pg_migrated(pg_database: str) -> _MigratedPg:
    """The session database at ``head``, and what is needed to empty it."""
    run_in_thread(lambda: upgrade(make_settings(pg_database)))

    async def catalog() -> tuple[list[str], list[str]]:
        conn = await asyncpg.connect(pg_database.replace("postgresql+asyncpg", "postgresql"))
        try:
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
            sequences = await conn.fetch(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
            )
        finally:
            await conn.close()
        return [r[0] for r in tables], [r[0] for r in sequences]

    tables, sequences = run_in_thread(lambda: asyncio.run(catalog()))
    known = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name in tables]
    unknown = sorted(set(tables) - set(known))  # made by a migration only: delete first
    return _MigratedPg(pg_database, (*unknown, *known), tuple(sorted(sequences)))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file at ``head``; tests get a copy."""
    path = tmp_path_factory.mktemp("schema") / "template.sqlite3"
    run_in_thread(lambda: upgrade(make_settings(f"sqlite+aiosqlite:///{path}")))
    # Fold the WAL into the main file so that copying that one file is enough.
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path


async def _empty_pg(db: _MigratedPg) -> None:
    """The state of ``TRUNCATE <all tables> RESTART IDENTITY CASCADE``, faster.

    TRUNCATE of the ~27 tables costs 150 ms a test here (new relation files,
    fsync); one probe finds the few tables and sequences the last test
    touched, and DELETE plus ``setval`` resets just those in about 5 ms.
    """
    conn = await asyncpg.connect(db.dsn)
    try:
        await conn.execute("SET synchronous_commit = off; SET lock_timeout = '10s'")
        probe = ", ".join(f'EXISTS (SELECT 1 FROM "{t}")' for t in db.tables)
        dirty = await conn.fetchrow(f"SELECT {probe}")
        used = await conn.fetch(
            "SELECT sequencename FROM pg_sequences "
            "WHERE schemaname = 'public' AND last_value IS NOT NULL"
        )
        statements = [f'DELETE FROM "{t}"' for t, d in zip(db.tables, dirty, strict=True) if d]
        statements += [f"SELECT setval('\"{r[0]}\"', 1, false)" for r in used]
        if statements:
            # A test that leaked an open transaction fails here, not hangs.
            await conn.execute("BEGIN; " + "; ".join(statements) + "; COMMIT")
    finally:
        await conn.close()


# --------------------------------------------------------------------------
# Per-test database
# --------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings of an empty database at ``head`` (SQLite file or PostgreSQL)."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "test.sqlite3"
        shutil.copyfile(template, path)
        return make_settings(f"sqlite+aiosqlite:///{path}")
    migrated: _MigratedPg = request.getfixturevalue("pg_migrated")
    run_in_thread(lambda: asyncio.run(_empty_pg(migrated)))
    return make_settings(migrated.url)


@pytest.fixture
async def db_engine(db_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_settings)
    yield engine
    await engine.dispose()


@pytest.fixture
def session_factory(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(db_engine)


@pytest.fixture
async def db_session(
    session_factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with session_factory() as session:
        yield session


@pytest.fixture
def vault(db_settings: Settings) -> PersonalDataVault:
    return PersonalDataVault(db_settings.secret_key.get_secret_value())


@dataclass(frozen=True)
class DemoContext:
    """What a test needs after the demo data is loaded."""

    settings: Settings
    vault: PersonalDataVault
    session_factory: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    now: datetime  # the moment the data is relative to


@pytest.fixture
async def demo_data(
    db_settings: Settings,
    db_engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    vault: PersonalDataVault,
) -> DemoContext:
    """docs/demo-data.md loaded into this test's database, relative to now."""
    now = datetime.now(UTC)
    async with session_factory() as session:
        assert await load_demo_data(session, vault, db_settings, now)
    return DemoContext(db_settings, vault, session_factory, db_engine, now)


@pytest.fixture
def demo_session_factory(demo_data: DemoContext) -> async_sessionmaker[AsyncSession]:
    return demo_data.session_factory


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """``REDIS_URL`` (db 15) after a ping, flushed before and after the test."""
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, RedisError) as exc:
        await client.aclose()
        service_missing("Redis", exc)
    try:
        await client.flushdb()
        yield REDIS_URL
        await client.flushdb()
    finally:
        await client.aclose()


# --------------------------------------------------------------------------
# A database of a test's own; app processes sharing PostgreSQL and Redis
# --------------------------------------------------------------------------


@contextlib.contextmanager
def own_pg_database(prefix: str) -> Iterator[str]:
    """A migrated PostgreSQL database of the caller's own (its SQLAlchemy
    URL), dropped afterwards, also when the test cut its connections."""
    name = f"heatdesk_{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        pg_admin_sync(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        service_missing(f"PostgreSQL at {PG_ADMIN_DSN}", exc)
    try:
        run_in_thread(lambda: upgrade(make_settings(pg_url(name))))
        yield pg_url(name)
    finally:
        reopen_pg_database(name)
        pg_admin_sync(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_admin_sync(sql: str) -> None:
    """:func:`pg_admin` from synchronous test code."""
    run_in_thread(lambda: asyncio.run(pg_admin(sql)))


def cut_pg_database(name: str) -> None:
    """The database ``name`` unreachable, as in an outage: its connections
    ended and new ones refused until :func:`reopen_pg_database`."""
    pg_admin_sync(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    pg_admin_sync(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )


def reopen_pg_database(name: str) -> None:
    pg_admin_sync(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@contextlib.contextmanager
def shared_app_settings(prefix: str, **overrides: object) -> Iterator[Settings]:
    """Settings that two or more app containers share: a migrated PostgreSQL
    database of the test's own and the test Redis (flushed before and after)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        client.close()
        service_missing("Redis", exc)
    try:
        with own_pg_database(prefix) as url:
            yield make_settings(url, redis_url=REDIS_URL, **overrides)
    finally:
        client.flushdb()
        client.close()
