"""What adapters read through the host: history and the last buttons, typed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from bot.conversations import ClaimLost, CustomerLine, InboxClaim
from dialogs.messages import Button, Reply
from storage.models import Conversation, InboxEntry, Message, OutboxEntry, Sender
from tests.harness import ChatClient


async def test_last_buttons_are_those_of_the_last_answer(chat: ChatClient) -> None:
    service = chat.pipeline.conversations
    assert await service.last_buttons("test", "chat-1") == ()
    await chat.say("привет")
    assert chat.last_buttons
    assert await service.last_buttons("test", "chat-1") == tuple(chat.last_buttons)
    await chat.say("спасибо")
    assert await service.last_buttons("test", "chat-1") == tuple(chat.last_buttons)


async def test_history_is_typed_and_oldest_first(chat: ChatClient) -> None:
    await chat.say("привет")
    items = await chat.pipeline.conversations.history("test", "chat-1", 10)
    assert [i.sender for i in items] == ["customer", *["bot"] * len(chat.last_replies)]
    assert items[0].text == "привет"
    assert items[0].buttons == ()
    assert items[-1].buttons == chat.last_replies[-1].buttons
    assert [i.id for i in items] == sorted(i.id for i in items)
    assert await chat.pipeline.conversations.history("test", "no-such-chat", 10) == []


async def test_posted_messages_get_outbox_bodies_in_order(chat: ChatClient) -> None:
    """The writer (one statement on PostgreSQL) keeps each reply whole."""
    await chat.say("привет")
    replies = [
        Reply("Оставьте, пожалуйста, номер телефона.", ask_contact=True),
        Reply("Или выберите:", buttons=(Button("Позвоните мне", "/callback"),)),
        Reply("Спасибо!"),
    ]
    posted = await chat.pipeline.conversations.post("test", "chat-1", replies)
    async with chat.session() as s:
        rows = (
            await s.execute(
                select(OutboxEntry.message_id, OutboxEntry.body, Message.text, Message.sender)
                .join(Message, Message.id == OutboxEntry.message_id)
                .where(OutboxEntry.message_id.in_(posted.message_ids))
                .order_by(OutboxEntry.id)
            )
        ).all()
    assert [r.message_id for r in rows] == list(posted.message_ids)
    assert [Reply.from_json(r.body) for r in rows] == replies
    assert [r.text for r in rows] == [r.text for r in replies]
    assert {r.sender for r in rows} == {Sender.OPERATOR}


async def test_a_turn_whose_entry_another_run_claimed_writes_nothing(chat: ChatClient) -> None:
    """The claim goes out with the turn's writes: if another run has claimed
    the inbox entry in between, none of this run's rows are kept."""
    await chat.say("привет")
    service = chat.pipeline.conversations
    async with chat.session() as s:
        entry_id = await s.scalar(select(func.max(InboxEntry.id)))
        before = await s.scalar(select(func.count()).select_from(Message))
    assert entry_id is not None
    now = datetime.now(UTC)
    async with service.transaction(lazy_begin=True) as session:
        conv = await session.scalar(select(Conversation))
        assert conv is not None
        with pytest.raises(ClaimLost):
            await service.add_messages(
                session,
                conv,
                [Reply("Ещё раз здравствуйте!")],
                sender=Sender.BOT,
                now=now,
                customer=CustomerLine(text="привет", at=now),
                conversation={"state": {}, "last_customer_message_at": now},
                claim=InboxClaim(entry_id, now),
            )
        await session.commit()  # whatever the session still holds
    async with chat.session() as s:
        assert await s.scalar(select(func.count()).select_from(Message)) == before
        conv = await s.scalar(select(Conversation))
        assert conv is not None
        assert conv.state != {}
