"""The Alembic migrations build exactly the models' schema, on both databases."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from config import Settings
from storage.db import create_engine
from storage.migrate import (
    VERSIONS_DIR,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
    upgrade_async,
)
from storage.models import Base
from tests.conftest import make_settings, run_in_thread


async def _drop_public_schema(url: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """A brand-new empty database (no tables, no alembic_version).

    On PostgreSQL it is the session database with its schema dropped (CREATE
    DATABASE costs 0.5-1 s here), migrated back to head afterwards for the
    other tests.
    """
    if request.param == "sqlite":
        yield make_settings(f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}")
        return
    url: str = request.getfixturevalue("pg_database")
    settings = make_settings(url)
    await _drop_public_schema(url)
    try:
        yield settings
    finally:
        if await current_revision(settings) != head_revision():
            await _drop_public_schema(url)
            await upgrade_async(settings)


def _diff(connection: Connection) -> list[Any]:
    ctx = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(ctx, Base.metadata))


async def schema_diff(settings: Settings) -> list[Any]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_diff)
    finally:
        await engine.dispose()


async def table_names(settings: Settings) -> set[str]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_from_empty_down_to_base_and_up_again(empty_db: Settings) -> None:
    assert await current_revision(empty_db) is None
    await upgrade_async(empty_db)
    assert await current_revision(empty_db) == head_revision()
    assert await schema_diff(empty_db) == []
    assert await table_names(empty_db) == {*Base.metadata.tables, "alembic_version"}
    # The sync API, called from inside a running event loop (as from a lifespan).
    downgrade(empty_db, "base")
    assert await table_names(empty_db) == {"alembic_version"}
    upgrade(empty_db)
    assert await schema_diff(empty_db) == []


REGENERATE = (
    "storage/models.py and the migrations differ: while nothing is deployed run "
    "`.venv/bin/python -m storage.migrate regenerate-initial` (see storage/migrate.py)"
)


async def test_the_test_schema_is_at_head_and_matches_the_models(db_settings: Settings) -> None:
    assert await current_revision(db_settings) == head_revision()
    assert await schema_diff(db_settings) == [], REGENERATE


async def test_the_comparison_sees_a_schema_that_drifted(db_engine: AsyncEngine) -> None:
    async with db_engine.connect() as conn:
        await conn.execute(text("DROP INDEX ix_outages_street"))  # rolled back below
        await conn.execute(text("ALTER TABLE offices ADD COLUMN extra INTEGER"))
        diff = await conn.run_sync(_diff)
        await conn.rollback()
        if db_engine.dialect.name == "postgresql":
            # Transactional DDL: the shared session database is intact. (The
            # SQLite file is this test's own copy; pysqlite autocommits DDL.)
            assert await conn.run_sync(_diff) == []
    kinds = sorted(d[0] for d in diff)
    assert kinds == ["add_index", "remove_column"]


async def test_upgrade_is_idempotent_and_keeps_data(db_settings: Settings) -> None:
    engine = create_engine(db_settings)
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO number_sequences VALUES ('A-2026', 7)"))
    await upgrade_async(db_settings)
    run_in_thread(lambda: upgrade(db_settings))  # sync, no loop in that thread
    async with engine.connect() as conn:
        value = (await conn.execute(text("SELECT last_value FROM number_sequences"))).scalar_one()
    await engine.dispose()
    assert value == 7


def test_migration_files_are_named_by_date_and_slug_and_linear() -> None:
    files = sorted(p.name for p in VERSIONS_DIR.glob("*.py"))
    assert files, "no migrations"
    assert all(re.fullmatch(r"\d{8}_[a-z0-9_]+\.py", f) for f in files), files
    initial = next(VERSIONS_DIR.glob("*_initial_schema.py")).read_text()
    assert "revision: str = '0001'" in initial
    assert "down_revision: str | Sequence[str] | None = None" in initial
    assert head_revision() is not None
