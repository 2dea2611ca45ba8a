"""Visits to the customer service offices: free slots, booking, cancelling.

One live booking per slot: the handler checks first, and the unique key on
``office_bookings(slot_id, active_marker)`` settles a race (the loser gets
:class:`SlotTaken`, its transaction intact thanks to a savepoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.contacts import OfficeInfo, list_offices, office_info
from handlers.errors import HandlerError
from storage.models import BookingStatus, Office, OfficeBooking, OfficeSlot

__all__ = [
    "BookingInfo",
    "BookingNotFound",
    "OfficeError",
    "OfficeInfo",
    "OfficeNotFound",
    "SlotInfo",
    "SlotNotFound",
    "SlotTaken",
    "book_slot",
    "cancel_booking",
    "free_slots",
    "get_office",
    "list_bookings",
    "list_offices",
]


class OfficeError(HandlerError):
    """Root of the office-visit errors."""


class OfficeNotFound(OfficeError):
    pass


class SlotNotFound(OfficeError):
    """No such slot, or it has already begun."""


class SlotTaken(OfficeError):
    """Someone else booked the slot first."""


class BookingNotFound(OfficeError):
    """No such live booking of this person."""


@dataclass(frozen=True, slots=True)
class SlotInfo:
    id: int
    office_id: int
    starts_at: datetime
    minutes: int


@dataclass(frozen=True, slots=True)
class BookingInfo:
    id: int
    office: OfficeInfo
    slot: SlotInfo
    status: BookingStatus
    topic: str | None


def _slot_info(slot: OfficeSlot) -> SlotInfo:
    return SlotInfo(
        id=slot.id, office_id=slot.office_id, starts_at=slot.starts_at, minutes=slot.minutes
    )


async def get_office(session: AsyncSession, office_id: int) -> OfficeInfo:
    office = await session.get(Office, office_id)
    if office is None:
        raise OfficeNotFound(str(office_id))
    return office_info(office)


async def free_slots(
    session: AsyncSession, office_id: int, now: datetime, limit: int = 6
) -> list[SlotInfo]:
    """The nearest future slots of the office nobody has booked."""
    live = exists().where(
        OfficeBooking.slot_id == OfficeSlot.id, OfficeBooking.active_marker.is_not(None)
    )
    rows = (
        await session.execute(
            select(OfficeSlot)
            .where(OfficeSlot.office_id == office_id, OfficeSlot.starts_at > now, ~live)
            .order_by(OfficeSlot.starts_at)
            .limit(limit)
        )
    ).scalars()
    return [_slot_info(s) for s in rows]


async def _booking_info(session: AsyncSession, booking: OfficeBooking) -> BookingInfo:
    slot = await session.get(OfficeSlot, booking.slot_id)
    assert slot is not None  # a foreign key
    office = await get_office(session, slot.office_id)
    return BookingInfo(
        id=booking.id,
        office=office,
        slot=_slot_info(slot),
        status=booking.status,
        topic=booking.topic,
    )


async def book_slot(
    session: AsyncSession,
    identity_id: int,
    slot_id: int,
    now: datetime,
    *,
    account_id: int | None = None,
    topic: str | None = None,
) -> BookingInfo:
    slot = await session.get(OfficeSlot, slot_id)
    if slot is None or slot.starts_at <= now:
        raise SlotNotFound(str(slot_id))
    taken = await session.scalar(
        select(
            exists().where(
                OfficeBooking.slot_id == slot_id, OfficeBooking.active_marker.is_not(None)
            )
        )
    )
    if taken:
        raise SlotTaken(str(slot_id))
    booking = OfficeBooking(
        slot_id=slot_id,
        identity_id=identity_id,
        account_id=account_id,
        topic=topic,
        status=BookingStatus.BOOKED,
        active_marker=1,
        created_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(booking)
    except IntegrityError as exc:
        raise SlotTaken(str(slot_id)) from exc
    return await _booking_info(session, booking)


async def list_bookings(
    session: AsyncSession, identity_id: int, now: datetime
) -> list[BookingInfo]:
    """This person's live bookings that have not begun yet, nearest first."""
    rows = (
        await session.execute(
            select(OfficeBooking)
            .join(OfficeSlot, OfficeSlot.id == OfficeBooking.slot_id)
            .where(
                OfficeBooking.identity_id == identity_id,
                OfficeBooking.active_marker.is_not(None),
                OfficeSlot.starts_at > now,
            )
            .order_by(OfficeSlot.starts_at)
        )
    ).scalars()
    return [await _booking_info(session, b) for b in rows]


async def cancel_booking(
    session: AsyncSession, identity_id: int, booking_id: int, now: datetime
) -> BookingInfo:
    """Cancel one of this person's live bookings that has not begun yet; the
    slot becomes free again."""
    booking = await session.get(OfficeBooking, booking_id)
    if booking is None or booking.identity_id != identity_id or booking.active_marker is None:
        raise BookingNotFound(str(booking_id))
    slot = await session.get(OfficeSlot, booking.slot_id)
    if slot is None or slot.starts_at <= now:
        raise BookingNotFound(str(booking_id))
    booking.status = BookingStatus.CANCELLED
    booking.active_marker = None
    await session.flush()
    return await _booking_info(session, booking)
