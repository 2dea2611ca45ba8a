"""The Alembic migrations build exactly the models' schema, on both databases."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
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
from storage.crypto import PersonalDataVault
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


# A Telegram customer as 0006 stored them: their Telegram id in the clear.
OLD_TELEGRAM_ID = "5123456789"


async def _rows(settings: Settings, sql: str) -> list[Any]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()


async def _store_old_telegram_chat(settings: Settings) -> None:
    raw = OLD_TELEGRAM_ID
    body = json.dumps(
        {
            "channel": "telegram",
            "chat_id": raw,
            "user_id": raw,
            "text_enc": "x",
            "platform_message_id": f"{raw}:17",
            "received_at": "2026-12-01T10:00:00+00:00",
        }
    )
    json_value = "CAST(:body AS JSONB)" if settings.database_url.startswith("postgres") else ":body"
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            for channel, user in (("telegram", raw), ("whatsapp", "a" * 40)):
                await conn.execute(
                    text(
                        "INSERT INTO channel_identities (channel, user_id, failed_link_attempts)"
                        " VALUES (:c, :u, 0)"
                    ),
                    {"c": channel, "u": user},
                )
            await conn.execute(
                text(
                    "INSERT INTO conversations (channel, chat_id, identity_id, status, state)"
                    " SELECT channel, user_id, id, 'bot', '{}' FROM channel_identities"
                )
            )
            now = {"now": datetime(2026, 12, 1, 10, tzinfo=UTC)}
            await conn.execute(
                text(
                    "INSERT INTO messages (conversation_id, direction, sender, text, created_at)"
                    " SELECT id, 'out', 'bot', 'Здравствуйте', :now FROM conversations"
                ),
                now,
            )
            await conn.execute(
                text(
                    "INSERT INTO outbox (conversation_id, message_id, channel, chat_id, body,"
                    " status, attempts, next_attempt_at, created_at)"
                    ' SELECT c.id, m.id, c.channel, c.chat_id, \'{"text": "Здравствуйте"}\','
                    " 'pending', 0, :now, :now"
                    " FROM conversations c JOIN messages m ON m.conversation_id = c.id"
                ),
                now,
            )
            await conn.execute(
                text(
                    "INSERT INTO inbox (channel, platform_message_id, chat_id, body, received_at)"
                    f" VALUES ('telegram', :pid, :raw, {json_value}, :now),"
                    f" ('telegram', 'cb:42', :raw, {json_value}, :now)"
                ),
                {"pid": f"{raw}:17", "raw": raw, "body": body, **now},
            )
            await conn.execute(
                text(
                    "INSERT INTO subscriptions (channel, chat_id, topic, active, updated_at)"
                    " VALUES ('telegram', :raw, 'news', true, :now)"
                ),
                {"raw": raw, **now},
            )
    finally:
        await engine.dispose()


async def _telegram_ids(settings: Settings) -> dict[str, Any]:
    inbox = await _rows(
        settings,
        "SELECT platform_message_id, chat_id, body FROM inbox WHERE channel = 'telegram'"
        " ORDER BY id",
    )
    return {
        "identity": await _rows(
            settings, "SELECT channel, user_id FROM channel_identities ORDER BY id"
        ),
        "conversation": await _rows(
            settings, "SELECT channel, chat_id FROM conversations ORDER BY id"
        ),
        "outbox": await _rows(settings, "SELECT channel, chat_id FROM outbox ORDER BY id"),
        "subscription": await _rows(settings, "SELECT chat_id FROM subscriptions"),
        "inbox": [
            (pid, chat, json.loads(body) if isinstance(body, str) else body)
            for pid, chat, body in inbox
        ],
        "addresses": await _rows(
            settings, "SELECT channel, address_hash, address_enc FROM channel_addresses"
        ),
    }


async def test_telegram_ids_become_keyed_hashes_with_the_id_encrypted(empty_db: Settings) -> None:
    await upgrade_async(empty_db, "0006_desk")
    await _store_old_telegram_chat(empty_db)
    before = await _telegram_ids(empty_db)
    await upgrade_async(empty_db)

    vault = PersonalDataVault(empty_db.secret_key.get_secret_value())
    hashed = vault.hash_address("telegram", OLD_TELEGRAM_ID)
    wa = "a" * 40
    after = await _telegram_ids(empty_db)
    assert after["identity"] == [("telegram", hashed), ("whatsapp", wa)]
    assert after["conversation"] == [("telegram", hashed), ("whatsapp", wa)]
    assert after["outbox"] == [("telegram", hashed), ("whatsapp", wa)]
    assert after["subscription"] == [(hashed,)]
    (message, pressed) = after["inbox"]
    assert message[:2] == (f"{hashed}:17", hashed)
    assert pressed[:2] == ("cb:42", hashed)
    body = message[2]
    assert (body["chat_id"], body["user_id"]) == (hashed, hashed)
    assert body["platform_message_id"] == f"{hashed}:17"
    ((channel, address_hash, enc),) = after["addresses"]
    assert (channel, address_hash) == ("telegram", hashed)
    assert vault.decrypt(enc) == OLD_TELEGRAM_ID
    cells = json.dumps(after, default=str, ensure_ascii=False)
    assert OLD_TELEGRAM_ID not in cells

    # Down: the ids as they were, the addresses gone.
    await asyncio.to_thread(downgrade, empty_db, "0006_desk")
    down = await _telegram_ids(empty_db)
    assert down["addresses"] == []
    assert {k: v for k, v in down.items() if k != "addresses"} == {
        k: v for k, v in before.items() if k != "addresses"
    }

    # Up again: the same hashes, the same id behind the address.
    await upgrade_async(empty_db)
    again = await _telegram_ids(empty_db)
    assert {k: v for k, v in again.items() if k != "addresses"} == {
        k: v for k, v in after.items() if k != "addresses"
    }
    assert [(c, h, vault.decrypt(e)) for c, h, e in again["addresses"]] == [
        ("telegram", hashed, OLD_TELEGRAM_ID)
    ]
