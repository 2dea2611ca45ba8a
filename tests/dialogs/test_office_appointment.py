"""office_appointment: office -> nearest free slots -> confirmation; cancelling."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import BookingStatus, ChannelIdentity, OfficeBooking
from tests.harness import ChatClient

FIRST_SLOTS = [
    "ср 25.11 в 09:00",
    "ср 25.11 в 09:30",
    "ср 25.11 в 10:00",
    "ср 25.11 в 10:30",
    "ср 25.11 в 11:00",
    "ср 25.11 в 11:30",
]


async def _bookings(chat: ChatClient) -> list[tuple[int, BookingStatus, int | None]]:
    async with chat.session() as s:
        rows = await s.scalars(select(OfficeBooking).order_by(OfficeBooking.id))
        return [(b.slot_id, b.status, b.active_marker) for b in rows]


async def test_book_then_cancel(chat: ChatClient) -> None:
    await chat.say("хочу записаться на приём")
    assert "Выберите офис" in chat.last_text
    assert chat.button_titles == [
        "Центральный офис обслуживания, г. Курск, ул. Ленина, д. 69",
        "Офис на Сумской, г. Курск, ул. Сумская, д. 40",
    ]
    await chat.press("Центральный офис обслуживания")
    assert "Ближайшее свободное время в «Центральный офис обслуживания»" in chat.last_text
    assert chat.button_titles == FIRST_SLOTS
    await chat.press("ср 25.11 в 10:00")
    assert chat.last_text == (
        "Записать вас в «Центральный офис обслуживания», г. Курск, ул. Ленина, д. 69, "
        "на ср 25.11 в 10:00?"
    )
    await chat.press("Да")
    assert "Записал вас: «Центральный офис обслуживания»" in chat.last_text
    assert "ср 25.11 в 10:00 (по Москве)" in chat.last_text
    ((slot_id, status, marker),) = await _bookings(chat)
    assert (status, marker) == (BookingStatus.BOOKED, 1)

    # The booked time is no longer offered, to anyone.
    other = ChatClient(chat.pipeline, chat.sessions, chat.clock, chat_id="c2", user_id="u2")
    await other.say("записаться на приём")
    await other.press("Центральный офис обслуживания")
    assert "ср 25.11 в 10:00" not in other.button_titles
    assert other.button_titles[2] == "ср 25.11 в 10:30"

    # Back to the first customer: the booking is shown and can be cancelled.
    await chat.say("записаться на приём")
    assert "У вас есть запись:" in chat.last_text
    assert chat.button_titles == ["Снять запись на ср 25.11 в 10:00", "Записаться ещё"]
    await chat.press("Снять запись на ср 25.11 в 10:00")
    assert "Запись на ср 25.11 в 10:00 в «Центральный офис обслуживания» снята." in chat.last_text
    assert await _bookings(chat) == [(slot_id, BookingStatus.CANCELLED, None)]


async def test_typed_office_and_time(chat: ChatClient) -> None:
    await chat.say("записаться на прием в офис")
    await chat.say("на Сумской")
    assert "«Офис на Сумской»" in chat.last_text
    await chat.say("в 9:30")
    assert "на ср 25.11 в 09:30?" in chat.last_text
    await chat.press("Да")
    assert "Записал вас" in chat.last_text


async def test_a_time_that_is_not_free(chat: ChatClient) -> None:
    await chat.say("хочу записаться на приём")
    await chat.press("Офис на Сумской")
    await chat.say("в 23:15")
    assert "Этого времени нет среди свободных" in chat.last_text
    assert chat.button_titles == FIRST_SLOTS


async def test_the_slot_taken_meanwhile(chat: ChatClient) -> None:
    other = ChatClient(chat.pipeline, chat.sessions, chat.clock, chat_id="c2", user_id="u2")
    await chat.say("хочу записаться на приём")
    await chat.press("Центральный офис обслуживания")
    await chat.press("ср 25.11 в 09:00")
    assert "Записать вас" in chat.last_text
    # Someone else books the same time before the first customer confirms.
    await other.say("хочу записаться на приём")
    await other.press("Центральный офис обслуживания")
    await other.press("ср 25.11 в 09:00")
    await other.press("Да")
    assert "Записал вас" in other.last_text
    await chat.press("Да")
    assert "Это время только что заняли" in chat.last_text
    assert chat.button_titles[0] == "ср 25.11 в 09:30"
    await chat.press("ср 25.11 в 09:30")
    await chat.press("Да")
    assert "Записал вас" in chat.last_text
    async with chat.session() as s:
        owners = (await s.scalars(select(OfficeBooking.identity_id))).all()
        identities = (await s.scalars(select(ChannelIdentity.id))).all()
    assert sorted(owners) == sorted(identities)


async def test_cancel_without_bookings(chat: ChatClient) -> None:
    await chat.say("хочу отменить запись на приём")
    assert "Активных записей на приём у вас нет." in chat.last_text
    assert chat.button_titles == ["Записаться на приём"]
    await chat.press("Записаться на приём")
    assert "Выберите офис" in chat.last_text
