"""Human-facing yearly numbers (``A-2026-000123``, ``TP-2026-000001``).

One atomic upsert with RETURNING takes the next value: concurrent callers get
distinct values on PostgreSQL (the row lock is held until their transactions
end) and on SQLite (one writer at a time).
"""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import NumberSequence


async def next_value(session: AsyncSession, name: str) -> int:
    """Increment the counter ``name`` (created at 1) and return its new value."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(NumberSequence)
        .values(name=name, last_value=1)
        .on_conflict_do_update(
            index_elements=[NumberSequence.name],
            set_={"last_value": NumberSequence.last_value + 1},
        )
        .returning(NumberSequence.last_value)
    )
    value = (await session.execute(stmt)).scalar_one()
    return int(value)


async def next_number(session: AsyncSession, prefix: str, year: int) -> str:
    """``prefix-year-NNNNNN`` from the counter ``prefix-year``."""
    value = await next_value(session, f"{prefix}-{year}")
    return f"{prefix}-{year}-{value:06d}"
