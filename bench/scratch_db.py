"""Throw-away PostgreSQL databases for the benchmarks (127.0.0.1:5432, user postgres)."""

from __future__ import annotations

import os
import uuid

import asyncpg

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def create_database(prefix: str = "heatdesk_bench") -> tuple[str, str]:
    """A new empty database: its SQLAlchemy URL and its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", name


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def pg_database() -> tuple[str, str | None]:
    """``DATABASE_URL`` if it points at PostgreSQL, else a new database; the
    name of the database to drop afterwards (None for ``DATABASE_URL``)."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgresql"):
        return url, None
    return await create_database()
