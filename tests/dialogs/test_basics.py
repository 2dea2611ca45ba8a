"""greet, goodbye, thanks, out_of_scope and the fallback."""

from __future__ import annotations

from tests.harness import ChatClient


async def test_greet_offers_the_menu(chat: ChatClient) -> None:
    await chat.say("Добрый день")
    assert chat.last_text.startswith("Здравствуйте!")
    assert "Передать показания" in chat.button_titles
    assert "Связаться с оператором" in chat.button_titles


async def test_greet_names_the_linked_account(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("привет")
    assert "счётом 1002003001" in chat.last_text


async def test_goodbye_and_thanks(chat: ChatClient) -> None:
    await chat.say("спасибо большое")
    assert chat.texts == ["Пожалуйста! Обращайтесь, если будут вопросы."]
    await chat.say("до свидания")
    assert chat.last_text.startswith("Всего доброго")


async def test_out_of_scope_says_what_the_bot_does(chat: ChatClient) -> None:
    await chat.say("расскажи анекдот")
    assert "теплоснабжении" in chat.last_text
    assert "Баланс и начисления" in chat.button_titles


async def test_two_fallbacks_in_a_row_offer_an_operator(chat: ChatClient) -> None:
    await chat.say("фывапролд")
    assert "не понял" in chat.last_text
    assert "Позвать оператора" not in chat.button_titles
    await chat.say("ыыы ааа")
    assert "оператора" in chat.last_text
    assert "Позвать оператора" in chat.button_titles
    await chat.press("Позвать оператора")
    assert "оператору" in chat.last_text


async def test_an_understood_message_resets_the_fallback_count(chat: ChatClient) -> None:
    await chat.say("фывапролд")
    await chat.say("привет")
    await chat.say("ыыы ааа")
    assert "Позвать оператора" not in chat.button_titles


async def test_menu_buttons_start_flows(chat: ChatClient) -> None:
    await chat.say("привет")
    await chat.press("Передать показания")
    assert "привяжем лицевой счёт" in chat.last_text


async def test_stray_yes_shows_the_menu(chat: ChatClient) -> None:
    await chat.say("да")
    assert "Чем могу помочь" in chat.last_text
    assert chat.button_titles
