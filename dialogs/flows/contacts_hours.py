"""contacts_hours: the hotline, contact-center hours and the offices."""

from __future__ import annotations

from dialogs.context import FlowContext
from dialogs.format import slot_label, weekday_range
from dialogs.forms import Flow, Outcome, answer, payload, reply
from dialogs.messages import Button
from dialogs.state import DialogState
from handlers.contacts import contact_info
from nlu.types import ParseResult


class Texts:
    hotline = "Горячая линия: {phone}."
    hours = "Контакт-центр работает {days} с {open}:00 до {close}:00 по Москве{now}."
    open_now = ", сейчас открыт"
    closed_now = ", сейчас закрыт (откроется {when}), а я отвечу на всё, что смогу"
    offices = "Офисы обслуживания:"
    office = "• {name}: {address}, тел. {phone}, {hours}"
    chat = "Здесь, в чате, я на связи круглосуточно."
    book_button = "Записаться на приём"


class ContactsHours(Flow):
    name = "contacts_hours"
    intents = frozenset({"contacts_hours"})

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        info = await contact_info(ctx.session, ctx.settings, ctx.now)
        lines = [
            Texts.hotline.format(phone=info.hotline_phone),
            Texts.hours.format(
                days=weekday_range(info.days),
                open=info.open_hour,
                close=info.close_hour,
                now=Texts.open_now
                if info.is_open_now
                else Texts.closed_now.format(when=slot_label(info.next_open_at, ctx.settings.tz)),
            ),
        ]
        if info.offices:
            lines.append(Texts.offices)
            lines.extend(
                Texts.office.format(name=o.name, address=o.address, phone=o.phone, hours=o.hours)
                for o in info.offices
            )
        lines.append(Texts.chat)
        buttons = (
            (Button(Texts.book_button, payload("office_appointment")),) if info.offices else ()
        )
        return answer(reply("\n".join(lines), *buttons))


FLOWS = (ContactsHours(),)
