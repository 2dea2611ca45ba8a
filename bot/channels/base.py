"""The boundary every channel implements.

An adapter translates: platform payloads in (its router, if it receives over
HTTP/WebSocket), :class:`~dialogs.messages.Reply` out (:meth:`send`). It never
holds dialog logic; the pipeline and the delivery worker do the rest.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from dialogs.messages import InboundMessage, Reply

if TYPE_CHECKING:
    from fastapi import APIRouter
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from bot.pipeline import HandleResult
    from config import Settings


class ChannelHost(Protocol):
    """What the composition root offers to the receiving side of a channel."""

    @property
    def settings(self) -> Settings: ...

    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]: ...

    async def handle(self, msg: InboundMessage) -> HandleResult:
        """Record and process one inbound message (inbox, lock, NLU, engine)."""
        ...

    async def mark_delivered(self, channel: str, chat_id: str, message_ids: Sequence[int]) -> int:
        """Mark pending outbox rows of those messages sent (shown another way)."""
        ...


class ChannelAdapter(abc.ABC):
    """One messaging channel: ``webchat``, ``telegram``, ``whatsapp``..."""

    name: str

    @abc.abstractmethod
    async def send(
        self,
        chat_id: str,
        reply: Reply,
        *,
        message_id: int | None = None,
        at: datetime | None = None,
    ) -> None:
        """Deliver one reply to a chat.

        ``message_id`` is the stored message's id (clients deduplicate by it),
        ``at`` when it was written. Raises :class:`bot.errors.RetryAfter` when
        rate-limited, :class:`bot.errors.RecipientOffline` when nobody can
        receive it now, and :class:`bot.errors.DeliveryError` otherwise.
        """

    async def start(self, host: ChannelHost) -> None:  # noqa: B027 - optional hook
        """Called once at start-up, before any send, with what the host offers:
        begin receiving (register a webhook, start long polling). Must return
        promptly: long work runs as a task."""

    def router(self, host: ChannelHost) -> APIRouter | None:
        """HTTP/WebSocket routes that receive this channel's messages, if any."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (HTTP clients, open sockets)."""
