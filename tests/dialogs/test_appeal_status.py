"""appeal_status: by number (own appeals only) or the list of open appeals."""

from __future__ import annotations

from datetime import timedelta

from tests.harness import DEMO_ACCOUNT_2, DEMO_SNILS_2, ChatClient


async def test_open_appeals_of_a_linked_customer(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("что с моими обращениями")
    # A-2026-000001 is resolved: only the one in review is listed.
    assert chat.last_text.startswith("Ваши открытые обращения:")
    assert "A-2026-000002 — качество отопления, на рассмотрении, решение до" in chat.last_text
    assert "A-2026-000001" not in chat.last_text


async def test_by_number(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("статус обращения A-2026-000001")
    assert chat.texts == ["Обращение A-2026-000001 (начисления и перерасчёт): решено."]
    await chat.say("статус заявки а-2026-2")
    assert "Обращение A-2026-000002 (качество отопления): на рассмотрении." in chat.last_text
    assert "Решение — до" in chat.last_text


async def test_someone_elses_appeal_is_not_shown(chat: ChatClient) -> None:
    await chat.link(DEMO_ACCOUNT_2, DEMO_SNILS_2)
    await chat.say("статус обращения A-2026-000002")
    assert "не нашлось среди ваших" in chat.last_text
    assert "отопления" not in chat.last_text
    await chat.say("что с моим обращением")
    assert "Открытых обращений нет" in chat.last_text
    assert chat.button_titles == ["Подать обращение"]


async def test_without_account_the_number_is_asked(chat: ChatClient) -> None:
    await chat.say("что с моим обращением")
    assert "номер обращения" in chat.last_text
    assert chat.button_titles == ["Привязать лицевой счёт"]
    await chat.say("12345")
    assert "Номер обращения выглядит так: A-2026-000123" in chat.last_text
    # Not linked: a real appeal of an account is not shown; linking is offered.
    await chat.say("A-2026-000002")
    assert "Среди обращений из этого чата A-2026-000002 нет" in chat.last_text
    assert "отопления" not in chat.last_text
    assert chat.button_titles == ["Привязать лицевой счёт", "Позвать оператора"]
    await chat.press("Привязать лицевой счёт")
    await chat.say("1002003001 112-233-445 95")
    await chat.say("статус обращения A-2026-000002")
    assert "Обращение A-2026-000002 (качество отопления): на рассмотрении." in chat.last_text


async def test_overdue_decision_is_said(chat: ChatClient) -> None:
    await chat.link()
    chat.clock.advance(timedelta(days=30))
    await chat.say("статус обращения A-2026-000002")
    assert "Срок решения" in chat.last_text
    assert "прошёл" in chat.last_text
