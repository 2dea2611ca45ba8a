"""Alembic environment: the app's async engine, the models' metadata.

The settings come from ``config.attributes["settings"]`` when called through
:mod:`storage.migrate`, else from the environment (plain ``alembic`` CLI).
When :func:`storage.migrate.upgrade_async` already holds a connection it
passes it in ``config.attributes["connection"]`` and no engine is made here.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from config import Settings, load_settings
from storage.db import create_engine
from storage.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def _settings() -> Settings:
    settings = config.attributes.get("settings")
    if isinstance(settings, Settings):
        return settings
    return load_settings()


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our TypeDecorators as their database type: migrations must not
    import application code that may change later."""
    if type_ != "type":
        return False
    if isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, JSONB):
        # Alembic's default repr says ``astext_type=Text()`` without importing it.
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return f"postgresql.JSONB(none_as_null={obj.none_as_null!r})"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=False,
        render_as_batch=config.attributes.get(
            "render_as_batch", connection.dialect.name == "sqlite"
        ),
        render_item=render_item,
    )


def do_run_migrations(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch migrations copy and recreate tables; with foreign keys on,
        # dropping the old table would fail or cascade. Only effective outside
        # a transaction, hence before begin_transaction().
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


async def run_async_migrations() -> None:
    engine = create_engine(_settings())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    """``alembic upgrade --sql``: print the SQL for the configured dialect."""
    context.configure(
        url=_settings().database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
        render_as_batch=_settings().is_sqlite,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
