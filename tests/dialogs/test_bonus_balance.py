"""bonus_balance: EnergoBonus points of the linked account (linking first)."""

from __future__ import annotations

from tests.harness import DEMO_ACCOUNT, DEMO_ACCOUNT_3, DEMO_SNILS, ChatClient


async def test_points_after_linking_first(chat: ChatClient) -> None:
    await chat.say("сколько у меня баллов энергобонус")
    assert "лицевой счёт" in chat.last_text
    await chat.say(f"{DEMO_ACCOUNT} {DEMO_SNILS}")
    assert "На счёте 1002003001 350 баллов ЭнергоБонус." in chat.last_text
    assert "Последние операции:" in chat.last_text


async def test_no_points(chat: ChatClient) -> None:
    await chat.link(DEMO_ACCOUNT_3, DEMO_SNILS)
    await chat.say("сколько баллов энергобонус")
    assert "На счёте 1002003003 пока нет баллов ЭнергоБонус." in chat.last_text
