"""tariff_info: the tariffs in force and the last change."""

from __future__ import annotations

from datetime import datetime

from tests.harness import ChatClient


async def test_current_tariffs_after_the_october_change(chat: ChatClient) -> None:
    await chat.say("какой тариф на отопление")
    text = chat.last_text
    assert text.startswith("Тарифы «Курская генерация» (с НДС):")
    assert "Отопление: 2 588,37 ₽ за Гкал с 01.10.2026 (до этого 2 290,15 ₽, +13 %)" in text
    assert "Горячая вода: 261,48 ₽ за м³ с 01.10.2026" in text


async def test_announced_change_before_it_starts(chat: ChatClient) -> None:
    chat.clock.set(datetime.fromisoformat("2026-09-15T09:00:00+00:00"))
    await chat.say("тарифы с октября")
    assert "Отопление: 2 290,15 ₽ за Гкал с 01.07.2025" in chat.last_text
    assert "С 01.10.2026 — 2 588,37 ₽ за Гкал (+13 %)." in chat.last_text
