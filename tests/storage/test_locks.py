"""Per-conversation locks, in memory and in the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from storage.keys import KeyBuilder
from storage.locks import LockStore, LockTimeout, MemoryLockStore, RedisLockStore

WAIT = 0.4  # seconds a holder waits before LockTimeout

# Makes the store a holder uses: the one shared store in memory (one process),
# a store with its own Redis client for Redis (as another process would).
StoreMaker = Callable[[], LockStore]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def redis_or_memory(request: pytest.FixtureRequest) -> str | None:
    """The Redis URL, or None for the in-memory store."""
    if request.param == "memory":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def make_store(redis_or_memory: str | None) -> AsyncIterator[StoreMaker]:
    made: list[LockStore] = []
    url = redis_or_memory
    if url is None:
        shared = MemoryLockStore(wait_seconds=WAIT)

        def make() -> LockStore:
            return shared

    else:

        def make() -> LockStore:
            store = RedisLockStore(
                Redis.from_url(url), KeyBuilder("test"), ttl_seconds=10, wait_seconds=WAIT
            )
            made.append(store)
            return store

    yield make
    for store in made:
        await store.close()


class TestLockStore:
    async def test_two_holders_of_one_key_never_overlap(self, make_store: StoreMaker) -> None:
        inside = 0
        most_inside = 0
        order: list[str] = []

        async def holder(name: str) -> None:
            nonlocal inside, most_inside
            async with make_store().lock("conv:telegram:42"):
                inside += 1
                most_inside = max(most_inside, inside)
                order.append(f"{name}+")
                await asyncio.sleep(0.03)  # 3 holders: the last waits 0.06 s < WAIT
                order.append(f"{name}-")
                inside -= 1

        await asyncio.gather(holder("a"), holder("b"), holder("c"))
        assert most_inside == 1
        # Each holder leaves before the next one enters.
        assert [e[1] for e in order] == ["+", "-"] * 3
        assert all(order[i][0] == order[i + 1][0] for i in range(0, 6, 2))

    async def test_different_keys_are_independent(self, make_store: StoreMaker) -> None:
        # Would raise LockTimeout if "2" waited for "1".
        async with make_store().lock("conv:telegram:1"), make_store().lock("conv:telegram:2"):
            pass

    async def test_a_held_key_times_out_then_frees(self, make_store: StoreMaker) -> None:
        entered = asyncio.Event()
        release = asyncio.Event()

        async def first() -> None:
            async with make_store().lock("conv:widget:7"):
                entered.set()
                await release.wait()

        task = asyncio.create_task(first())
        await entered.wait()
        with pytest.raises(LockTimeout):
            async with make_store().lock("conv:widget:7"):
                pytest.fail("entered a held lock")
        release.set()
        await task
        async with make_store().lock("conv:widget:7"):
            pass

    async def test_released_after_an_exception_in_the_block(self, make_store: StoreMaker) -> None:
        with pytest.raises(RuntimeError):
            async with make_store().lock("conv:whatsapp:9"):
                raise RuntimeError("turn failed")
        async with make_store().lock("conv:whatsapp:9"):
            pass


async def test_redis_lock_expires_when_a_holder_dies(redis_url: str) -> None:
    """A crashed process's lock frees itself after its TTL."""
    dead = Redis.from_url(redis_url)
    stale = dead.lock("test:lock:conv:x", timeout=0.3)
    assert await stale.acquire()
    await dead.aclose()  # never releases
    store = RedisLockStore(
        Redis.from_url(redis_url), KeyBuilder("test"), ttl_seconds=5, wait_seconds=2
    )
    try:
        async with store.lock("conv:x"):
            pass
    finally:
        await store.close()
