"""The console's live socket: ``/console/ws`` pushes "something changed" events.

The events come from pub/sub, so every process that serves the console sees
what any process did (Redis with ``REDIS_URL``, memory in one process):

- ``operators`` (bot/operators/service.py): queue, chat, message, presence;
- ``conversations`` (bot/conversations.py): a turn or an outbound message of
  a conversation, i.e. the customer wrote or was written to.

A frame says what changed and where (``{"type": "message",
"conversation_id": 12}``); the page then reads the queue, its chats or the
open chat again over the API. Nothing is lost by a missed frame: the page
reloads everything when its socket (re)connects.

Each socket has a queue and a writer of its own, so one slow browser never
holds up the others, nor the process's pub/sub reader. The handshake needs
a live session cookie and, from a browser, an Origin of this very host
(cross-site WebSocket hijacking); the session is checked again every
``RECHECK_SECONDS``, so a logout or a disabled account ends the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Final

from starlette.websockets import WebSocket, WebSocketDisconnect

from bot.console.auth import SESSION_COOKIE, container_of, load_session
from bot.conversations import EVENTS_TOPIC
from bot.operators.service import OPERATOR_EVENTS_TOPIC
from storage.pubsub import PubSub, PubSubError, Subscription

log = logging.getLogger(__name__)

RECHECK_SECONDS: Final = 30.0
SOCKET_QUEUE: Final = 256  # frames waiting for one browser; beyond that it reloads
SEND_TIMEOUT_SECONDS: Final = 10.0
CLOSE_POLICY: Final = 1008  # policy violation: no session, or a foreign origin


def frame_of_operator_event(raw: str) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or "type" not in data:
        return None
    return {
        "type": str(data["type"]),
        "conversation_id": data.get("conversation_id"),
        "owner_operator_id": data.get("owner_operator_id"),
    }


def frame_of_conversation_event(raw: str) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or "conversation_id" not in data:
        return None
    # Only the id: the chat id is a platform address and stays on the server.
    return {"type": "message", "conversation_id": data["conversation_id"]}


class ConsoleHub:
    """The process's console sockets and its two pub/sub subscriptions."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._subs: list[Subscription] = []
        self._subscribing = asyncio.Lock()

    @property
    def sockets(self) -> int:
        return len(self._queues)

    async def _subscribe(self, pubsub: PubSub) -> None:
        async with self._subscribing:
            if self._subs:
                return
            self._subs = [
                await pubsub.subscribe(OPERATOR_EVENTS_TOPIC, self._on_operator_event),
                await pubsub.subscribe(EVENTS_TOPIC, self._on_conversation_event),
            ]

    async def add(self, pubsub: PubSub) -> asyncio.Queue[dict[str, Any] | None]:
        await self._subscribe(pubsub)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SOCKET_QUEUE)
        self._queues.add(queue)
        return queue

    def remove(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._queues.discard(queue)

    def fan_out(self, frame: dict[str, Any]) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:
                # That browser is far behind: it reloads everything instead.
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        queue.get_nowait()
                queue.put_nowait({"type": "reload"})

    async def _on_operator_event(self, raw: str) -> None:
        frame = frame_of_operator_event(raw)
        if frame is not None:
            self.fan_out(frame)

    async def _on_conversation_event(self, raw: str) -> None:
        frame = frame_of_conversation_event(raw)
        if frame is not None:
            self.fan_out(frame)


def origin_allowed(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    if origin is None:
        return True  # not a browser: the cookie is all that counts
    host = ws.headers.get("host", "")
    return origin in {f"http://{host}", f"https://{host}"}


async def serve_socket(hub: ConsoleHub, ws: WebSocket) -> None:
    if not origin_allowed(ws):
        log.warning("console: refused a socket from a foreign origin")
        await ws.close(code=CLOSE_POLICY)
        return
    active = await load_session(ws)
    if active is None:
        await ws.close(code=CLOSE_POLICY)
        return
    container = container_of(ws)
    try:
        queue = await hub.add(container.pubsub)
    except PubSubError:
        await ws.close(code=1011)
        return
    await ws.accept()
    token = ws.cookies.get(SESSION_COOKIE, "")

    async def write() -> None:
        await ws.send_json({"type": "hello", "operator_id": active.operator.id})
        while True:
            frame = await queue.get()
            if frame is None:
                return
            await asyncio.wait_for(ws.send_json(frame), SEND_TIMEOUT_SECONDS)

    async def read() -> None:
        # The page sends pings; what it says is never acted on. Every so
        # often the session is checked again.
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.receive_text(), RECHECK_SECONDS)
            if token and await load_session(ws) is None:
                await ws.send_json({"type": "logged_out"})
                await ws.close(code=CLOSE_POLICY)
                return

    tasks = [asyncio.create_task(write()), asyncio.create_task(read())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub.remove(queue)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(
                asyncio.CancelledError, WebSocketDisconnect, RuntimeError, TimeoutError
            ):
                await task
