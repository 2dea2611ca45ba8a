"""Human-facing yearly numbers (``A-2026-000123``, ``TP-2026-000001``).

One atomic upsert with RETURNING takes the next value: concurrent callers get
distinct values on PostgreSQL and on SQLite (one writer at a time).

The counter's row is one for all chats: held until a turn's commit, it would
queue every appeal being filed behind the slowest turn (under load, seconds).
Where the turn has not written yet (PostgreSQL, a block of
:func:`storage.db.begin_at_first_write`), the upsert commits alone and
releases the row at once; a turn that then fails leaves a gap in the
numbers, as a database sequence would. Elsewhere it is part of the caller's
transaction, as before.
"""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import COMMITS_ALONE, may_commit_alone
from storage.models import NumberSequence

_ALONE = {COMMITS_ALONE: True}


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
    options = _ALONE if await may_commit_alone(session) else {}
    value = (await session.execute(stmt, execution_options=options)).scalar_one()
    return int(value)


async def next_number(session: AsyncSession, prefix: str, year: int) -> str:
    """``prefix-year-NNNNNN`` from the counter ``prefix-year``."""
    value = await next_value(session, f"{prefix}-{year}")
    return f"{prefix}-{year}-{value:06d}"
