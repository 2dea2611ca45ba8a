"""Publish/subscribe between the processes that serve one bot.

A process that holds a customer's live socket subscribes to that chat's
topic; a process that produced something for it publishes there. Delivery
is at most once and only to whoever listens *now*: anything that must not be
lost is written to the database first (the outbox), and a message here only
says "go and look" or "push this now".

Topics are logical names (``webchat:<chat id>``); each store builds its key
from them once (:class:`storage.keys.KeyBuilder`). A subscriber gets the
messages of a topic in the order they were published.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from storage.errors import StorageUnavailable
from storage.keys import KeyBuilder
from storage.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Handler = Callable[[str], Awaitable[None]]

# A broken Redis connection is retried after this long; the topics are
# subscribed again on the new connection.
RECONNECT_SECONDS = 0.5


class PubSubError(Exception):
    """Root of the pub/sub errors."""


class PubSubUnavailable(PubSubError, StorageUnavailable):
    """The broker (Redis) cannot be reached; nothing was published."""


class Subscription:
    """One handler on one topic; :meth:`unsubscribe` stops it (idempotent)."""

    def __init__(self, store: PubSub, topic: str, handler: Handler) -> None:
        self.topic = topic
        self.handler = handler
        self._store = store
        self.active = True

    async def unsubscribe(self) -> None:
        if self.active:
            self.active = False
            await self._store._remove(self)


class PubSub(abc.ABC):
    """Topics with several subscribers each, in this process and in others."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Subscription]] = {}

    @abc.abstractmethod
    async def publish(self, topic: str, message: str) -> int:
        """Send ``message`` to the topic's subscribers now; how many listen
        (0: nobody, in any process). Raises :class:`PubSubUnavailable`."""

    async def subscribe(self, topic: str, handler: Handler) -> Subscription:
        """Call ``handler`` with every message published to ``topic`` from now on."""
        sub = Subscription(self, topic, handler)
        first = topic not in self._subs
        self._subs.setdefault(topic, []).append(sub)
        if first:
            try:
                await self._listen(topic)
            except BaseException:
                await self._remove(sub)
                raise
        return sub

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop every subscription and release connections."""

    async def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.topic)
        if subs is None or sub not in subs:
            return
        subs.remove(sub)
        if not subs:
            del self._subs[sub.topic]
            await self._unlisten(sub.topic)

    async def _dispatch(self, topic: str, message: str) -> None:
        for sub in list(self._subs.get(topic, ())):
            if not sub.active:
                continue
            try:
                await sub.handler(message)
            except Exception:
                # One subscriber's failure never stops the others.
                log.exception("pub/sub handler failed on a %s message", topic.split(":")[0])

    @abc.abstractmethod
    async def _listen(self, topic: str) -> None: ...

    @abc.abstractmethod
    async def _unlisten(self, topic: str) -> None: ...


class MemoryPubSub(PubSub):
    """One process (embedded mode): handlers run in publication order on one task."""

    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def publish(self, topic: str, message: str) -> int:
        listeners = len(self._subs.get(topic, ()))
        if listeners:
            self._ensure_task()
            self._queue.put_nowait((topic, message))
        return listeners

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="memory-pubsub")

    async def _run(self) -> None:
        while True:
            topic, message = await self._queue.get()
            await self._dispatch(topic, message)

    async def _listen(self, topic: str) -> None:
        return None

    async def _unlisten(self, topic: str) -> None:
        return None

    async def close(self) -> None:
        self._subs.clear()
        if self._task is not None:
            task, self._task = self._task, None
            await cancel_and_wait(task, 5)


class RedisPubSub(PubSub):
    """Redis PUBLISH/SUBSCRIBE: one subscriber connection per process, read
    by one task that hands each message to the topic's local handlers."""

    def __init__(self, redis: Redis, keys: KeyBuilder) -> None:
        super().__init__()
        self._redis = redis
        self._keys = keys
        self._pubsub: Any = redis.pubsub(ignore_subscribe_messages=True)
        self._topics: dict[str, str] = {}  # Redis channel -> topic
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    def _key(self, topic: str) -> str:
        return self._keys.pubsub_channel(topic)

    async def publish(self, topic: str, message: str) -> int:
        try:
            return int(await self._redis.publish(self._key(topic), message))
        except (RedisError, OSError) as exc:
            raise PubSubUnavailable(f"cannot publish to {topic.split(':')[0]}") from exc

    async def _listen(self, topic: str) -> None:
        key = self._key(topic)
        self._topics[key] = topic
        try:
            await self._pubsub.subscribe(key)
        except (RedisError, OSError) as exc:
            del self._topics[key]
            raise PubSubUnavailable("cannot subscribe") from exc
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="redis-pubsub")

    async def _unlisten(self, topic: str) -> None:
        key = self._key(topic)
        self._topics.pop(key, None)
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.unsubscribe(key)

    async def _read(self) -> None:
        # The flag, not only the cancellation, ends the reader: redis-py can
        # lose a cancellation (on Python 3.11 its reads run in
        # asyncio.wait_for: CPython gh-86296), and a reader that lived on after
        # close would log "reconnecting" every second for ever.
        while not self._closed:
            try:
                if not self._pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                got = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                # redis-py subscribes again to every channel when it reconnects.
                log.warning("pub/sub connection lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            if got is None or got.get("type") != "message":
                continue
            channel = got["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            topic = self._topics.get(channel)
            if topic is None:
                continue
            data = got["data"]
            await self._dispatch(topic, data.decode() if isinstance(data, bytes) else str(data))

    async def close(self) -> None:
        self._closed = True
        self._subs.clear()
        self._topics.clear()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await cancel_and_wait(reader, 5)
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()
        await self._redis.aclose()
