"""Per-conversation locks, in memory and in the real Redis: one contract class
over both stores, then what only Redis locks do (a key built once, a TTL that
frees a dead holder's lock and that a live holder renews, an outage translated
into StorageUnavailable)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from sqlalchemy import text

from bot.container import build_locks
from config.settings import PROJECT_ROOT
from storage.db import create_engine
from storage.errors import StorageUnavailable
from storage.keys import KeyBuilder
from storage.locks import (
    LockLost,
    LockStore,
    LockTimeout,
    MemoryLockStore,
    RedisLockStore,
    fence_statements,
)
from tests.conftest import make_settings
from tests.servers import PrivateRedis

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
            async with make_store().conversation("telegram", "42"):
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
        async with make_store().conversation("telegram", "1"), make_store().lock("conv:telegram:2"):
            pass

    async def test_a_held_key_times_out_then_frees(self, make_store: StoreMaker) -> None:
        entered = asyncio.Event()
        release = asyncio.Event()

        async def first() -> None:
            async with make_store().conversation("widget", "7"):
                entered.set()
                await release.wait()

        task = asyncio.create_task(first())
        await entered.wait()
        with pytest.raises(LockTimeout):
            async with make_store().conversation("widget", "7"):
                pytest.fail("entered a held lock")
        release.set()
        await task
        async with make_store().conversation("widget", "7"):
            pass

    async def test_released_after_an_exception_in_the_block(self, make_store: StoreMaker) -> None:
        with pytest.raises(RuntimeError):
            async with make_store().conversation("whatsapp", "9"):
                raise RuntimeError("turn failed")
        async with make_store().conversation("whatsapp", "9"):
            pass


# --------------------------------------------------------------------------
# Redis only
# --------------------------------------------------------------------------

TTL = 0.6  # short, so that a test outlives several TTLs quickly


def redis_store(url: str, prefix: str = "test", wait: float = WAIT) -> RedisLockStore:
    return RedisLockStore(
        Redis.from_url(url), KeyBuilder(prefix), ttl_seconds=TTL, wait_seconds=wait
    )


@pytest.mark.redis
async def test_the_conversation_key_is_prefixed_once(redis_url: str) -> None:
    store = build_locks(make_settings("sqlite://", redis_url=redis_url))
    client = Redis.from_url(redis_url)
    try:
        async with store.conversation("telegram", "42"):
            keys = await client.keys("*")
        assert keys == [b"heatdesk:lock:conv:telegram:42"]
        assert await client.keys("*") == []  # released
    finally:
        await client.aclose()
        await store.close()


@pytest.mark.redis
async def test_a_live_holder_keeps_its_lock_beyond_the_ttl(redis_url: str) -> None:
    before = redis_store(redis_url)
    holder = redis_store(redis_url, wait=20 * TTL)
    other = redis_store(redis_url, wait=0.05)
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        # It waits longer than a TTL for the lock first: its TTL counts from
        # when it got the lock, not from when it asked.
        async with holder.conversation("widget", "long"):
            entered.set()
            await release.wait()

    async with before.conversation("widget", "long"):
        task = asyncio.create_task(hold())
        await asyncio.sleep(2 * TTL)
    try:
        await entered.wait()
        for _ in range(4):  # four TTLs: only renewal keeps the key
            await asyncio.sleep(TTL)
            with pytest.raises(LockTimeout):
                async with other.conversation("widget", "long"):
                    pytest.fail("entered a lock its holder still holds")
        release.set()
        await task
        async with other.conversation("widget", "long"):
            pass
    finally:
        release.set()
        await task
        await before.close()
        await holder.close()
        await other.close()


@pytest.mark.redis
async def test_a_holder_that_loses_its_lock_is_stopped(redis_url: str) -> None:
    """If the key is gone (expired during a stall, or taken), the holder's block
    is cancelled and LockLost raised: it must not commit beside the next holder."""
    store = redis_store(redis_url)
    client = Redis.from_url(redis_url)
    finished: list[str] = []

    async def turn() -> None:
        async with asyncio.timeout(10 * TTL), store.conversation("widget", "lost"):
            # Another process takes over the key (our TTL ran out, say).
            await client.set("test:lock:conv:widget:lost", "someone-else")
            await asyncio.sleep(5 * TTL)
            finished.append("committed")

    try:
        with pytest.raises(LockLost):
            await turn()
        assert finished == []
        # Another holder's key is left alone.
        assert await client.get("test:lock:conv:widget:lost") == b"someone-else"
    finally:
        await client.aclose()
        await store.close()


@pytest.mark.redis
async def test_a_released_lock_stays_released_when_its_renewal_misses_the_cancel(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leaving the block frees the key even when the renewal's cancellation
    is lost. redis-py sends each command inside ``asyncio.wait_for``, and on
    Python 3.11 a cancellation that arrives once the call has finished is
    dropped and the result returned (CPython gh-86296). The renewal then lived
    on, renewing a lock nobody held: under load every chat whose turn ended
    during a renewal was locked for good, its next message failed with
    LockTimeout and the inbox replay found the chat busy at every pass."""
    renewing = asyncio.Event()
    renew = Lock.reacquire

    async def renew_as_redis_py_does_on_3_11(self: Lock) -> bool:
        call = asyncio.ensure_future(renew(self))
        await asyncio.wait({call})
        if renewing.is_set():
            return await call
        renewing.set()  # the holder leaves its block at the next step...
        # ...and cancels this task while wait_for waits for the finished call.
        return await asyncio.wait_for(call, timeout=10 * TTL)

    monkeypatch.setattr(Lock, "reacquire", renew_as_redis_py_does_on_3_11)
    store = redis_store(redis_url)
    other = redis_store(redis_url, wait=10 * TTL)  # the chat's next turn, elsewhere

    async def turn() -> None:
        async with store.conversation("telegram", "next"):
            await renewing.wait()

    task = asyncio.create_task(turn())
    try:
        await renewing.wait()
        async with other.conversation("telegram", "next"):
            pass
        await task
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
        await store.close()
        await other.close()


HOLDER = """
import asyncio, sys
from bot.container import build_locks
from config import load_settings

async def main() -> None:
    settings = load_settings(environment="test", secret_key="k", redis_url=sys.argv[1],
                             lock_ttl_seconds=float(sys.argv[2]))
    async with build_locks(settings).conversation("telegram", "killed"):
        print("held", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.redis
async def test_the_lock_of_a_killed_process_frees_itself(redis_url: str) -> None:
    ttl = 1.0
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        redis_url,
        str(ttl),
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    client = Redis.from_url(redis_url)
    store = build_locks(
        make_settings(
            "sqlite://", redis_url=redis_url, lock_ttl_seconds=ttl, lock_wait_seconds=0.05
        )
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 60) == b"held\n"
        await asyncio.sleep(2 * ttl)
        # Alive, it keeps the lock past its TTL...
        assert await client.exists("heatdesk:lock:conv:telegram:killed")
        with pytest.raises(LockTimeout):
            async with store.conversation("telegram", "killed"):
                pytest.fail("entered a live holder's lock")
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
        # ...and killed, it leaves a lock that lives one TTL at most.
        await asyncio.sleep(ttl)
        async with store.conversation("telegram", "killed"):
            pass
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        await client.aclose()
        await store.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_a_stopped_redis_is_storage_unavailable(private_redis: PrivateRedis) -> None:
    store = redis_store(private_redis.url)
    try:
        async with store.conversation("widget", "1"):
            pass
        private_redis.kill()
        with pytest.raises(StorageUnavailable) as raised:
            async with store.conversation("widget", "1"):
                pytest.fail("locked without Redis")
        assert type(raised.value) is StorageUnavailable
        private_redis.start()  # the same port: the client reconnects by itself
        async with store.conversation("widget", "1"):
            pass
    finally:
        await store.close()


async def test_a_holder_whose_redis_dies_is_stopped(private_redis: PrivateRedis) -> None:
    """Redis gone for longer than the TTL: the lock may be anyone's now."""
    store = redis_store(private_redis.url)
    finished: list[str] = []

    async def turn() -> None:
        async with asyncio.timeout(30 * TTL), store.conversation("widget", "2"):
            private_redis.kill()
            await asyncio.sleep(20 * TTL)
            finished.append("committed")

    try:
        with pytest.raises(LockLost):
            await turn()
        assert finished == []
    finally:
        await store.close()


@pytest.mark.redis
async def test_a_burst_of_turns_beyond_the_pool_waits_for_a_connection(redis_url: str) -> None:
    # 300 chats locked at once in one process: more commands in flight than
    # redis-py's default pool allows (100), which refused the rest with
    # MaxConnectionsError, so those turns failed as if Redis were down.
    store = build_locks(make_settings("sqlite://", redis_url=redis_url, redis_max_connections=20))
    entered: list[str] = []

    async def turn(chat: str) -> None:
        async with store.conversation("telegram", chat):
            entered.append(chat)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(*(turn(f"burst-{i}") for i in range(300)))
    finally:
        await store.close()
    assert sorted(entered) == sorted(f"burst-{i}" for i in range(300))


def stall(seconds: float) -> None:
    """Block the event loop, as a stalled process would: no renewal runs."""
    time.sleep(seconds)


@pytest.mark.redis
async def test_a_holder_stalled_past_its_ttl_commits_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    """A turn whose event loop stalls longer than the lock's TTL (the
    renewal cannot run, the key expires, another process may take the chat)
    reaches its next statement or its commit before the renewal could cancel
    it: the fence on the engine refuses it with LockLost, and nothing of the
    block is kept. A holder that does not stall commits as usual."""
    engine = create_engine(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'fence.db'}"))
    fence_statements(engine)
    store = redis_store(redis_url)

    async def turn(what: str, *, stall_before: float = 0.0, stall_after: float = 0.0) -> None:
        async with store.conversation("telegram", "fenced"), engine.begin() as conn:
            stall(stall_before)
            await conn.execute(text("INSERT INTO turns VALUES (:what)"), {"what": what})
            stall(stall_after)
        # engine.begin() commits here, still inside the lock's block.

    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE turns (what TEXT)"))
        await turn("in time")
        with pytest.raises(LockLost):
            await turn("stalled before its commit", stall_after=TTL)
        with pytest.raises(LockLost):
            await turn("stalled before its write", stall_before=TTL)
        await turn("in time again")  # the lock is taken and kept as usual
        # Outside any lock the fence does nothing.
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT what FROM turns"))).scalars().all()
        assert rows == ["in time", "in time again"]
    finally:
        await store.close()
        await engine.dispose()
