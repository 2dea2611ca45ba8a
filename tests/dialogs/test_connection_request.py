"""connection_request: address, building, load, phone; feasibility and a number."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from storage.models import ConnectionApplication
from tests.harness import ChatClient


async def _applications(chat: ChatClient) -> list[ConnectionApplication]:
    async with chat.session() as s:
        rows = await s.scalars(select(ConnectionApplication).order_by(ConnectionApplication.id))
        return list(rows)


async def test_feasible_request(chat: ChatClient) -> None:
    await chat.say("хочу подключить дом к теплосети")
    assert "адрес" in chat.last_text
    await chat.say("ул. Карла Маркса, д. 70")
    assert chat.button_titles == ["Жилой дом", "Нежилое здание", "Частный дом", "Другое"]
    await chat.press("Жилой дом")
    assert "Гкал/ч" in chat.last_text
    await chat.say("0,8")
    assert "телефон" in chat.last_text
    await chat.say("8 910 210 45 67")
    assert "Нагрузка: 0,8 Гкал/ч" in chat.last_text
    assert "Телефон: +7 *** ***-**-67" in chat.last_text
    await chat.press("Да")
    assert "Подключение по адресу возможно" in chat.last_text
    assert "«ТЭЦ-1, центр»" in chat.last_text
    assert "номер TP-2026-000001" in chat.last_text
    (app,) = await _applications(chat)
    assert (app.number, app.feasible, app.building_kind, app.load_gcal_h) == (
        "TP-2026-000001",
        True,
        "apartment_building",
        Decimal("0.8"),
    )
    assert app.contact_masked == "+7 *** ***-**-67"
    assert app.contact_enc is not None
    assert "2104567" not in app.contact_enc


async def test_not_enough_capacity_and_bad_loads(chat: ChatClient) -> None:
    await chat.say("можно ли подключиться к теплосети")
    await chat.say("Сумская 12")
    await chat.press("Нежилое здание")
    await chat.say("много")
    assert "Не совсем понял" in chat.last_text
    await chat.say("-2")
    assert "больше нуля" in chat.last_text
    await chat.say("500")
    assert "Больше 50 Гкал/ч" in chat.last_text
    await chat.say("1,5 Гкал/ч")
    await chat.say("без телефона")
    assert "Без телефона заявку не оформить" in chat.last_text
    await chat.say("+7 915 512-33-44")
    await chat.press("Да")
    assert "свободно только 0,8 Гкал/ч, а нужно 1,5" in chat.last_text
    assert "номер TP-2026-000001" in chat.last_text
    (app,) = await _applications(chat)
    assert app.feasible is False


async def test_no_network_nearby(chat: ChatClient) -> None:
    await chat.say("техусловия на подключение")
    await chat.say("Полевая 3")
    await chat.press("Частный дом")
    await chat.say("0.03")
    await chat.say("89155123344")
    await chat.press("Да")
    assert "нет наших тепловых сетей" in chat.last_text
    assert "TP-2026-000001" in chat.last_text


async def test_declined(chat: ChatClient) -> None:
    await chat.say("хочу подключить дом к теплосети")
    await chat.say("Ленина 1")
    await chat.press("Другое")
    await chat.say("0,2")
    await chat.say("89155123344")
    await chat.press("Нет")
    assert "заявку не отправляю" in chat.last_text
    assert await _applications(chat) == []


async def test_a_question_at_the_load_prompt_then_continue(chat: ChatClient) -> None:
    await chat.say("хочу подключить дом к теплосети")
    await chat.say("Дзержинского 7")
    await chat.press("Частный дом")
    await chat.say("а какой сейчас тариф на отопление за 1 гкал")
    assert "Отопление: 2 588,37 ₽ за Гкал" in chat.last_text
    assert chat.texts[-1] == "Продолжим заявку на подключение?"
    await chat.press("Да")
    assert "Гкал/ч" in chat.last_text
    await chat.say("0,04")
    assert "телефон" in chat.last_text


async def test_the_address_reaches_the_application_normalised(chat: ChatClient) -> None:
    # "К. Маркса" is ул. Карла Маркса, served by the central zone.
    await chat.say("хочу подключить к теплосети новый дом, к. маркса 70 корпус 2")
    await chat.press("Жилой дом")
    await chat.say("0,5")
    await chat.say("8 910 210 45 67")
    assert "Адрес: ул. Карла Маркса, д. 70, корп. 2\n" in chat.last_text
    await chat.press("Да")
    assert "Подключение по адресу возможно" in chat.last_text
    assert "«ТЭЦ-1, центр»" in chat.last_text
    (app,) = await _applications(chat)
    assert app.address == "ул. Карла Маркса, д. 70, корп. 2"


async def test_an_address_needs_a_house_number(chat: ChatClient) -> None:
    await chat.say("хочу подключить частный дом к теплосети")
    await chat.say("Литовская")
    assert "номер дома или участка" in chat.last_text
    await chat.say("Литовская 15")
    assert "Что за здание?" in chat.last_text
