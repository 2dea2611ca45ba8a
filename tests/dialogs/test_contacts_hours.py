"""contacts_hours: hotline, hours (open or closed now), offices."""

from __future__ import annotations

from datetime import timedelta

from tests.harness import ChatClient


async def test_contacts_in_working_hours(chat: ChatClient) -> None:
    await chat.say("телефон горячей линии и часы работы")
    text = chat.last_text
    assert "Горячая линия: 8 800 100-19-00." in text
    assert "работает пн–сб с 8:00 до 20:00 по Москве, сейчас открыт." in text
    assert "Центральный офис обслуживания: г. Курск, ул. Ленина, д. 69" in text
    assert "Офис на Сумской: г. Курск, ул. Сумская, д. 40, тел. +7 (4712) 39-55-56" in text
    assert chat.button_titles == ["Записаться на приём"]
    await chat.press("Записаться на приём")
    assert "Выберите офис" in chat.last_text


async def test_contacts_on_sunday(chat: ChatClient) -> None:
    chat.clock.advance(timedelta(days=5))  # Sunday
    await chat.say("где ваш офис")
    assert "сейчас закрыт (откроется пн 30.11 в 08:00)" in chat.last_text
    assert "ул. Ленина, д. 69" in chat.last_text
