import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.offices import (
    BookingNotFound,
    SlotNotFound,
    SlotTaken,
    book_slot,
    cancel_booking,
    free_slots,
    list_bookings,
    list_offices,
)
from storage.models import BookingStatus, Office, OfficeBooking, OfficeSlot
from tests.handlers.service_factories import NOW, make_identity


async def _office(session: AsyncSession) -> tuple[int, list[int]]:
    office = Office(
        name="Центральный офис обслуживания",
        address="г. Курск, ул. Ленина, д. 69",
        phone="+7 (4712) 39-55-55",
        hours="пн–пт 8:00–20:00",
    )
    session.add(office)
    await session.flush()
    slots = [
        OfficeSlot(office_id=office.id, starts_at=NOW + timedelta(hours=h), minutes=30)
        for h in (-1, 1, 2, 3, 4)
    ]
    session.add_all(slots)
    await session.flush()
    return office.id, [s.id for s in slots]


async def test_free_slots_book_list_cancel(db_session: AsyncSession) -> None:
    office_id, slots = await _office(db_session)
    me = await make_identity(db_session, "me")
    offices = await list_offices(db_session)
    assert [o.name for o in offices] == ["Центральный офис обслуживания"]

    free = await free_slots(db_session, office_id, NOW, limit=3)
    # The past slot is not offered; the nearest first.
    assert [s.id for s in free] == slots[1:4]

    booking = await book_slot(db_session, me, slots[1], NOW, topic="перерасчёт")
    assert booking.status is BookingStatus.BOOKED
    assert booking.office.address == "г. Курск, ул. Ленина, д. 69"
    assert booking.slot.starts_at == NOW + timedelta(hours=1)
    assert [s.id for s in await free_slots(db_session, office_id, NOW)] == slots[2:]
    assert [b.id for b in await list_bookings(db_session, me, NOW)] == [booking.id]

    cancelled = await cancel_booking(db_session, me, booking.id, NOW)
    assert cancelled.status is BookingStatus.CANCELLED
    assert await list_bookings(db_session, me, NOW) == []
    assert [s.id for s in await free_slots(db_session, office_id, NOW)] == slots[1:]
    # Cancelled once; the slot can be booked again (the NULL marker never collides).
    with pytest.raises(BookingNotFound):
        await cancel_booking(db_session, me, booking.id, NOW)
    again = await book_slot(db_session, me, slots[1], NOW)
    await db_session.commit()
    rows = (await db_session.execute(select(OfficeBooking).order_by(OfficeBooking.id))).scalars()
    assert [(r.id, r.active_marker) for r in rows] == [(booking.id, None), (again.id, 1)]


async def test_taken_past_and_unknown_slots(db_session: AsyncSession) -> None:
    _, slots = await _office(db_session)
    me = await make_identity(db_session, "me")
    other = await make_identity(db_session, "other")
    mine = await book_slot(db_session, me, slots[2], NOW)
    with pytest.raises(SlotTaken):
        await book_slot(db_session, other, slots[2], NOW)
    with pytest.raises(SlotNotFound):
        await book_slot(db_session, other, slots[0], NOW)  # already began
    with pytest.raises(SlotNotFound):
        await book_slot(db_session, other, 999_999, NOW)
    # Someone else's booking cannot be cancelled, nor one that has begun.
    with pytest.raises(BookingNotFound):
        await cancel_booking(db_session, other, mine.id, NOW)
    with pytest.raises(BookingNotFound):
        await cancel_booking(db_session, me, mine.id, NOW + timedelta(hours=5))
    # The failed attempts left the transaction usable.
    await db_session.commit()
    assert [b.id for b in await list_bookings(db_session, me, NOW)] == [mine.id]


async def test_a_race_for_one_slot_has_one_winner(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with session_factory() as session:
        _, slots = await _office(session)
        people = [await make_identity(session, f"u{i}") for i in range(2)]
        await session.commit()

    async def attempt(identity_id: int) -> str:
        async with session_factory() as session:
            try:
                await book_slot(session, identity_id, slots[1], NOW)
                await asyncio.sleep(0.05)
                await session.commit()
            except SlotTaken:
                await session.rollback()
                return "taken"
            return "booked"

    results = await asyncio.gather(*(attempt(p) for p in people))
    assert sorted(results) == ["booked", "taken"]
    async with session_factory() as session:
        live = (
            await session.execute(
                select(OfficeBooking).where(OfficeBooking.active_marker.is_not(None))
            )
        ).scalars()
        assert len(list(live)) == 1
