"""What adapters read through the host: history and the last buttons, typed."""

from __future__ import annotations

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
