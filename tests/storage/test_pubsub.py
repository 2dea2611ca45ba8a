"""Pub/sub between processes, in memory and in the real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from redis.asyncio import Redis

from storage.errors import StorageUnavailable
from storage.keys import KeyBuilder
from storage.pubsub import MemoryPubSub, PubSub, RedisPubSub
from tests.servers import PrivateRedis

# Makes a store as one process would have it: the one shared store in memory
# (embedded mode has one process), a store with its own Redis connections
# for Redis (another process).
StoreMaker = Callable[[], PubSub]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def redis_or_memory(request: pytest.FixtureRequest) -> str | None:
    """The Redis URL, or None for the in-memory store."""
    if request.param == "memory":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def make_store(redis_or_memory: str | None) -> AsyncIterator[StoreMaker]:
    made: list[PubSub] = []
    url = redis_or_memory
    if url is None:
        shared = MemoryPubSub()
        made.append(shared)

        def make() -> PubSub:
            return shared

    else:

        def make() -> PubSub:
            store = RedisPubSub(Redis.from_url(url), KeyBuilder("test"))
            made.append(store)
            return store

    yield make
    for store in made:
        await store.close()


class Inbox:
    """A subscriber that records what it gets."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self._more = asyncio.Event()

    async def __call__(self, message: str) -> None:
        self.got.append(message)
        self._more.set()

    async def wait_for(self, count: int) -> list[str]:
        async with asyncio.timeout(5):
            while len(self.got) < count:
                self._more.clear()
                await self._more.wait()
        return self.got


async def settle() -> None:
    """Give a message that should NOT arrive the time it would take."""
    await asyncio.sleep(0.2)


class TestPubSub:
    async def test_a_subscriber_gets_what_is_published(self, make_store: StoreMaker) -> None:
        store = make_store()
        inbox = Inbox()
        await store.subscribe("webchat:c1", inbox)
        assert await store.publish("webchat:c1", "hello") == 1
        assert await inbox.wait_for(1) == ["hello"]

    async def test_nobody_listening_is_reported(self, make_store: StoreMaker) -> None:
        store = make_store()
        assert await store.publish("webchat:nobody", "lost") == 0

    async def test_several_subscribers_each_get_it(self, make_store: StoreMaker) -> None:
        store = make_store()
        one, two = Inbox(), Inbox()
        await store.subscribe("webchat:c2", one)
        await store.subscribe("webchat:c2", two)
        await store.publish("webchat:c2", "for both")
        assert await one.wait_for(1) == ["for both"]
        assert await two.wait_for(1) == ["for both"]

    async def test_topics_are_separate(self, make_store: StoreMaker) -> None:
        store = make_store()
        mine, other = Inbox(), Inbox()
        await store.subscribe("webchat:a", mine)
        await store.subscribe("webchat:b", other)
        await store.publish("webchat:b", "for b")
        assert await other.wait_for(1) == ["for b"]
        await settle()
        assert mine.got == []

    async def test_unsubscribed_gets_nothing_more(self, make_store: StoreMaker) -> None:
        store = make_store()
        gone, stays = Inbox(), Inbox()
        sub = await store.subscribe("webchat:c3", gone)
        await store.subscribe("webchat:c3", stays)
        await store.publish("webchat:c3", "first")
        await gone.wait_for(1)
        await sub.unsubscribe()
        await sub.unsubscribe()  # idempotent
        await store.publish("webchat:c3", "second")
        assert await stays.wait_for(2) == ["first", "second"]
        await settle()
        assert gone.got == ["first"]

    async def test_the_last_unsubscribe_stops_listening(self, make_store: StoreMaker) -> None:
        store = make_store()
        sub = await store.subscribe("webchat:c4", Inbox())
        await sub.unsubscribe()
        assert await store.publish("webchat:c4", "anyone?") == 0

    async def test_messages_arrive_in_order(self, make_store: StoreMaker) -> None:
        store = make_store()
        inbox = Inbox()
        await store.subscribe("webchat:c5", inbox)
        sent = [f"m{i}" for i in range(50)]
        for m in sent:
            await store.publish("webchat:c5", m)
        assert await inbox.wait_for(50) == sent

    async def test_a_subscriber_in_another_process_gets_it(self, make_store: StoreMaker) -> None:
        publisher, listener = make_store(), make_store()
        inbox = Inbox()
        await listener.subscribe("webchat:c6", inbox)
        assert await publisher.publish("webchat:c6", "from afar") == 1
        assert await inbox.wait_for(1) == ["from afar"]

    async def test_a_failing_handler_does_not_stop_the_others(self, make_store: StoreMaker) -> None:
        store = make_store()
        inbox = Inbox()

        async def broken(message: str) -> None:
            raise RuntimeError("a bug in one subscriber")

        await store.subscribe("webchat:c7", broken)
        await store.subscribe("webchat:c7", inbox)
        await store.publish("webchat:c7", "one")
        await store.publish("webchat:c7", "two")
        assert await inbox.wait_for(2) == ["one", "two"]


async def test_redis_channels_are_prefixed_once(redis_url: str) -> None:
    """The store builds the channel name from the topic: one prefix."""
    # Channels are server-wide (not per database): look only at this test's
    # own prefix, so other processes' subscriptions do not count.
    prefix = f"heatdesk-{uuid.uuid4().hex[:8]}"
    spy = Redis.from_url(redis_url)
    store = RedisPubSub(Redis.from_url(redis_url), KeyBuilder(prefix))
    try:
        await store.subscribe("webchat:c8", Inbox())
        raw = await spy.pubsub_channels(f"{prefix}*")
        channels = {c.decode() if isinstance(c, bytes) else c for c in raw}
        assert channels == {f"{prefix}:pubsub:webchat:c8"}
    finally:
        await store.close()
        await spy.aclose()


async def test_close_ends_a_reader_that_lost_its_cancellation(redis_url: str) -> None:
    # redis-py can lose a cancellation inside a read (CPython gh-86296): the
    # read returns nothing as if its timeout had passed. The reader must
    # still end at close, not read on (and log "reconnecting") for ever.
    store = RedisPubSub(Redis.from_url(redis_url), KeyBuilder("test"))
    reads = 0
    reading = asyncio.Event()
    real = store._pubsub.get_message

    async def losing_read(**kwargs: object) -> object:
        nonlocal reads
        reads += 1
        if reads == 1:
            reading.set()
            with contextlib.suppress(asyncio.CancelledError):  # lost, as inside redis-py
                await asyncio.sleep(3600)
            return None
        return await real(**kwargs)

    store._pubsub.get_message = losing_read
    await store.subscribe("webchat:c9", Inbox())
    reader = store._reader
    assert reader is not None
    await reading.wait()
    await store.close()
    assert reader.done()  # on the old code: still reading after close's 5 s
    assert reads == 1


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_a_stopped_redis_is_unavailable_then_subscriptions_resume(
    private_redis: PrivateRedis,
) -> None:
    listener = RedisPubSub(Redis.from_url(private_redis.url), KeyBuilder("test"))
    publisher = RedisPubSub(Redis.from_url(private_redis.url), KeyBuilder("test"))
    inbox = Inbox()
    try:
        await listener.subscribe("webchat:c9", inbox)
        await publisher.publish("webchat:c9", "before")
        await inbox.wait_for(1)
        private_redis.kill()
        with pytest.raises(StorageUnavailable):  # translated, not a raw redis error
            await publisher.publish("webchat:c9", "while down")
        private_redis.start()  # the same port, empty
        # The listener subscribes again on its new connection by itself.
        for _ in range(100):
            if await publisher.publish("webchat:c9", "after"):
                break
            await asyncio.sleep(0.1)  # until the listener is back
        else:
            pytest.fail("the listener never subscribed again")
        got = await inbox.wait_for(2)
        assert got[0] == "before"
        assert set(got[1:]) == {"after"}
    finally:
        await listener.close()
        await publisher.close()
