"""The Alembic migrations build exactly the models' schema, on both databases."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

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
from tests.conftest import make_settings, pg_admin, pg_url, run_in_thread, service_missing


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """A brand-new empty database (no alembic_version)."""
    if request.param == "sqlite":
        yield make_settings(f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}")
        return
    name = f"heatdesk_mig_{uuid.uuid4().hex[:10]}"
    try:
        await pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, TimeoutError) as exc:
        service_missing("PostgreSQL", exc)
    try:
        yield make_settings(pg_url(name))
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


async def test_upgrade_head_gives_exactly_the_models_schema(empty_db: Settings) -> None:
    assert await current_revision(empty_db) is None
    await upgrade_async(empty_db)
    assert await current_revision(empty_db) == head_revision()
    assert await schema_diff(empty_db) == []
    assert await table_names(empty_db) == {*Base.metadata.tables, "alembic_version"}


async def test_the_comparison_sees_a_schema_that_drifted(empty_db: Settings) -> None:
    await upgrade_async(empty_db)
    engine = create_engine(empty_db)
    async with engine.begin() as conn:
        await conn.execute(text("DROP INDEX ix_outages_street"))
    await engine.dispose()
    diff = await schema_diff(empty_db)
    assert [d[0] for d in diff] == ["add_index"]
    assert diff[0][1].name == "ix_outages_street"


async def test_downgrade_to_base_and_up_again(empty_db: Settings) -> None:
    # The sync API, called from inside a running event loop (as from a lifespan).
    upgrade(empty_db)
    downgrade(empty_db, "base")
    assert await table_names(empty_db) == {"alembic_version"}
    upgrade(empty_db)
    assert await schema_diff(empty_db) == []


async def test_upgrade_is_idempotent_and_keeps_data(empty_db: Settings) -> None:
    await upgrade_async(empty_db)
    engine = create_engine(empty_db)
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO number_sequences (name, last_value) VALUES ('A-2026', 7)")
        )
    await upgrade_async(empty_db)
    run_in_thread(lambda: upgrade(empty_db))  # sync, no loop in that thread
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
