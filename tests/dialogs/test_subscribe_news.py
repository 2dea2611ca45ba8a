"""subscribe_news: subscribe and unsubscribe this chat, idempotently."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import Subscription
from tests.harness import ChatClient


async def _subs(chat: ChatClient) -> list[tuple[str, str, bool]]:
    async with chat.session() as s:
        rows = await s.scalars(select(Subscription))
        return [(r.channel, r.chat_id, r.active) for r in rows]


async def test_subscribe_then_unsubscribe_by_words(chat: ChatClient) -> None:
    await chat.say("хочу подписаться на рассылку новостей")
    assert "этот чат подписан на новости" in chat.last_text
    assert await _subs(chat) == [("test", "chat-1", True)]
    await chat.say("подпишите на новости")
    assert "уже подписан" in chat.last_text
    await chat.say("отпишите меня от рассылки")
    assert "больше приходить не будут" in chat.last_text
    assert await _subs(chat) == [("test", "chat-1", False)]
    await chat.say("отпишите меня от рассылки")
    assert "и так не подписан" in chat.last_text


async def test_unclear_wish_is_asked_with_buttons(chat: ChatClient) -> None:
    await chat.say("рассылка новостей")
    assert chat.button_titles == ["Подписаться", "Оставить как есть"]
    await chat.press("Подписаться")
    assert "подписан" in chat.last_text
    await chat.say("рассылка новостей")
    assert chat.button_titles == ["Отписаться", "Оставить как есть"]
    await chat.press("Оставить как есть")
    assert "оставляю как есть" in chat.last_text
    assert await _subs(chat) == [("test", "chat-1", True)]
