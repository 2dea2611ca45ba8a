"""A desk for operator tests: customers on the real Pipeline and operators on
the real OperatorService, sharing one ConversationService, real storage and
the real embedded NLU."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.base import InlineChannel
from bot.conversations import ConversationService
from bot.operators.service import OPERATOR_EVENTS_TOPIC, OperatorService
from bot.pipeline import Pipeline
from config import Settings
from dialogs.engine import DialogEngine
from nlu.base import NluParser
from storage.crypto import PersonalDataVault
from storage.locks import LockStore, MemoryLockStore
from storage.models import (
    Conversation,
    Direction,
    HandoffQueueEntry,
    Message,
    Operator,
    OperatorRole,
    Presence,
)
from storage.pubsub import MemoryPubSub
from tests.harness import ChatClient, Clock, plain


@dataclass
class Desk:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    conversations: ConversationService
    ops: OperatorService
    pipeline: Pipeline
    pubsub: MemoryPubSub
    events: list[dict[str, Any]] = field(default_factory=list)
    _seen: dict[str, int] = field(default_factory=dict)

    def customer(self, chat_id: str) -> ChatClient:
        return ChatClient(
            self.pipeline, self.sessions, self.clock, chat_id=chat_id, user_id=f"u-{chat_id}"
        )

    async def operator(
        self,
        login: str,
        name: str,
        *,
        online: bool = False,
        capacity: int | None = None,
    ) -> int:
        async with self.sessions() as s:
            op = Operator(
                login=login,
                display_name=name,
                role=OperatorRole.OPERATOR,
                password_hash="not-a-login",  # tests never log in here
                active=True,
                presence=Presence.OFFLINE,
                capacity=capacity,
                created_at=self.clock(),
            )
            s.add(op)
            await s.commit()
            op_id = op.id
        if online:
            await self.ops.set_presence(op_id, Presence.ONLINE)
        return op_id

    async def conversation(self, chat: ChatClient) -> Conversation:
        async with self.sessions() as s:
            conv = await s.scalar(select(Conversation).where(Conversation.chat_id == chat.chat_id))
            assert conv is not None
            return conv

    async def conv_id(self, chat: ChatClient) -> int:
        return (await self.conversation(chat)).id

    async def entries(self, chat: ChatClient) -> list[HandoffQueueEntry]:
        conv_id = await self.conv_id(chat)
        async with self.sessions() as s:
            return list(
                await s.scalars(
                    select(HandoffQueueEntry)
                    .where(HandoffQueueEntry.conversation_id == conv_id)
                    .order_by(HandoffQueueEntry.id)
                )
            )

    async def sees(self, chat: ChatClient) -> list[str]:
        """What reached the customer's chat since the last look (every sender)."""
        conv_id = await self.conv_id(chat)
        after = self._seen.get(chat.chat_id, 0)
        async with self.sessions() as s:
            rows = (
                await s.execute(
                    select(Message.id, Message.text)
                    .where(
                        Message.conversation_id == conv_id,
                        Message.direction == Direction.OUT,
                        Message.id > after,
                    )
                    .order_by(Message.id)
                )
            ).all()
        if rows:
            self._seen[chat.chat_id] = rows[-1][0]
        return [plain(text) for _, text in rows]

    async def look(self, chat: ChatClient) -> None:
        """Forget what the chat shows so far."""
        await self.sees(chat)

    async def settled_events(self) -> list[dict[str, Any]]:
        for _ in range(20):
            await asyncio.sleep(0)
        return self.events


async def make_desk(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    vault: PersonalDataVault,
    nlu: NluParser,
    clock: Clock,
    locks: LockStore | None = None,
) -> Desk:
    pubsub = MemoryPubSub()
    locks = locks or MemoryLockStore()
    conversations = ConversationService(
        settings, sessions, locks, pubsub, channels={"test": InlineChannel("test")}, clock=clock
    )
    ops = OperatorService(conversations, locks, clock=clock)
    pipeline = Pipeline(
        settings,
        sessions,
        nlu,
        locks,
        DialogEngine(settings),
        vault,
        clock=clock,
        conversations=conversations,
        after_turn=ops.after_turn,
    )
    desk = Desk(settings, sessions, clock, conversations, ops, pipeline, pubsub)

    async def record(raw: str) -> None:
        desk.events.append(json.loads(raw))

    await pubsub.subscribe(OPERATOR_EVENTS_TOPIC, record)
    return desk


async def both(*calls: Awaitable[None]) -> list[BaseException | None]:
    """Run the calls at once; each one's error (None when it succeeded)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    out: list[BaseException | None] = []
    for r in results:
        if isinstance(r, BaseException):
            out.append(r)
        else:
            out.append(None)
    return out
