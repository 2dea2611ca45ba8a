"""office_appointment: choose an office, then one of the nearest free slots,
confirm the booking; or cancel an existing booking."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dialogs.context import FlowContext
from dialogs.format import slot_label
from dialogs.forms import (
    Form,
    Outcome,
    Slot,
    Validated,
    answer,
    payload,
    refuse,
    reply,
    yes_no,
)
from dialogs.messages import Button, Reply
from dialogs.state import FormState
from handlers.offices import (
    BookingInfo,
    BookingNotFound,
    OfficeNotFound,
    SlotNotFound,
    SlotTaken,
    book_slot,
    cancel_booking,
    free_slots,
    get_office,
    list_bookings,
    list_offices,
)
from nlu.types import ParseResult
from storage.models import OfficeSlot

# How many of the nearest free slots are offered as buttons.
SLOT_BUTTONS = 6
FLOW = "office_appointment"


class Texts:
    ask_office = "Запишу на приём в офис обслуживания. Выберите офис:"
    no_offices = "Сейчас запись через чат недоступна. Позвоните на горячую линию: {phone}."
    ask_slot = "Ближайшее свободное время в «{office}» ({address}), по Москве:"
    no_free_slots = "В «{office}» на ближайшие дни всё занято. Выберите другой офис:"
    bad_office = "Выберите офис кнопкой, пожалуйста."
    bad_slot = "Этого времени нет среди свободных. Выберите, пожалуйста, из предложенных:"
    confirm = "Записать вас в «{office}», {address}, на {when}?"
    booked = (
        "Записал вас: «{office}», {address}, {when} (по Москве). "
        "Возьмите с собой паспорт и квитанцию. Если планы изменятся, запись можно снять здесь же."
    )
    taken = "Это время только что заняли. Выберите другое:"
    existing = "У вас есть запись:\n{bookings}\nЧто сделать?"
    existing_item = "• {when} — «{office}», {address}"
    book_more = "Записаться ещё"
    cancel_one = "Снять запись на {when}"
    no_bookings = "Активных записей на приём у вас нет."
    book_button = "Записаться на приём"
    cancelled_booking = "Запись на {when} в «{office}» снята. Время освободилось для других."
    booking_gone = "Этой записи уже нет: возможно, её сняли раньше или время приёма прошло."
    choose_to_cancel = "Какую запись снять?"
    cancelled = "Хорошо, не записываю. Чем ещё могу помочь?"
    resume = "Продолжим запись на приём?"


_CANCEL_WORDS = re.compile(r"отмен|сним|снять|удали|не\s+приду|не\s+смогу|перенес", re.I)
_TIME = re.compile(r"(\d{1,2})[:.\-](\d{2})")


def _when(booking: BookingInfo, ctx: FlowContext) -> str:
    return slot_label(booking.slot.starts_at, ctx.settings.tz)


class OfficeAppointment(Form):
    name = FLOW
    intents = frozenset({FLOW})
    confirm = True
    resume_question = Texts.resume
    cancelled_text = Texts.cancelled
    slots = (
        Slot("office_id", Texts.ask_office),
        Slot("slot_id", Texts.ask_slot),
    )

    # ----- start: cancelling, or an existing booking first ---------------

    async def on_start(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> Outcome | None:
        to_cancel = parse.entity("cancel_booking")
        if to_cancel is not None:
            return await self._cancel(ctx, str(to_cancel.value))
        action = parse.entity("action")
        action_value = str(action.value) if action is not None else None
        if action_value == "book":
            return None
        if not await list_offices(ctx.session):
            return answer(reply(Texts.no_offices.format(phone=ctx.settings.hotline_phone)))
        wants_cancel = action_value == "cancel" or (
            not parse.text.startswith("/") and bool(_CANCEL_WORDS.search(parse.text))
        )
        bookings = await list_bookings(ctx.session, ctx.identity.id, ctx.now)
        if wants_cancel and not bookings:
            return answer(
                reply(Texts.no_bookings, Button(Texts.book_button, payload(FLOW, action="book")))
            )
        if wants_cancel:
            return answer(reply(Texts.choose_to_cancel, *self._cancel_buttons(ctx, bookings)))
        if bookings and parse.entity("slot_id") is None and parse.entity("office_id") is None:
            items = "\n".join(
                Texts.existing_item.format(
                    when=_when(b, ctx), office=b.office.name, address=b.office.address
                )
                for b in bookings
            )
            return answer(
                reply(
                    Texts.existing.format(bookings=items),
                    *self._cancel_buttons(ctx, bookings),
                    Button(Texts.book_more, payload(FLOW, action="book")),
                )
            )
        return None

    def _cancel_buttons(self, ctx: FlowContext, bookings: list[BookingInfo]) -> list[Button]:
        return [
            Button(
                Texts.cancel_one.format(when=_when(b, ctx)),
                payload(FLOW, cancel_booking=str(b.id)),
            )
            for b in bookings
        ]

    async def _cancel(self, ctx: FlowContext, raw_id: str) -> Outcome:
        try:
            booking = await cancel_booking(ctx.session, ctx.identity.id, int(raw_id), ctx.now)
        except (BookingNotFound, ValueError):
            return answer(reply(Texts.booking_gone))
        return answer(
            reply(
                Texts.cancelled_booking.format(when=_when(booking, ctx), office=booking.office.name)
            )
        )

    # ----- slots ------------------------------------------------------------

    async def prefill(self, ctx: FlowContext, form: FormState) -> Mapping[str, Any]:
        if not form.has("office_id"):
            offices = await list_offices(ctx.session)
            if len(offices) == 1:
                return {"office_id": offices[0].id}
        return {}

    async def prompt(self, ctx: FlowContext, form: FormState, slot: str) -> Reply:
        if slot == "office_id":
            offices = await list_offices(ctx.session)
            return reply(
                Texts.ask_office,
                *(
                    Button(f"{o.name}, {o.address}", payload(FLOW, office_id=str(o.id)))
                    for o in offices
                ),
            )
        office = await get_office(ctx.session, int(form.slots["office_id"]))
        slots = await free_slots(ctx.session, office.id, ctx.now, SLOT_BUTTONS)
        return reply(
            Texts.ask_slot.format(office=office.name, address=office.address),
            *(
                Button(slot_label(s.starts_at, ctx.settings.tz), payload(FLOW, slot_id=str(s.id)))
                for s in slots
            ),
        )

    async def extract(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> dict[str, Any]:
        found = await super().extract(ctx, form, parse)
        text = parse.text.strip().lower().replace("ё", "е")
        if found or not text or text.startswith("/"):
            return found
        if form.requested_slot == "office_id":
            for office in await list_offices(ctx.session):
                words = re.findall(r"[а-я]{4,}", f"{office.name} {office.address}".lower())
                if any(w[:5] in text for w in words if w not in {"офис", "обслуживания", "курск"}):
                    found["office_id"] = office.id
                    break
        elif form.requested_slot == "slot_id" and form.has("office_id"):
            match = _TIME.search(text)
            if match:
                wanted = f"{int(match.group(1)):02d}:{match.group(2)}"
                for s in await free_slots(
                    ctx.session, int(form.slots["office_id"]), ctx.now, SLOT_BUTTONS
                ):
                    if slot_label(s.starts_at, ctx.settings.tz).endswith(wanted):
                        found["slot_id"] = s.id
                        break
                else:
                    found["slot_id"] = -1  # a time, but not a free one: validate() says so
        return found

    async def validate_office_id(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        try:
            office = await get_office(ctx.session, int(value))
        except (OfficeNotFound, ValueError):
            return refuse(Texts.bad_office, reprompt=True)
        if not await free_slots(ctx.session, office.id, ctx.now, 1):
            return refuse(Texts.no_free_slots.format(office=office.name), reprompt=True)
        return {"office_id": office.id}

    async def validate_slot_id(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        try:
            row = await ctx.session.get(OfficeSlot, int(value))
        except ValueError:
            row = None
        free_ids = (
            {s.id for s in await free_slots(ctx.session, row.office_id, ctx.now, 1000)}
            if row is not None
            else set()
        )
        if row is None or row.id not in free_ids:
            return refuse(Texts.bad_slot, reprompt=True)
        return {"slot_id": row.id, "office_id": row.office_id}

    async def confirmation(self, ctx: FlowContext, form: FormState) -> Reply:
        office = await get_office(ctx.session, int(form.slots["office_id"]))
        row = await ctx.session.get(OfficeSlot, int(form.slots["slot_id"]))
        assert row is not None
        return yes_no(
            Texts.confirm.format(
                office=office.name,
                address=office.address,
                when=slot_label(row.starts_at, ctx.settings.tz),
            )
        )

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        account = await ctx.current_account()
        try:
            booking = await book_slot(
                ctx.session,
                ctx.identity.id,
                int(form.slots["slot_id"]),
                ctx.now,
                account_id=account.id if account else None,
            )
        except (SlotTaken, SlotNotFound):
            form.slots.pop("slot_id", None)
            again = await self.advance(ctx, form, {})
            return Outcome(replies=(reply(Texts.taken), *again.replies), keep=again.keep)
        return answer(
            reply(
                Texts.booked.format(
                    office=booking.office.name,
                    address=booking.office.address,
                    when=_when(booking, ctx),
                )
            )
        )


FLOWS = (OfficeAppointment(),)
