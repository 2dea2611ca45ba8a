"""Schema migrations (Alembic) driven from the application settings.

Public API::

    upgrade(settings, revision="head")        # sync; safe inside a running loop
    await upgrade_async(settings, "head")     # from async code (the lifespan)
    revision(settings, message, autogenerate=True)   # developers
    current_revision(settings) -> str | None
    regenerate_initial(settings)              # see below

``python -m bot db upgrade`` calls :func:`upgrade`. From the shell::

    .venv/bin/python -m storage.migrate upgrade [REVISION]
    .venv/bin/python -m storage.migrate revision "add column x to y"
    .venv/bin/python -m storage.migrate regenerate-initial

Plain Alembic works too: ``.venv/bin/alembic -c storage/alembic.ini upgrade head``
(the database URL comes from ``DATABASE_URL`` / ``.env`` either way).

Regenerating the initial migration
----------------------------------
While nothing is deployed the schema lives in one migration,
``0001`` (``storage/migrations/versions/*_initial_schema.py``). After a change
to ``storage/models.py``, rebuild it with one command::

    .venv/bin/python -m storage.migrate regenerate-initial

It deletes every file in ``versions/``, autogenerates ``0001`` against a
throw-away empty SQLite database (rendered without batch blocks: a schema
created from nothing needs none, and the file stays dialect-neutral) and prints
the new file. Check the file by hand
(``git diff``), then run ``.venv/bin/pytest tests/storage`` (it upgrades both
SQLite and PostgreSQL and compares the result with the models). A local
database created from an older 0001 must be deleted (``rm var/bot.sqlite3``).
Once a database exists that must be kept, stop regenerating: add a revision
with ``python -m storage.migrate revision "what changed"`` instead.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from config import Settings, load_settings
from storage.db import create_engine

STORAGE_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = STORAGE_DIR / "alembic.ini"
VERSIONS_DIR = STORAGE_DIR / "migrations" / "versions"
INITIAL_REVISION = "0001"
INITIAL_MESSAGE = "initial schema"


def alembic_config(settings: Settings) -> Config:
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(STORAGE_DIR / "migrations"))
    cfg.attributes["settings"] = settings
    return cfg


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_thread(fn: object, *args: object) -> None:
    """Alembic's env.py runs the async engine with ``asyncio.run``, which is
    not allowed in a thread that already runs a loop: use a fresh thread."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn(*args)  # type: ignore[operator]
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="alembic", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Upgrade the database of ``settings`` to ``revision`` (sync)."""
    cfg = alembic_config(settings)
    if _in_running_loop():
        _run_in_thread(command.upgrade, cfg, revision)
    else:
        command.upgrade(cfg, revision)


def downgrade(settings: Settings, revision: str) -> None:
    cfg = alembic_config(settings)
    if _in_running_loop():
        _run_in_thread(command.downgrade, cfg, revision)
    else:
        command.downgrade(cfg, revision)


async def upgrade_async(settings: Settings, revision: str = "head") -> None:
    """Upgrade from async code on the caller's loop (one connection, one
    transaction; Alembic's sync API runs through ``run_sync``)."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_upgrade_on_connection, settings, revision)
            await conn.commit()
    finally:
        await engine.dispose()


def _upgrade_on_connection(connection: Connection, settings: Settings, revision: str) -> None:
    cfg = alembic_config(settings)
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def current_revision(settings: Settings) -> str | None:
    """The revision the database is at (None for an empty database)."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
            )
    finally:
        await engine.dispose()


def head_revision() -> str | None:
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(STORAGE_DIR / "migrations"))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _next_rev_id() -> str:
    numbers = [
        int(m.group(1))
        for f in VERSIONS_DIR.glob("*.py")
        if (m := re.search(r"^revision: str = ['\"](\d+)['\"]", f.read_text(), re.M))
    ]
    return f"{max(numbers, default=0) + 1:04d}"


def revision(
    settings: Settings,
    message: str,
    autogenerate: bool = True,
    rev_id: str | None = None,
    render_as_batch: bool | None = None,
) -> Path:
    """Create a new migration file (autogenerated against the database of
    ``settings``, which must be at head) and return its path.

    Later migrations that alter tables are rendered in batch mode on SQLite
    (``op.batch_alter_table``), which also runs as plain ALTERs on PostgreSQL.
    """
    cfg = alembic_config(settings)
    if render_as_batch is not None:
        cfg.attributes["render_as_batch"] = render_as_batch
    rev_id = rev_id or _next_rev_id()
    before = set(VERSIONS_DIR.glob("*.py"))
    if _in_running_loop():
        _run_in_thread(
            lambda: command.revision(cfg, message=message, autogenerate=autogenerate, rev_id=rev_id)
        )
    else:
        command.revision(cfg, message=message, autogenerate=autogenerate, rev_id=rev_id)
    created = sorted(set(VERSIONS_DIR.glob("*.py")) - before)
    return created[0]


def regenerate_initial() -> Path:
    """Replace all migrations by a fresh ``0001`` autogenerated from the models."""
    for old in VERSIONS_DIR.glob("*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = load_settings(
            environment="development",
            database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'empty.sqlite3'}",
            load_demo_data=False,
        )
        return revision(
            scratch,
            INITIAL_MESSAGE,
            autogenerate=True,
            rev_id=INITIAL_REVISION,
            render_as_batch=False,
        )


def main(argv: list[str]) -> int:
    usage = "usage: python -m storage.migrate {upgrade [REV]|revision MESSAGE|regenerate-initial}"
    if not argv:
        print(usage, file=sys.stderr)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "upgrade":
        upgrade(load_settings(), rest[0] if rest else "head")
    elif cmd == "revision" and rest:
        print(revision(load_settings(), " ".join(rest)))
    elif cmd == "regenerate-initial":
        path = regenerate_initial()
        print(path)
    else:
        print(usage, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
