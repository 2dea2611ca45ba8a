"""Per-conversation locks: two messages of one chat are never processed at
once, across processes too (aiogram's FSM middleware learnt to take the lock
before reading the state: aiogram/aiogram#1012).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import LockError

from storage.keys import KeyBuilder


class LockTimeout(Exception):
    """The lock was not acquired within the wait time."""


class LockStore(abc.ABC):
    @abc.abstractmethod
    def lock(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold an exclusive lock on ``key`` for the duration of the block."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class MemoryLockStore(LockStore):
    """In-process locks for embedded mode (one process)."""

    def __init__(self, wait_seconds: float = 20.0) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._wait = wait_seconds

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        try:
            await asyncio.wait_for(lock.acquire(), self._wait)
        except TimeoutError as exc:
            raise LockTimeout(key) from exc
        try:
            yield
        finally:
            lock.release()


class RedisLockStore(LockStore):
    """Redis locks (redis-py's token-checked ``Lock``) shared by all processes."""

    def __init__(
        self,
        redis: Redis,
        keys: KeyBuilder,
        ttl_seconds: float = 30.0,
        wait_seconds: float = 20.0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds
        self._wait = wait_seconds

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        lock = self._redis.lock(
            self._keys.build("lock", key),
            timeout=self._ttl,
            blocking_timeout=self._wait,
            sleep=0.01,
        )
        if not await lock.acquire():
            raise LockTimeout(key)
        try:
            yield
        finally:
            with contextlib.suppress(LockError):
                # Expired under us (a very slow turn): nothing left to release.
                await lock.release()

    async def close(self) -> None:
        await self._redis.aclose()
