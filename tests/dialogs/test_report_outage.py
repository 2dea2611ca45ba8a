"""report_outage: a known outage explains itself; otherwise an emergency appeal."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from storage.models import Appeal, AppealCategory, Priority, Task, TaskKind
from tests.harness import DEFAULT_NOW, DEMO_ACCOUNT_2, DEMO_SNILS_2, ChatClient

DEMO_APPEALS = ("A-2026-000001", "A-2026-000002")


async def _emergencies(chat: ChatClient) -> list[tuple[Appeal, Task]]:
    async with chat.session() as s:
        rows = await s.execute(
            select(Appeal, Task)
            .join(Task, Task.appeal_id == Appeal.id)
            .where(Appeal.number.not_in(DEMO_APPEALS))
            .order_by(Appeal.id)
        )
        return [(a, t) for a, t in rows]


async def test_planned_outage_at_the_linked_address(chat: ChatClient) -> None:
    # Account 1002003002 is on Радищева 3, under the planned hot-water outage.
    await chat.link(DEMO_ACCOUNT_2, DEMO_SNILS_2)
    await chat.say("нет горячей воды")
    until = (DEFAULT_NOW + timedelta(days=9)).strftime("%d.%m")
    assert "сейчас отключено горячее водоснабжение" in chat.last_text
    assert "плановые гидравлические испытания тепловых сетей" in chat.last_text
    assert f"восстановят до {until} 10:00 (по Москве)" in chat.last_text
    assert chat.button_titles == ["Сообщить об аварии"]
    assert await _emergencies(chat) == []

    # Something else is wrong: the button registers an emergency all the same.
    await chat.press("Сообщить об аварии")
    assert "Зарегистрировал аварийную заявку A-2026-000003" in chat.last_text
    ((appeal, task),) = await _emergencies(chat)
    assert appeal.priority is Priority.HIGH
    assert task.kind is TaskKind.EMERGENCY_DISPATCH


async def test_asked_address_with_an_outage(chat: ChatClient) -> None:
    await chat.say("когда дадут горячую воду")
    assert "адрес" in chat.last_text
    await chat.say("ул. Радищева, д. 5")
    assert "отключено горячее водоснабжение" in chat.last_text


async def test_no_outage_registers_an_emergency_at_night(chat: ChatClient) -> None:
    await chat.link()  # Ленина 10: no outage there
    # Sunday 29.11, 03:00 Moscow: the contact center is closed, emergencies are not.
    chat.clock.set(DEFAULT_NOW + timedelta(days=4, hours=17))
    await chat.say("батареи холодные, отопления нет")
    assert "Плановых отключений по адресу г. Курск, ул. Ленина, д. 10, кв. 5 нет" in chat.last_text
    assert "аварийную заявку A-2026-000003" in chat.last_text
    assert "8 800 100-19-00" in chat.last_text
    ((appeal, task),) = await _emergencies(chat)
    assert (appeal.category, appeal.priority) == (AppealCategory.EMERGENCY, Priority.HIGH)
    assert appeal.description == "батареи холодные, отопления нет"
    assert appeal.address == "г. Курск, ул. Ленина, д. 10, кв. 5"
    assert appeal.account_id is not None
    assert task.account_id == appeal.account_id


async def test_unparseable_address_is_asked_again(chat: ChatClient) -> None:
    await chat.say("прорвало трубу в подвале")
    await chat.say("10")
    assert "Не получилось разобрать адрес" in chat.last_text
    await chat.say("Ленина")
    assert "номер дома" in chat.last_text
    await chat.say("Ленина 12")
    assert "аварийную заявку A-2026-000003" in chat.last_text
    ((appeal, _),) = await _emergencies(chat)
    assert appeal.account_id is None
    assert appeal.address == "ул. Ленина, д. 12"  # normalised


async def test_a_hot_water_outage_does_not_explain_cold_radiators(chat: ChatClient) -> None:
    await chat.link(DEMO_ACCOUNT_2, DEMO_SNILS_2)  # Радищева 3: hot water is off
    await chat.say("батареи холодные")
    assert "горячее водоснабжение" not in chat.last_text
    assert "аварийную заявку A-2026-000003" in chat.last_text


async def test_the_address_is_not_asked_twice(chat: ChatClient) -> None:
    await chat.say("у меня нет горячей воды")
    await chat.say("Радищева 3")
    assert "отключено горячее водоснабжение" in chat.last_text
    await chat.say("а когда дадут горячую воду")
    assert "Подскажите адрес" not in " ".join(chat.texts)
    assert "По адресу ул. Радищева, д. 3 сейчас отключено горячее водоснабжение" in chat.last_text
    # Something else is wrong there: the button reports it at the same address.
    await chat.press("Сообщить об аварии")
    assert "A-2026-000003" in chat.last_text
    ((appeal, _task),) = await _emergencies(chat)
    assert appeal.address == "ул. Радищева, д. 3"


async def test_the_address_as_written_is_normalised_and_matched(chat: ChatClient) -> None:
    # A typo and another word order: the planned outage on ул. Радищева, 5 is
    # found, and the address is shown and stored in its canonical form.
    await chat.say("бабушка одна, горячей воды нет, радищево дом 5 квартира 12")
    assert (
        "По адресу ул. Радищева, д. 5, кв. 12 сейчас отключено горячее водоснабжение"
        in chat.last_text
    )
    await chat.press("Сообщить об аварии")
    ((appeal, _task),) = await _emergencies(chat)
    assert appeal.address == "ул. Радищева, д. 5, кв. 12"


async def test_an_address_given_when_asked_is_normalised(chat: ChatClient) -> None:
    await chat.say("прорвало трубу в подвале")
    await chat.say("на улице карла маркса 12 к2 кв 5")
    assert "по адресу ул. Карла Маркса, д. 12, корп. 2, кв. 5" in chat.last_text
    ((appeal, _task),) = await _emergencies(chat)
    assert appeal.address == "ул. Карла Маркса, д. 12, корп. 2, кв. 5"


async def test_a_new_question_at_the_address_prompt_is_answered(chat: ChatClient) -> None:
    await chat.say("у меня нет горячей воды")
    assert "адрес" in chat.last_text
    await chat.say("хочу подключить частный дом к теплосети")
    # Not taken for an address: the connection request starts instead.
    assert "Подскажу по подключению к теплосети" in chat.last_text
    await chat.say("zapisatsya na priem v ofis")
    assert "Выберите офис" in chat.last_text
    assert await _emergencies(chat) == []
