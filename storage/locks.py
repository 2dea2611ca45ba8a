"""Per-conversation locks: two messages of one chat are never processed at
once, across processes too (aiogram's FSM middleware learnt to take the lock
before reading the state: aiogram/aiogram#1012).

Callers name what they lock (``conversation(channel, chat_id)``, or a logical
name for :meth:`LockStore.lock`); the store builds the key, once.

A Redis lock has a short TTL that its holder renews while it holds it, so a lock
left by a killed process frees itself within about one TTL. If the holder cannot
renew in time (Redis unreachable, or the key gone), another process may already
hold the lock: the holder's block is cancelled at its next ``await`` and
:class:`LockLost` is raised instead, so a turn that lost its lock rolls back
rather than commits beside another one. The inbox entry stays unprocessed and is
replayed.

That cancellation needs the event loop to run the renewal: a holder stalled
past the TTL (the loop blocked, the process paused) would still reach its next
statement, or its commit, before the renewal found the key gone. The fence
(:func:`fence_statements`, on the engine) closes that: every statement sent
while the task holds a Redis lock checks, by the monotonic clock and without
a round trip, that the lock's key was last set or renewed less than a TTL
less the renewal's margin ago, and raises :class:`LockLost` otherwise, so
the turn rolls back. What is left is a statement (a COMMIT) that goes out
inside the deadline and takes longer than the margin, a fifth of the TTL,
to reach the database.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import contextvars
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, LockNotOwnedError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.errors import StorageUnavailable
from storage.keys import KeyBuilder, conversation_lock_name
from storage.tasks import cancel_and_wait

log = logging.getLogger(__name__)


def _role(name: str) -> str:
    # A lock's name holds a chat id (a WhatsApp chat id is a phone number):
    # errors and logs name only its role.
    return name.split(":", 1)[0]


# What an unreachable Redis raises; translated into StorageUnavailable here.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


class LockTimeout(Exception):
    """The lock was not acquired within the wait time."""


class LockLost(StorageUnavailable):
    """The lock could not be renewed before its TTL ran out; the block was
    cancelled so that it does not commit beside another holder."""


class LockStore(abc.ABC):
    @abc.abstractmethod
    def lock(
        self, name: str, *, wait_seconds: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold an exclusive lock on the logical ``name`` for the block.

        ``wait_seconds`` overrides the store's wait (0: only if it is free now,
        for a lock held long, such as a poller's, that others try every so often).
        """

    def conversation(
        self, channel: str, chat_id: str, *, wait_seconds: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the lock of one conversation (``wait_seconds`` as for :meth:`lock`)."""
        return self.lock(conversation_lock_name(channel, chat_id), wait_seconds=wait_seconds)

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class MemoryLockStore(LockStore):
    """In-process locks for embedded mode (one process: they die with it)."""

    def __init__(self, wait_seconds: float = 20.0) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._wait = wait_seconds

    @contextlib.asynccontextmanager
    async def lock(self, name: str, *, wait_seconds: float | None = None) -> AsyncIterator[None]:
        lock = self._locks.get(name)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[name] = lock
        wait = self._wait if wait_seconds is None else wait_seconds
        if wait <= 0 and lock.locked():
            raise LockTimeout(_role(name))
        try:
            await asyncio.wait_for(lock.acquire(), wait if wait > 0 else None)
        except TimeoutError as exc:
            raise LockTimeout(_role(name)) from exc
        try:
            yield
        finally:
            lock.release()


class RedisLockStore(LockStore):
    """Redis locks (redis-py's token-checked ``Lock``) shared by all processes,
    with a short TTL renewed every third of it by the holder."""

    def __init__(
        self,
        redis: Redis,
        keys: KeyBuilder,
        ttl_seconds: float = 5.0,
        wait_seconds: float = 20.0,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds
        self._wait = wait_seconds

    def key(self, name: str) -> str:
        """The Redis key of the lock ``name``."""
        return self._keys.lock(name)

    @contextlib.asynccontextmanager
    async def lock(self, name: str, *, wait_seconds: float | None = None) -> AsyncIterator[None]:
        lock = self._redis.lock(
            self.key(name),
            timeout=self._ttl,
            blocking_timeout=self._wait if wait_seconds is None else max(wait_seconds, 0.0),
            sleep=0.01,
            thread_local=False,  # renewed from another task
        )
        try:
            acquired = await lock.acquire()
        except REDIS_DOWN as exc:
            raise StorageUnavailable(f"Redis unreachable taking a {_role(name)} lock") from exc
        if not acquired:
            raise LockTimeout(_role(name))
        # The key was set by acquire's last attempt, not its first (it may have
        # waited): count the TTL from now, one round trip late at most, which
        # the renewal's margin covers.
        loop = asyncio.get_running_loop()
        holder = asyncio.current_task()
        assert holder is not None
        renewal = _Renewal(lock, name, self._ttl, expires=loop.time() + self._ttl, holder=holder)
        # Most blocks are over long before the first renewal is due: a timer,
        # not a task a lock, until then (a task's creation, first step and
        # cancellation were most of a short turn's lock overhead).
        timer = loop.call_later(self._ttl / 3, renewal.start)
        fenced = _HELD.set((*_HELD.get(), renewal))
        try:
            yield
        except asyncio.CancelledError:
            renewal.inside = False
            if renewal.cancelled_holder and holder.uncancel() == 0:
                raise LockLost(_role(name)) from None
            raise
        finally:
            # The flag, not the cancellation, is what stops the renewer: a
            # cancellation can be lost inside redis-py (on Python 3.11 its send
            # runs in asyncio.wait_for, which returns a call that has just
            # finished instead of raising: CPython gh-86296), and a renewer
            # that lived on renewed the key for ever after the block was left.
            renewal.inside = False
            timer.cancel()
            _HELD.reset(fenced)
            renewer = renewal.task
            if renewer is not None and not await cancel_and_wait(renewer, self._ttl):
                # Stuck in a round trip: it stops when that returns; the key
                # is deleted now regardless (a late renewal finds it gone).
                log.warning("%s lock renewal still running at release", _role(name))
            await _release(lock, name)

    async def close(self) -> None:
        await self._redis.aclose()


class _Renewal:
    """Keeps one held lock alive; cancels its holder if it cannot."""

    def __init__(
        self, lock: Lock, name: str, ttl: float, expires: float, holder: asyncio.Task[object]
    ) -> None:
        self._lock = lock
        self._name = name
        self._ttl = ttl
        self._expires = expires  # when the key expires unless renewed (loop time)
        # Give up a fifth of the TTL early: the cancellation must reach the
        # holder's next await before another process can take the key.
        self._margin = ttl / 5
        # The fence's deadline, by the monotonic clock (the loop's time stands
        # still while a callback blocks it, which is what the fence is for).
        self.fence_until = time.monotonic() + ttl - self._margin
        self._holder = holder
        # The holder is still in its block; cleared when it leaves, which
        # stops the renewal even if its cancellation never arrives.
        self.inside = True
        self.cancelled_holder = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """The first renewal is due (a timer calls this): run them from now on."""
        if self.inside and self.task is None:
            self.task = asyncio.get_running_loop().create_task(
                self.run(), name=f"lock-renewal:{_role(self._name)}"
            )

    def check(self) -> None:
        """Raise :class:`LockLost` if the key may have expired by now."""
        if self.inside and time.monotonic() >= self.fence_until:
            log.warning("%s lock past its deadline: statement refused", _role(self._name))
            raise LockLost(_role(self._name))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # ``inside`` is checked after every await: see RedisLockStore.lock.
        while self.inside:
            # Tried even when late (a stalled loop): the token check makes a
            # success proof that the key stayed ours all along.
            left = max(self._expires - self._margin - loop.time(), self._ttl / 10)
            sent = time.monotonic()
            try:
                async with asyncio.timeout(left):
                    await self._lock.reacquire()
            except LockNotOwnedError:
                self._lose("the key is gone or another holder has it")
                return
            except (RedisError, OSError, TimeoutError) as exc:
                # Transient (Redis down, restarting, slow): retry until the deadline.
                if loop.time() >= self._expires - self._margin:
                    self._lose(f"not renewed in time ({type(exc).__name__})")
                    return
                await asyncio.sleep(self._ttl / 10)
                continue
            self._expires = loop.time() + self._ttl
            self.fence_until = sent + self._ttl - self._margin
            await asyncio.sleep(self._ttl / 3)

    def _lose(self, why: str) -> None:
        if not self.inside:
            return  # released meanwhile: nothing is lost
        log.warning("%s lock lost: %s", _role(self._name), why)
        self.cancelled_holder = True
        self.fence_until = -1.0  # nothing more goes to the database
        self._holder.cancel()


# The Redis locks the current task holds (a child task started inside a block
# inherits them; they stop counting once that block is left).
_HELD: contextvars.ContextVar[tuple[_Renewal, ...]] = contextvars.ContextVar(
    "heatdesk_locks_held", default=()
)


def check_locks_held() -> None:
    """Raise :class:`LockLost` if a Redis lock this task holds may have
    expired (see the module docstring): before a write, or a commit."""
    for renewal in _HELD.get():
        renewal.check()


def fence_statements(engine: AsyncEngine) -> None:
    """Every statement and COMMIT on ``engine`` first calls
    :func:`check_locks_held`: a turn whose lock may have expired while it was
    stalled writes nothing (no round trip: a context variable and the clock)."""

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before_statement(*_args: Any) -> None:
        check_locks_held()

    @event.listens_for(engine.sync_engine, "commit")
    def _before_commit(_conn: Any) -> None:
        check_locks_held()


async def _release(lock: Lock, name: str) -> None:
    try:
        await lock.release()
    except LockError:
        pass  # expired or taken over: nothing of ours left to release
    except REDIS_DOWN as exc:
        # The block's outcome stands; the key expires within the TTL by itself.
        log.warning(
            "%s lock not released (%s); it expires by itself", _role(name), type(exc).__name__
        )
