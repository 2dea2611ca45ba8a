"""A local Telegram Bot API server that speaks the real wire format.

``POST /bot<token>/<method>`` with a JSON, urlencoded or multipart body (aiogram
sends form fields, JSON-serialised where the Bot API says so), answered with
``{"ok": true, "result": ...}`` (real Message objects for sendMessage) or the
real error shape, ``{"ok": false, "error_code": 429, "description": ...,
"parameters": {"retry_after": 1}}``. Every call is recorded. It serves
getUpdates from a queue for long polling, can be scripted to fail, to hang a
method until released, or to go away and come back on the same port.

It runs in a thread with its own event loop, so the app under test (in the
test's thread, a TestClient's, or another process) reaches it over TCP.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

TOKEN = "123456789:AAHeatdeskTestTokenForTheFakeBotApi_0"
BOT_USER = {
    "id": 123456789,
    "is_bot": True,
    "first_name": "Курская генерация",
    "username": "heatdesk_test_bot",
}
# Fields the Bot API takes as JSON-serialised strings in form bodies.
_JSON_FIELDS = frozenset(
    {"reply_markup", "allowed_updates", "entities", "link_preview_options", "reply_parameters"}
)


@dataclass(frozen=True)
class Call:
    seq: int
    method: str
    params: dict[str, Any]
    ok: bool  # what the server answered
    result: Any = None


@dataclass
class ForumTopic:
    """A forum topic the bot opened in a supergroup (createForumTopic)."""

    chat_id: int
    message_thread_id: int
    name: str
    closed: bool = False


@dataclass(frozen=True)
class Fault:
    """A scripted error reply (``retry_after`` adds the parameters block)."""

    status: int
    description: str
    retry_after: int | None = None
    raw: str | None = None  # a non-JSON body (a proxy's error page) instead

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


TOO_MANY_REQUESTS = Fault(429, "Too Many Requests: retry after 1", retry_after=1)
INTERNAL_ERROR = Fault(500, "Internal Server Error")
BAD_GATEWAY_PAGE = Fault(
    502, "Bad Gateway", raw="<html><body><h1>502 Bad Gateway</h1></body></html>"
)
BOT_BLOCKED = Fault(403, "Forbidden: bot was blocked by the user")
CHAT_NOT_FOUND = Fault(400, "Bad Request: chat not found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeBotApi:
    def __init__(self, token: str = TOKEN, port: int | None = None) -> None:
        self.token = token
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._seq = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._thread_ids = itertools.count(70)
        self.topics: dict[int, ForumTopic] = {}  # message_thread_id -> topic
        self._faults: dict[str, list[Fault]] = {}
        self._gates: dict[str, threading.Event] = {}
        self._updates: list[dict[str, Any]] = []
        self._arrived: dict[str, int] = {}
        # getUpdates requests being answered now, by id (a Request is not hashable).
        self._polling: dict[int, web.Request] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._up = threading.Event()

    # --- lifecycle ----------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeBotApi:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._unserve())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-bot-api", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        for gate in self._gates.values():
            gate.set()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = None

    def go_down(self) -> None:
        """Stop listening: calls fail with a connection error."""
        self._in_loop(self._unserve())

    def come_back(self) -> None:
        self._in_loop(self._serve())

    def _in_loop(self, coro: Any) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _serve(self) -> None:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        self._up.set()

    async def _unserve(self) -> None:
        self._up.clear()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # --- scripting ----------------------------------------------------------

    def fail(self, method: str, *faults: Fault) -> None:
        """The next calls of ``method`` answer these errors, in order."""
        with self._lock:
            self._faults.setdefault(method, []).extend(faults)

    def hang(self, method: str) -> threading.Event:
        """Calls of ``method`` wait until the returned event is set."""
        gate = threading.Event()
        self._gates[method] = gate
        return gate

    @contextmanager
    def hanging(self, method: str) -> Iterator[threading.Event]:
        gate = self.hang(method)
        try:
            yield gate
        finally:
            gate.set()
            self._gates.pop(method, None)

    def push_update(self, update: dict[str, Any]) -> None:
        """Queue an update for getUpdates (long polling)."""
        with self._lock:
            self._updates.append(update)

    # --- what was received --------------------------------------------------

    def arrived(self, method: str) -> int:
        """Requests of ``method`` received so far, answered or still hanging."""
        with self._lock:
            return self._arrived.get(method, 0)

    def calls(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def sent(self, chat_id: int | str | None = None) -> list[Call]:
        """Successful sendMessage calls (to one chat, if given), in order."""
        return [
            c
            for c in self.calls("sendMessage")
            if c.ok and (chat_id is None or str(c.params.get("chat_id")) == str(chat_id))
        ]

    def texts(self, chat_id: int | str) -> list[str]:
        return [str(c.params["text"]) for c in self.sent(chat_id)]

    def wait_for(
        self, condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"fake Bot API: timed out waiting for {what}")
            time.sleep(0.02)

    def wait_texts(self, chat_id: int | str, count: int, timeout: float = 20.0) -> list[str]:
        self.wait_for(
            lambda: len(self.sent(chat_id)) >= count, timeout, f"{count} messages to the chat"
        )
        return self.texts(chat_id)

    # --- the API ------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            data = await request.json()
            return dict(data) if isinstance(data, dict) else {}
        form = await request.post()
        params: dict[str, Any] = {}
        for key, value in form.items():
            text = value if isinstance(value, str) else "<file>"
            params[key] = json.loads(text) if key in _JSON_FIELDS else text
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return web.json_response(Fault(401, "Unauthorized").body(), status=401)
        params = await self._params(request)
        with self._lock:
            self._arrived[method] = self._arrived.get(method, 0) + 1
        gate = self._gates.get(method)
        if gate is not None:
            # A threading.Event, set from the test's thread (stop() sets them all).
            await asyncio.to_thread(gate.wait)
            if request.transport is None or request.transport.is_closing():
                # The caller went away while it hung (killed): never delivered.
                return web.Response(status=499)
        with self._lock:
            faults = self._faults.get(method)
            fault = faults.pop(0) if faults else None
        if fault is not None:
            self._record(method, params, ok=False)
            if fault.raw is not None:
                return web.Response(text=fault.raw, status=fault.status, content_type="text/html")
            return web.json_response(fault.body(), status=fault.status)
        result = await self._result(method, params, request)
        if isinstance(result, Fault):
            self._record(method, params, ok=False)
            return web.json_response(result.body(), status=result.status)
        self._record(method, params, ok=True, result=result)
        return web.json_response({"ok": True, "result": result})

    def _record(self, method: str, params: dict[str, Any], ok: bool, result: Any = None) -> None:
        with self._lock:
            self._calls.append(Call(next(self._seq), method, params, ok, result))

    async def _result(self, method: str, params: dict[str, Any], request: web.Request) -> Any:
        if method == "getMe":
            return BOT_USER
        if method in {"setWebhook", "deleteWebhook", "answerCallbackQuery"}:
            return True
        if method == "sendMessage":
            text = str(params.get("text", ""))
            if not text:
                return Fault(400, "Bad Request: message text is empty")
            if len(text) > 4096:
                return Fault(400, "Bad Request: message is too long")
            chat_id = int(params["chat_id"])
            message: dict[str, Any] = {
                "message_id": next(self._message_ids),
                "date": int(time.time()),
                "chat": _chat(chat_id),
                "from": BOT_USER,
                "text": text,
            }
            thread = params.get("message_thread_id")
            if thread is not None:
                topic = self.topics.get(int(thread))
                if topic is None or topic.chat_id != chat_id:
                    return Fault(400, "Bad Request: message thread not found")
                if topic.closed:
                    return Fault(400, "Bad Request: TOPIC_CLOSED")
                message["message_thread_id"] = topic.message_thread_id
                message["is_topic_message"] = True
            markup = params.get("reply_markup")
            if isinstance(markup, dict) and "inline_keyboard" in markup:
                message["reply_markup"] = markup
            return message
        if method == "createForumTopic":
            return self._create_topic(params)
        if method in {"closeForumTopic", "reopenForumTopic"}:
            return self._close_topic(params, closed=method == "closeForumTopic")
        if method == "getUpdates":
            with self._lock:
                # A poll whose client went away (it stopped polling) competes with nobody.
                concurrent = any(
                    r.transport is not None and not r.transport.is_closing()
                    for r in self._polling.values()
                )
                self._polling[id(request)] = request
            try:
                if concurrent:
                    # What Telegram answers when two bot instances poll at once.
                    return Fault(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that "
                        "only one bot instance is running",
                    )
                return await self._get_updates(params)
            finally:
                with self._lock:
                    self._polling.pop(id(request), None)
        return Fault(404, "Not Found: method not found")

    def _create_topic(self, params: dict[str, Any]) -> dict[str, Any] | Fault:
        chat_id = int(params["chat_id"])
        name = str(params.get("name", ""))
        if chat_id >= 0:
            return Fault(400, "Bad Request: the chat is not a forum")
        if not 1 <= len(name) <= 128:
            return Fault(
                400,
                "Bad Request: TOPIC_TITLE_EMPTY"
                if not name
                else "Bad Request: topic name is too long",
            )
        with self._lock:
            topic = ForumTopic(chat_id, next(self._thread_ids), name)
            self.topics[topic.message_thread_id] = topic
        return {"message_thread_id": topic.message_thread_id, "name": name, "icon_color": 7322096}

    def _close_topic(self, params: dict[str, Any], *, closed: bool) -> bool | Fault:
        topic = self.topics.get(int(params.get("message_thread_id") or 0))
        if topic is None or topic.chat_id != int(params["chat_id"]):
            return Fault(400, "Bad Request: message thread not found")
        if topic.closed == closed:
            return Fault(400, "Bad Request: TOPIC_NOT_MODIFIED")
        topic.closed = closed
        return True

    def topic_texts(self, chat_id: int, thread_id: int) -> list[str]:
        """Texts the bot sent into one forum topic, in order."""
        return [
            str(c.params["text"])
            for c in self.sent(chat_id)
            if int(c.params.get("message_thread_id") or 0) == thread_id
        ]

    def wait_topic_texts(
        self, chat_id: int, thread_id: int, count: int, timeout: float = 20.0
    ) -> list[str]:
        self.wait_for(
            lambda: len(self.topic_texts(chat_id, thread_id)) >= count,
            timeout,
            f"{count} messages in topic {thread_id}",
        )
        return self.topic_texts(chat_id, thread_id)

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        wait = min(float(params.get("timeout") or 0), 1.0)  # short, for tests
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                # Confirmed updates (below the offset) are forgotten, as Telegram does.
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                pending = list(self._updates[:100])
            if pending or time.monotonic() >= deadline:
                return pending
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------------
# Updates as Telegram sends them
# --------------------------------------------------------------------------

_update_ids = itertools.count(500_000)
_message_ids = itertools.count(1)


def _user(user_id: int, first_name: str = "Иван") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "ru"}


def _chat(chat_id: int) -> dict[str, Any]:
    """A private chat for a user id; a supergroup (forum) for a negative id."""
    if chat_id < 0:
        return {"id": chat_id, "type": "supergroup", "title": "Операторы", "is_forum": True}
    return {"id": chat_id, "type": "private"}


def message_update(chat_id: int, text: str | None = None, **fields: Any) -> dict[str, Any]:
    """An update with a private-chat message (text, or other fields: photo...)."""
    message: dict[str, Any] = {
        "message_id": next(_message_ids),
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": "private", "first_name": "Иван"},
        "from": _user(chat_id),
    }
    if text is not None:
        message["text"] = text
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    message.update(fields)
    return {"update_id": next(_update_ids), "message": message}


def topic_message_update(
    chat_id: int, thread_id: int, user_id: int, text: str, first_name: str = "Анна"
) -> dict[str, Any]:
    """A member's message in a forum topic of the supergroup ``chat_id``, as
    Telegram sends it: ``message_thread_id``, ``is_topic_message`` and the
    topic's service message it replies to."""
    message: dict[str, Any] = {
        "message_id": next(_message_ids),
        "message_thread_id": thread_id,
        "is_topic_message": True,
        "date": int(time.time()),
        "chat": _chat(chat_id),
        "from": _user(user_id, first_name),
        "text": text,
        "reply_to_message": {
            "message_id": thread_id,
            "message_thread_id": thread_id,
            "date": int(time.time()),
            "chat": _chat(chat_id),
            "from": BOT_USER,
            "forum_topic_created": {"name": "чат", "icon_color": 7322096},
            "is_topic_message": True,
        },
    }
    if text.startswith("/"):
        command = text.split()[0]
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    return {"update_id": next(_update_ids), "message": message}


def edited_update(original: dict[str, Any], text: str) -> dict[str, Any]:
    message = {**original["message"], "text": text, "edit_date": int(time.time())}
    return {"update_id": next(_update_ids), "edited_message": message}


def callback_update(chat_id: int, shown: dict[str, Any], data: str) -> dict[str, Any]:
    """A press of the button with ``data`` under the bot's message ``shown``
    (a Message as the fake returned it from sendMessage)."""
    return {
        "update_id": next(_update_ids),
        "callback_query": {
            "id": f"{chat_id}{next(_message_ids)}",
            "from": _user(chat_id),
            "message": shown,
            "chat_instance": f"ci{chat_id}",
            "data": data,
        },
    }


def photo_fields(file_id: str, caption: str | None = None) -> dict[str, Any]:
    sizes = [
        {"file_id": f"{file_id}-s", "file_unique_id": "u1s", "width": 90, "height": 67},
        {"file_id": file_id, "file_unique_id": "u1", "width": 1280, "height": 960},
    ]
    fields: dict[str, Any] = {"photo": sizes}
    if caption is not None:
        fields["caption"] = caption
    return fields


def contact_fields(chat_id: int, phone: str) -> dict[str, Any]:
    return {"contact": {"phone_number": phone, "first_name": "Иван", "user_id": chat_id}}


STICKER_FIELDS: dict[str, Any] = {
    "sticker": {
        "file_id": "CAACAgIAAxkBAAIBQ2VmZ3",
        "file_unique_id": "AgADsticker",
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
        "emoji": "👍",
    }
}
