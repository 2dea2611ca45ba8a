"""Engine and session factory for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

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
    return engine


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
        if driver is not None and driver.is_closed():
            raise exc.DisconnectionError("the server closed the connection")
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            dbapi_conn.ping()
        except Exception as error:
            raise exc.DisconnectionError("connection lost while idle") from error


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
