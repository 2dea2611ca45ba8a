"""The boundary every channel implements.

An adapter translates: platform payloads in (its router, if it receives over
HTTP/WebSocket), :class:`~dialogs.messages.Reply` out (:meth:`send`). It never
holds dialog logic; the pipeline and the delivery worker do the rest.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from bot.errors import PermanentDeliveryError
from dialogs.messages import Button, InboundMessage, Reply

if TYPE_CHECKING:
    from fastapi import APIRouter, Request, Response, WebSocket
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from bot.conversations import HistoryItem
    from bot.pipeline import HandleResult, Refusal
    from config import Settings
    from storage.pubsub import PubSub
    from storage.ratelimit import RateLimiter


# A WebSocket endpoint: runs the socket from its handshake to its close.
SocketEndpoint = Callable[["WebSocket"], Awaitable[None]]
# An HTTP POST endpoint served past the app's routing (see :meth:`ChannelAdapter.endpoints`).
HttpEndpoint = Callable[["Request"], Awaitable["Response"]]


class ChannelHost(Protocol):
    """What the composition root offers to the receiving side of a channel."""

    @property
    def settings(self) -> Settings: ...

    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]:
        """For platform state an adapter keeps itself (WhatsApp's addresses and
        delivery statuses); conversations are read through the methods below."""
        ...

    @property
    def pubsub(self) -> PubSub:
        """Topics shared with the other processes of this bot."""
        ...

    async def handle(self, msg: InboundMessage) -> HandleResult:
        """Record and process one inbound message (inbox, lock, NLU, engine)."""
        ...

    def refusal(self, msg: InboundMessage) -> Refusal | None:
        """Why the pipeline would refuse this message (empty, oversized), if
        it would: for a channel that shows that as an error instead."""
        ...

    async def history(self, channel: str, chat_id: str, limit: int) -> list[HistoryItem]:
        """The chat's last ``limit`` messages, oldest first."""
        ...

    async def last_buttons(self, channel: str, chat_id: str) -> tuple[Button, ...]:
        """The buttons of the bot's last answer in the chat (what "2" picks)."""
        ...

    async def mark_delivered(self, channel: str, chat_id: str, message_ids: Sequence[int]) -> int:
        """Mark pending outbox rows of those messages sent (shown another way)."""
        ...


class ChannelAdapter(abc.ABC):
    """One messaging channel: ``webchat``, ``telegram``, ``whatsapp``..."""

    name: str
    # The caller shows the replies :meth:`ChannelHost.handle` returns (the
    # terminal, tests): their outbox rows are written sent, never delivered.
    inline_replies: bool = False

    @abc.abstractmethod
    async def send(
        self,
        chat_id: str,
        reply: Reply,
        *,
        message_id: int | None = None,
        at: datetime | None = None,
        sender: str = "bot",
    ) -> None:
        """Deliver one reply to a chat.

        ``message_id`` is the stored message's id (clients deduplicate by it),
        ``at`` when it was written, ``sender`` who wrote it ("bot",
        "operator", "system"): a channel that labels messages shows it.
        Raises :class:`bot.errors.RetryAfter` when rate-limited,
        :class:`bot.errors.RecipientOffline` when nobody can receive it now,
        and :class:`bot.errors.DeliveryError` otherwise.
        """

    async def start(self, host: ChannelHost) -> None:  # noqa: B027 - optional hook
        """Called once at start-up, before any send, with what the host offers:
        begin receiving (register a webhook, start long polling, subscribe to
        pub/sub topics). Must return promptly: long work runs as a task."""

    def share_rate_limiter(self, limiter: RateLimiter) -> None:  # noqa: B027 - optional hook
        """Count this channel's limits on the container's limiter (Redis: in
        every process together) instead of one of its own."""

    def router(self, host: ChannelHost) -> APIRouter | None:
        """HTTP/WebSocket routes that receive this channel's messages, if any."""
        return None

    def sockets(self, host: ChannelHost) -> Mapping[str, SocketEndpoint]:
        """WebSocket endpoints by path that the app serves past its routing and
        middleware (see ``bot.app.SocketShortcut``): for sockets held open by
        the thousand, which would keep a frame of every layer alive each."""
        return {}

    def endpoints(self, host: ChannelHost) -> Mapping[str, HttpEndpoint]:
        """HTTP POST endpoints by path that the app serves past its routing
        and middleware (``bot.app.SocketShortcut``): a platform's webhook,
        posted once per customer message, answered to a machine (no page, no
        browser headers), which checks its own secret and reads its own body."""
        return {}

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (HTTP clients, open sockets)."""


class InlineChannel(ChannelAdapter):
    """A channel whose caller shows the replies itself: the terminal chat,
    the transcript tests. Nothing is ever delivered through it."""

    inline_replies = True

    def __init__(self, name: str) -> None:
        self.name = name

    async def send(
        self,
        chat_id: str,
        reply: Reply,
        *,
        message_id: int | None = None,
        at: datetime | None = None,
        sender: str = "bot",
    ) -> None:
        raise PermanentDeliveryError(f"{self.name} shows its replies inline")
