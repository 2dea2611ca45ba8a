"""Engine and session factory for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from sqlalchemy import event, exc
from sqlalchemy.engine import Row, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.expression import Executable

from config import Settings


def create_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    # The most recently used connection first: under load the same few stay
    # busy (and skip the ping below), the others age and are checked.
    kwargs.setdefault("pool_use_lifo", True)
    engine = create_async_engine(url, **kwargs)
    _ping_when_idle(engine)
    _begin_at_the_first_write(engine)
    return engine


# --------------------------------------------------------------------------
# A transaction that begins at its first write (PostgreSQL)

# Where a connection of :func:`begin_at_first_write` keeps its driver connection
# until its first write; on the pool record, so it is cleared at check-in too.
_DEFERRED: Final = "heatdesk.deferred_begin"
# An execution option: this statement writes, but alone it needs no BEGIN
# (one statement is atomic): it runs in autocommit if nothing wrote before it.
ONE_STATEMENT: Final = "heatdesk_one_statement"
# An execution option: this statement writes and commits at once, alone
# (autocommit), and the block's transaction still begins at its next write.
# Only as the first statement of a block that defers its BEGIN (see
# :func:`defers_begin`): inside a transaction it would not be durable alone.
COMMITS_ALONE: Final = "heatdesk_commits_alone"
# Set in a session's ``info`` while :func:`begin_at_first_write` defers its BEGIN.
_DEFERS: Final = "heatdesk.defers_begin"
_SPENT: Final = object()
# The driver's own names (None: the server's default, READ COMMITTED).
_READ_COMMITTED: Final = (None, "read_committed")
_LOCKING: Final = (" FOR UPDATE", " FOR SHARE", " FOR NO KEY UPDATE", " FOR KEY SHARE")


def _is_plain_read(statement: str) -> bool:
    return statement.startswith("SELECT") and not any(lock in statement for lock in _LOCKING)


def _begin_at_the_first_write(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(
        conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        driver = conn.info.get(_DEFERRED)
        if driver is None or _is_plain_read(statement):
            if (
                driver is None
                and context is not None
                and context.execution_options.get(COMMITS_ALONE)
            ):
                raise RuntimeError("a statement to commit alone inside a transaction")
            return
        if context is not None and context.execution_options.get(COMMITS_ALONE):
            if driver is _SPENT:
                raise RuntimeError("a write after the block's one statement would commit alone")
            return  # the driver is in autocommit: it is durable on its own
        if driver is _SPENT:
            raise RuntimeError("a write after the block's one statement would commit alone")
        if context is not None and context.execution_options.get(ONE_STATEMENT):
            conn.info[_DEFERRED] = _SPENT  # it commits itself; nothing may follow it
            return
        del conn.info[_DEFERRED]
        # The first write: the driver sends BEGIN before it, and the rest of
        # the block is one transaction as usual.
        driver.autocommit = False

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(dbapi_conn: Any, record: Any) -> None:
        if record.info.pop(_DEFERRED, None) is not None and dbapi_conn is not None:
            dbapi_conn.autocommit = False  # left by a block that did not finish


@contextlib.asynccontextmanager
async def begin_at_first_write(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """The session's transaction begins at its first write, not its first read.

    On PostgreSQL at READ COMMITTED every statement reads its own snapshot,
    in a transaction or not, and a plain SELECT takes no lock: reads before
    the first write see what they would have seen inside it. The reads go
    out in autocommit; the first statement that writes (or locks rows) gets
    the BEGIN, and from there it is one transaction, committed or rolled
    back by the caller as usual. A turn whose only write is one statement
    marked :data:`ONE_STATEMENT` sends neither BEGIN nor COMMIT: two round
    trips of five. Flush pending ORM changes before that statement: a write
    after it is refused (it would commit alone). Elsewhere (SQLite) the
    session is left as it is.
    """
    if session.bind is None or session.bind.dialect.name != "postgresql":
        yield session
        return
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver = raw.dbapi_connection
    if (
        driver is None
        or getattr(driver, "_transaction", None) is not None  # in a transaction already
        or getattr(driver, "isolation_level", None) not in _READ_COMMITTED
    ):
        yield session  # nothing to defer, or reads that must share one snapshot
        return
    # The pool record's: still there once the commit has returned the
    # connection to the pool (whose check-in has then reset the driver).
    info = conn.info
    driver.autocommit = True
    info[_DEFERRED] = driver
    session.info[_DEFERS] = True
    try:
        yield session
    finally:
        session.info.pop(_DEFERS, None)
        if info.pop(_DEFERRED, None) is not None:
            driver.autocommit = False  # the block ended still holding the connection


async def flush_pending(session: AsyncSession) -> None:
    """Flush the session's pending ORM changes, if it has any (an empty flush
    still costs a trip through the greenlet)."""
    if session.new or session.dirty or session.deleted:
        await session.flush()


async def core_rows(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any]
) -> Sequence[Row[*tuple[Any, ...]]]:
    """The rows of a select of plain columns, run on the session's connection
    (its transaction) without the ORM's execution path, which such a select
    does not need (a third of a short statement's cost). Pending ORM changes
    are flushed first, as the session's autoflush would."""
    await flush_pending(session)
    connection = await session.connection()
    return (await connection.execute(statement, params)).all()


def defers_begin(session: AsyncSession) -> bool:
    """Whether the session is in a :func:`begin_at_first_write` block that
    defers its BEGIN: before the block's first write, a statement marked
    :data:`COMMITS_ALONE` may go (the listener refuses it anywhere else)."""
    return bool(session.info.get(_DEFERS))


async def may_commit_alone(session: AsyncSession) -> bool:
    """Whether a statement marked :data:`COMMITS_ALONE` may go now: inside a
    :func:`begin_at_first_write` block that has not written yet (pending ORM
    changes are flushed first, so they count as a write). Such a statement
    commits at once, its row locks released with it, not at the block's end."""
    if not defers_begin(session):
        return False
    await flush_pending(session)
    driver = (await session.connection()).info.get(_DEFERRED)
    return driver is not None and driver is not _SPENT


# A connection back from the pool after this long idle is pinged first.
IDLE_PING_SECONDS: Final = 5.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    """``pool_pre_ping`` without its cost on a busy pool.

    SQLAlchemy's pre-ping costs asyncpg three round trips (BEGIN, a ping,
    ROLLBACK) on every checkout, as much as the rest of a short turn. A
    connection the server closed (a restart, a terminated backend) is known
    closed to asyncpg without asking; only one that sat idle for a while (a
    silent network, say) is pinged. A dead one is replaced before anybody
    sees it: the pool retries on DisconnectionError.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_conn, "driver_connection", None)
        if driver is not None and (driver.is_closed() or _unread_input(driver)):
            raise exc.DisconnectionError("the server closed the connection")
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            dbapi_conn.ping()
        except Exception as error:
            raise exc.DisconnectionError("connection lost while idle") from error


def _unread_input(driver: Any) -> bool:
    """Whether the server has written to a connection nobody is using.

    An idle connection hears nothing from PostgreSQL unless the server is
    dropping it (its FATAL error, then the end of the stream). A busy
    process may take such a connection from the pool before its event loop
    has read that goodbye: asyncpg still thinks it open, and the first
    statement would fail. One ``poll`` with no wait (a few microseconds)
    sees the unread bytes. asyncpg keeps its transport private, hence the
    ``getattr``; without one nothing is checked.
    """
    transport = getattr(driver, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    # poll, not select: a process holding thousands of sockets has
    # descriptors past select's FD_SETSIZE (1024), which select refuses.
    poller = select.poll()
    try:
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False  # cannot tell: the first statement will


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
