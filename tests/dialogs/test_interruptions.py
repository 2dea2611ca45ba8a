"""The interruption policy (dialogs/engine.py InterruptionPolicy), one
transcript per rule that dialogs/FRAMEWORK.md shows without a test elsewhere."""

from __future__ import annotations

from tests.harness import ChatClient


async def test_an_invalid_reading_of_the_text_is_a_question(chat: ChatClient) -> None:
    await chat.say("нет горячей воды")
    assert "Подскажите адрес" in chat.last_text
    # Read as an address it has no house number: not an answer, a new question.
    await chat.say("запишите на приём в офис на Ленина")
    assert "Выберите офис" in chat.last_text
    assert "номер дома" not in chat.last_text


async def test_a_free_text_slot_yields_to_an_operator_only(chat: ChatClient) -> None:
    await chat.say("хочу подать обращение")
    await chat.press("Другое")
    assert "Опишите" in chat.last_text
    # Reads like a tariff question, but it is the description.
    await chat.say("какой тариф на горячую воду у соседей")
    assert "телефон" in chat.last_text
    await chat.say("отмена")
    await chat.say("хочу подать обращение")
    await chat.press("Другое")
    await chat.say("соедините с оператором")
    assert "Передаю разговор оператору" in chat.last_text
