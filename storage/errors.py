"""Storage failures, classified once at the storage edge.

:class:`StorageUnavailable` is the root the layers above catch: the database or
Redis could not be used right now, and nothing that was accepted is lost (the
caller's inbox entry stays unprocessed and is replayed). Third-party errors are
translated into it where they are raised (``raise StorageUnavailable(...) from
exc``), or recognised by :func:`is_storage_failure` where a whole block of ORM
work may fail.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout


class StorageUnavailable(Exception):
    """A database or Redis could not be used; retry later."""


def is_storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means "storage is down", not "this code has a bug"."""
    if isinstance(
        exc,
        StorageUnavailable
        | OperationalError
        | InterfaceError
        | DisconnectionError
        | PoolTimeout
        | ConnectionError
        | OSError,
    ):
        return True
    if isinstance(exc, IntegrityError | DataError | ProgrammingError | NotSupportedError):
        return False  # the statement is wrong, not the server
    if isinstance(exc, DBAPIError):
        # A DBAPIError without a statement was raised while connecting (asyncpg's
        # "cannot connect now", "not accepting connections", a refused socket):
        # SQLAlchemy wraps those as a plain DBAPIError with connection_invalidated
        # False, and they are outages, not bugs.
        return exc.connection_invalidated or exc.statement is None or _is_os_error(exc.orig)
    return False


def _is_os_error(orig: BaseException | None) -> bool:
    return isinstance(orig, OSError | ConnectionError)


class OutageLog:
    """One warning when a storage outage starts, one info line when it ends.

    An outage fails every message and every background pass; a line (let alone a
    traceback) per failure says nothing new and buries the rest of the log.
    """

    def __init__(self, logger: logging.Logger, what: str = "storage") -> None:
        self._log = logger
        self._what = what
        self._failures = 0

    @property
    def down(self) -> bool:
        return self._failures > 0

    def failed(self, exc: BaseException) -> None:
        self._failures += 1
        if self._failures == 1:
            cause = exc.__cause__ or exc
            self._log.warning(
                "%s unavailable (%s); messages stay in the inbox and are answered when it is back",
                self._what,
                type(cause).__name__,
            )

    def recovered(self) -> None:
        if self._failures:
            self._log.info("%s is back after %d failed attempts", self._what, self._failures)
            self._failures = 0
