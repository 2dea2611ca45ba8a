"""The web widget: signed sessions, a WebSocket protocol, a hub of live sockets.

Protocol (JSON text frames)::

    client -> {"type": "hello", "token": "..." | null}
    server <- {"type": "session", "token": "..."}          new if missing/invalid/expired
    server <- {"type": "history", "messages": [Frame...]}  the conversation so far
    client -> {"type": "message", "text": "...", "client_id": "uuid"}
    client -> {"type": "button", "title": "...", "payload": "...", "client_id": "uuid"}
    server <- {"type": "message", "sender": "bot", "text": ..., "buttons": [...],
               "id": 17, "at": "2026-11-27T10:00:00+00:00"}
    server <- {"type": "ack", "client_id": "uuid", "duplicate": false}
    server <- {"type": "ack", "client_id": "uuid", "duplicate": false, "pending": true,
               "text": "..."}                           stored; the answer comes later
    server <- {"type": "error", "code": "too_long", "text": "...", "client_id": "uuid" | null}
    server <- {"type": "error", "code": "rate_limited", ..., "retry_after": 2}
    client -> {"type": "ping"}  server <- {"type": "pong"}

``client_id`` becomes the inbox's platform message id, so a message resent
after a reconnect is answered once. An error frame with a ``client_id`` means
that message was NOT stored: ``unavailable`` and ``rate_limited`` may be resent
later with the same ``client_id`` (never answered twice); ``too_long``,
``empty`` and ``bad_text`` need a new text. A message the inbox took while the
rest of its turn failed gets a ``pending`` ack instead: the reply arrives later.

The edge refuses, before anything is parsed or processed: a handshake from an
Origin not allowed by ``widget_allowed_origins`` (closed with 1008, an HTTP 403
to the browser), frames over 64 KiB, JSON nested too deep, text that is not
valid Unicode (a lone surrogate, which UTF-8 cannot carry), and more messages
or other frames than the session's and the client IP's rate limits allow.

Every tab of one session is a live socket of the same chat; each socket
receives a given message id at most once (history and push are deduplicated
per socket, and the client dedups by id).

The tabs of one chat may be open in several processes. Each process
subscribes to the topic ``webchat:<chat id>`` while it holds a socket of that
chat; a delivery worker without a local socket publishes the message there,
and the process that pushed it to a socket marks its outbox row sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError
from starlette.websockets import WebSocketDisconnected, WebSocketState

from bot import messages as say
from bot.channels.base import ChannelAdapter, ChannelHost, SocketEndpoint
from bot.channels.pacing import Pacer
from bot.conversations import HistoryItem
from bot.errors import HandedOver, RecipientOffline
from bot.pipeline import StorageUnavailable, StoredUnanswered
from config import Settings
from dialogs.messages import InboundMessage, Reply
from storage.crypto import derive_fernet_key
from storage.locks import LockTimeout
from storage.pubsub import PubSub, PubSubError, Subscription
from storage.ratelimit import RateLimit, RateLimiter

log = logging.getLogger(__name__)

CHANNEL = "webchat"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SOCKET_PATH = "/widget/ws"
MAX_FRAME_BYTES = 64 * 1024
HISTORY_LIMIT = 200
_SID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Lone surrogates: valid in a Python str (JSON's "\ud800" escape), not in UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")

Frame = dict[str, Any]


# --------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------


class WebchatSessions:
    """Encrypted, expiring tokens that carry a random session id.

    The session id is the chat id and the user id of the widget's customer, so
    the token is opaque (Fernet: AES + HMAC, with its issue time inside) rather
    than merely signed: a token seen in a log or a screenshot does not reveal it.
    """

    def __init__(
        self, secret_key: str, max_age_days: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._fernet = Fernet(derive_fernet_key(secret_key, "webchat-session-v2"))
        self._max_age = max_age_days * 86400
        self._clock = clock

    def issue(self, sid: str | None = None) -> tuple[str, str]:
        """A new token and its session id (a fresh one unless given)."""
        sid = sid or secrets.token_urlsafe(18)
        token = self._fernet.encrypt_at_time(sid.encode(), int(self._clock()))
        return token.decode("ascii"), sid

    def verify(self, token: str | None) -> str | None:
        """The session id of a valid token, or None (missing, forged, expired)."""
        if not token or len(token) > 512 or not token.isascii():
            return None
        try:
            data = self._fernet.decrypt_at_time(token, self._max_age, int(self._clock()))
        except InvalidToken:  # forged, tampered, expired, or not a token at all
            return None
        sid = data.decode("ascii", errors="replace")
        return sid if _SID.match(sid) else None


# --------------------------------------------------------------------------
# Client frames
# --------------------------------------------------------------------------


def _encodable(value: str) -> str:
    if _SURROGATE.search(value):
        raise PydanticCustomError("bad_text", "not valid Unicode (a lone surrogate)")
    return value


# Every string a client sends: it is stored, echoed to other tabs, signed.
Text = Annotated[str, AfterValidator(_encodable)]
ClientId = Annotated[Text, Field(min_length=1, max_length=64)]


class _ClientFrame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class HelloFrame(_ClientFrame):
    type: Literal["hello"]
    token: Text | None = None


class TextFrame(_ClientFrame):
    type: Literal["message"]
    text: Text
    client_id: ClientId


class ButtonFrame(_ClientFrame):
    type: Literal["button"]
    title: Annotated[Text, Field(max_length=200)]
    payload: Annotated[Text, Field(min_length=1, max_length=1000)]
    client_id: ClientId


class PingFrame(_ClientFrame):
    type: Literal["ping"]


ClientFrame = Annotated[
    HelloFrame | TextFrame | ButtonFrame | PingFrame, Field(discriminator="type")
]
_client_frame: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


def error_frame(code: str, text: str, client_id: str | None = None) -> Frame:
    return {"type": "error", "code": code, "text": text, "client_id": client_id}


@dataclass(frozen=True)
class Refused:
    """A frame the edge would not take: the error frame's code and text, and why (logged)."""

    code: str
    text: str
    reason: str
    client_id: str | None = None

    def frame(self) -> Frame:
        return error_frame(self.code, self.text, self.client_id)


def _client_id_of(data: object) -> str | None:
    """The frame's client_id if usable, so a refusal names the message it refuses."""
    cid = data.get("client_id") if isinstance(data, dict) else None
    if isinstance(cid, str) and 0 < len(cid) <= 64 and not _SURROGATE.search(cid):
        return cid
    return None


def parse_frame(raw: str) -> ClientFrame | Refused:
    """A validated client frame, or why it is refused; never raises."""
    if len(raw) > MAX_FRAME_BYTES // 4 and len(raw.encode("utf-8", "replace")) > MAX_FRAME_BYTES:
        return Refused("frame_too_big", say.WIDGET_FRAME_TOO_BIG, "over 64 KiB")
    try:
        data = json.loads(raw)
    except RecursionError:  # the C scanner's depth guard: nothing is half-built
        return Refused("bad_frame", say.WIDGET_BAD_FRAME, "JSON nested too deep")
    except ValueError:
        return Refused("bad_frame", say.WIDGET_BAD_FRAME, "not JSON")
    try:
        return _client_frame.validate_python(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        fields = ",".join(sorted({".".join(str(p) for p in e["loc"]) for e in errors}))[:100]
        if any(e["type"] == "bad_text" for e in errors):
            return Refused(
                "bad_text", say.WIDGET_BAD_TEXT, f"not valid Unicode: {fields}", _client_id_of(data)
            )
        return Refused("bad_frame", say.WIDGET_BAD_FRAME, f"invalid: {fields}", _client_id_of(data))
    except RecursionError:
        return Refused("bad_frame", say.WIDGET_BAD_FRAME, "nested too deep")


def _dumps(frame: Frame) -> str:
    text = json.dumps(frame, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        # A lone surrogate got this far: ASCII escapes are still valid JSON,
        # where a raw one would make the send (and so the socket) fail.
        text = json.dumps(frame, ensure_ascii=True)
    return text


def _shown_sender(sender: str) -> str:
    # The widget labels the operator's messages; notices read as the bot's.
    return "operator" if sender == "operator" else "bot"


def message_frame(sender: str, reply: Reply, message_id: int | None, at: datetime | None) -> Frame:
    frame: Frame = {"type": "message", "sender": sender, **reply.to_json(), "id": message_id}
    frame["at"] = at.isoformat() if at else None
    return frame


# --------------------------------------------------------------------------
# Live sockets
# --------------------------------------------------------------------------


class LiveSocket:
    """One open tab. Sends are serialised; each message id goes out once."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()
        self.seen: set[int] = set()

    async def send(self, frame: Frame) -> None:
        await self.ws.send_text(_dumps(frame))

    async def push(self, frame: Frame, message_id: int | None) -> None:
        async with self.lock:
            await self._push_locked(frame, message_id)

    async def _push_locked(self, frame: Frame, message_id: int | None) -> None:
        if message_id is not None and message_id in self.seen:
            return
        await self.send(frame)
        if message_id is not None:
            self.seen.add(message_id)


class WebchatHub:
    """The live sockets of each chat in this process, and the subscription
    that lets other processes reach them while there are any."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[LiveSocket]] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._pubsub: PubSub | None = None
        self._host: ChannelHost | None = None

    def connect(self, host: ChannelHost) -> None:
        """From now on, sockets here are reachable from other processes."""
        self._host = host
        self._pubsub = host.pubsub

    async def add(self, chat_id: str, sock: LiveSocket) -> None:
        live = self._sockets.setdefault(chat_id, set())
        live.add(sock)
        if self._pubsub is not None and chat_id not in self._subscriptions:
            try:
                self._subscriptions[chat_id] = await self._pubsub.subscribe(
                    topic(chat_id), functools.partial(self._remote, chat_id)
                )
            except PubSubError as exc:
                # Replies made here still arrive; those of other processes
                # wait for the history or the sweep.
                log.warning("webchat: not subscribed (%s)", type(exc).__name__)

    async def remove(self, chat_id: str, sock: LiveSocket) -> None:
        live = self._sockets.get(chat_id)
        if live is None:
            return
        live.discard(sock)
        if not live:
            del self._sockets[chat_id]
            subscription = self._subscriptions.pop(chat_id, None)
            if subscription is not None:
                await subscription.unsubscribe()

    def count(self, chat_id: str | None = None) -> int:
        if chat_id is not None:
            return len(self._sockets.get(chat_id, ()))
        return sum(len(s) for s in self._sockets.values())

    async def publish(
        self,
        chat_id: str,
        frame: Frame,
        message_id: int | None = None,
        exclude: LiveSocket | None = None,
    ) -> int:
        """Send to every live socket of the chat here; the number that got it."""
        delivered = 0
        for sock in list(self._sockets.get(chat_id, ())):
            if sock is exclude:
                continue
            try:
                await sock.push(frame, message_id)
            except Exception:  # this tab closed under us: forget it, not the others
                await self.remove(chat_id, sock)
            else:
                delivered += 1
        return delivered

    async def hand_over(self, chat_id: str, frame: Frame, message_id: int | None) -> int:
        """Ask the processes that hold a socket of this chat to push ``frame``;
        how many listen."""
        if self._pubsub is None or message_id is None:
            return 0
        try:
            return await self._pubsub.publish(
                topic(chat_id), json.dumps({"id": message_id, "frame": frame}, ensure_ascii=False)
            )
        except PubSubError as exc:
            log.warning("webchat: hand-over not published (%s)", type(exc).__name__)
            return 0

    async def _remote(self, chat_id: str, raw: str) -> None:
        """A message another process handed over: push it, then mark it sent."""
        data = json.loads(raw)
        message_id = int(data["id"])
        if await self.publish(chat_id, data["frame"], message_id) and self._host is not None:
            await self._host.mark_delivered(CHANNEL, chat_id, [message_id])

    async def close(self) -> None:
        for chat_id, live in list(self._sockets.items()):
            for sock in list(live):
                with contextlib.suppress(Exception):
                    await sock.ws.close(code=1001)
                await self.remove(chat_id, sock)


def topic(chat_id: str) -> str:
    """The pub/sub topic of one web chat."""
    return f"{CHANNEL}:{chat_id}"


# --------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------


def history_frame(item: HistoryItem) -> Frame:
    return {
        "type": "message",
        "sender": item.sender,
        "text": item.text,
        "buttons": [{"title": b.title, "payload": b.payload} for b in item.buttons],
        "id": item.id,
        "at": item.at.isoformat(),
    }


# --------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` lower-cased, default port left out; None if not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


def allowed_origins(settings: Settings) -> frozenset[str]:
    """The configured origins, the server's own HOST:PORT and PUBLIC_BASE_URL's."""
    listed = [*settings.widget_allowed_origins, f"http://{settings.host}:{settings.port}"]
    if settings.public_base_url:
        listed.append(settings.public_base_url)
    origins = {o.strip() for o in listed if o.strip() == "*"}
    origins.update(n for n in map(normalize_origin, listed) if n is not None)
    return frozenset(origins)


@dataclass(frozen=True)
class WidgetLimits:
    per_session: RateLimit
    per_ip: RateLimit
    frames: RateLimit

    @classmethod
    def from_settings(cls, settings: Settings) -> WidgetLimits:
        return cls(
            per_session=RateLimit(
                settings.widget_message_rate_per_second, settings.widget_message_burst
            ),
            per_ip=RateLimit(
                settings.widget_ip_message_rate_per_second, settings.widget_ip_message_burst
            ),
            frames=RateLimit(settings.widget_frame_rate_per_second, settings.widget_frame_burst),
        )


class WebchatAdapter(ChannelAdapter):
    name = CHANNEL

    def __init__(self, settings: Settings, rate_limiter: RateLimiter | None = None) -> None:
        self.settings = settings
        self.sessions = WebchatSessions(
            settings.secret_key.get_secret_value(), settings.widget_session_days
        )
        self.hub = WebchatHub()
        # The container shares its own (Redis: every process counts together).
        self.pacer = Pacer(CHANNEL, settings.secret_key.get_secret_value(), rate_limiter)
        self.limits = WidgetLimits.from_settings(settings)
        self.origins = allowed_origins(settings)

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """May a page of ``origin`` open the widget's socket (sent to ``host``)?

        No Origin at all is allowed: browsers always send one, so this is a
        script, which could send any Origin it liked anyway.
        """
        if origin is None or "*" in self.origins:
            return True
        normal = normalize_origin(origin)
        if normal is None:
            return False  # "null" (a sandboxed frame, a file) and the like
        if normal in self.origins:
            return True
        # The server's own pages (the demo page), under whatever name it was reached.
        if host is None:
            return False
        scheme = normal.split("://", 1)[0]
        return normalize_origin(f"{scheme}://{host.strip()}") == normal

    def share_rate_limiter(self, limiter: RateLimiter) -> None:
        self.pacer.limiter = limiter

    @classmethod
    def from_settings(cls, settings: Settings) -> WebchatAdapter:
        return cls(settings)  # the widget is always on

    async def send(
        self,
        chat_id: str,
        reply: Reply,
        *,
        message_id: int | None = None,
        at: datetime | None = None,
        sender: str = "bot",
    ) -> None:
        frame = message_frame(_shown_sender(sender), reply, message_id, at)
        here = await self.hub.publish(chat_id, frame, message_id)
        # Tabs of this chat may be open in other processes too. This process
        # hears its own hand-over as well, if it has tabs: they skip the id.
        listening = await self.hub.hand_over(chat_id, frame, message_id)
        if here:
            return
        if listening:
            raise HandedOver(f"widget of chat {chat_id[:6]}… open in another process")
        raise RecipientOffline(f"no open widget for chat {chat_id[:6]}…")

    async def start(self, host: ChannelHost) -> None:
        self.hub.connect(host)

    async def close(self) -> None:
        await self.hub.close()

    def router(self, host: ChannelHost) -> APIRouter:
        router = APIRouter(tags=["webchat"])

        @router.get("/widget.js", include_in_schema=False)
        async def widget_js() -> FileResponse:
            return FileResponse(
                STATIC_DIR / "widget.js",
                media_type="text/javascript; charset=utf-8",
                headers={"Cache-Control": "no-cache"},
            )

        @router.get("/widget.css", include_in_schema=False)
        async def widget_css() -> FileResponse:
            return FileResponse(
                STATIC_DIR / "widget.css",
                media_type="text/css; charset=utf-8",
                headers={"Cache-Control": "no-cache"},
            )

        return router

    def sockets(self, host: ChannelHost) -> dict[str, SocketEndpoint]:
        async def widget_ws(ws: WebSocket) -> None:
            await WebchatConnection(self, host, ws).run()

        return {SOCKET_PATH: widget_ws}


class WebchatConnection:
    """One WebSocket from hello to close."""

    def __init__(self, adapter: WebchatAdapter, host: ChannelHost, ws: WebSocket) -> None:
        self.adapter = adapter
        self.host = host
        self.ws = ws
        self.sock = LiveSocket(ws)
        self.sid: str | None = None
        self.ip = ws.client.host if ws.client else "unknown"
        self.rate_limited = 0  # frames refused over the limits

    async def run(self) -> None:
        origin = self.ws.headers.get("origin")
        if not self.adapter.origin_allowed(origin, self.ws.headers.get("host")):
            log.warning("webchat: refused a socket from origin %r", (origin or "")[:100])
            # Before accept: the browser gets HTTP 403 and no frame is read.
            await self.ws.close(code=1008)
            return
        await self.ws.accept()
        try:
            hello = await self._hello()
            if hello is None:
                return
            if not await self._open_session(hello.token):
                return
            while True:
                raw = await self._receive()
                if raw is None:
                    return
                await self._dispatch(raw)
        except (WebSocketDisconnect, WebSocketDisconnected):
            pass  # the tab went away, possibly while we were answering
        finally:
            if self.rate_limited > 1:
                log.warning("webchat: %d frames of a socket were rate limited", self.rate_limited)
            if self.sid is not None:
                await self.adapter.hub.remove(self.sid, self.sock)
            if self.ws.client_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await self.ws.close()

    async def _receive(self) -> str | None:
        """The next text frame; None once the client is gone."""
        event = await self.ws.receive()
        if event["type"] == "websocket.disconnect":
            return None
        text = event.get("text")
        if text is None:  # a binary frame: read as UTF-8 like a text one
            text = (event.get("bytes") or b"").decode("utf-8", errors="replace")
        return str(text)

    async def _hello(self) -> HelloFrame | None:
        raw = await self._receive()
        if raw is None:
            return None
        frame = parse_frame(raw)
        if isinstance(frame, HelloFrame):
            return frame
        if isinstance(frame, Refused):
            log.warning("webchat: refused a hello (%s)", frame.reason)
            await self.sock.send(error_frame(frame.code, frame.text))
        else:
            log.warning("webchat: the first frame was not a hello")
            await self.sock.send(error_frame("bad_frame", say.WIDGET_BAD_FRAME))
        await self.ws.close(code=1008)
        return None

    async def _open_session(self, token: str | None) -> bool:
        """Session and history sent; False if storage is down (socket closed)."""
        # A fresh token for the same session on every visit: the expiry slides.
        token, sid = self.adapter.sessions.issue(self.adapter.sessions.verify(token))
        # Registered and sent under the socket's lock: a reply pushed meanwhile
        # waits, then sees its id already sent with the history.
        async with self.sock.lock:
            self.sid = sid
            await self.adapter.hub.add(sid, self.sock)  # before the history is read
            try:
                items = await self.host.history(CHANNEL, sid, HISTORY_LIMIT)
            except Exception as exc:
                log.warning("webchat: history unavailable (%s)", type(exc).__name__)
                await self.sock.send(error_frame("unavailable", say.WIDGET_UNAVAILABLE))
                await self.ws.close(code=1013)  # try again later: the widget reconnects
                return False
            history = [history_frame(item) for item in items]
            await self.sock.send({"type": "session", "token": token})
            await self.sock.send({"type": "history", "messages": history})
            self.sock.seen.update(item.id for item in items)
        shown = [item.id for item in items if item.sender != "customer"]
        if shown:
            try:
                await self.host.mark_delivered(CHANNEL, sid, shown)
            except Exception as exc:  # the worker sends them again; the client dedups
                log.warning("webchat: could not mark history delivered (%s)", type(exc).__name__)
        return True

    async def _dispatch(self, raw: str) -> None:
        assert self.sid is not None
        frame = parse_frame(raw)
        if isinstance(frame, TextFrame | ButtonFrame):
            wait = await self.adapter.pacer.wait_for(
                (f"webchat:msg:{self.sid}", self.adapter.limits.per_session),
                (self.adapter.pacer.key("ip", self.ip), self.adapter.limits.per_ip),
            )
            if wait > 0:
                await self._rate_limited(wait, frame.client_id)
                return
            await self._customer_message(frame)
            return
        # Pings, hellos and refusals are cheap, but not free in bulk.
        wait = await self.adapter.pacer.wait_for(
            (f"webchat:frame:{self.sid}", self.adapter.limits.frames)
        )
        if wait > 0:
            client_id = frame.client_id if isinstance(frame, Refused) else None
            await self._rate_limited(wait, client_id)
            return
        if isinstance(frame, Refused):
            log.warning("webchat: refused a frame (%s)", frame.reason)
            await self.sock.push(frame.frame(), None)
        elif isinstance(frame, PingFrame):
            await self.sock.push({"type": "pong"}, None)
        # A repeated hello changes nothing.

    async def _rate_limited(self, wait: float, client_id: str | None) -> None:
        self.rate_limited += 1
        if self.rate_limited == 1:  # a flood would write a line per frame otherwise
            log.warning("webchat: rate limited a socket (%.1f s to wait)", wait)
        refusal = error_frame("rate_limited", say.WIDGET_RATE_LIMITED, client_id)
        refusal["retry_after"] = max(1, math.ceil(wait))
        await self.sock.push(refusal, None)

    async def _customer_message(self, frame: TextFrame | ButtonFrame) -> None:
        assert self.sid is not None
        text = frame.text if isinstance(frame, TextFrame) else frame.title
        msg = InboundMessage(
            channel=CHANNEL,
            chat_id=self.sid,
            user_id=self.sid,
            text=text,
            platform_message_id=f"{self.sid}:{frame.client_id}",
            received_at=datetime.now(UTC),
            payload=frame.payload if isinstance(frame, ButtonFrame) else None,
        )
        # Refused in the pipeline's words, as an error: never accepted, so
        # never in the history.
        refused = self.host.refusal(msg)
        if refused is not None:
            await self.sock.push(error_frame(refused.code, refused.text, frame.client_id), None)
            return
        # Other tabs of this session show what the customer wrote here.
        echo: Frame = {
            "type": "message",
            "sender": "customer",
            "text": text,
            "buttons": [],
            "id": None,
            "client_id": frame.client_id,
            "at": msg.received_at.isoformat(),
        }
        await self.adapter.hub.publish(self.sid, echo, exclude=self.sock)
        try:
            result = await self.host.handle(msg)
        except (StorageUnavailable, LockTimeout) as exc:
            if isinstance(exc, LockTimeout | StoredUnanswered):
                # The inbox has it and the container's replay answers it: saying
                # "not sent" here would have the customer type it, and be answered, twice.
                log.warning("webchat: message stored, its turn failed; answered as pending")
                await self.sock.push(
                    {
                        "type": "ack",
                        "client_id": frame.client_id,
                        "duplicate": False,
                        "pending": True,
                        "text": say.WIDGET_PENDING,
                    },
                    None,
                )
                return
            # Not stored: the client resends it with the same client_id later.
            log.warning("webchat: storage unavailable; answered with an error frame")
            await self.sock.push(
                error_frame("unavailable", say.WIDGET_UNAVAILABLE, frame.client_id), None
            )
            return
        except Exception:
            # Stored or not, a resend with the same client_id is answered once.
            log.exception("webchat: handling a message failed")
            await self.sock.push(
                error_frame("unavailable", say.WIDGET_UNAVAILABLE, frame.client_id), None
            )
            return
        await self.sock.push(
            {"type": "ack", "client_id": frame.client_id, "duplicate": result.duplicate}, None
        )
