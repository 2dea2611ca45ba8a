"""human_handoff: put the conversation in the operators' queue.

The pipeline writes the queue entry (Turn.handoff) in the turn's transaction;
this flow words the answer and, out of hours, registers a call-back request.
"""

from __future__ import annotations

from dialogs import format as fmt
from dialogs.context import FlowContext
from dialogs.forms import Flow, Outcome, answer, reply
from dialogs.messages import HandoffRequest
from dialogs.state import DialogState
from handlers import handoff, hours
from handlers.snils import redact_snils
from nlu.types import ParseResult


class Texts:
    queued = (
        "Передаю разговор оператору. Он ответит здесь же, в этом чате, "
        "обычно в течение нескольких минут."
    )
    closed = (
        "Сейчас операторы не работают: контакт-центр открыт пн–сб с {open}:00 до {close}:00 "
        "по московскому времени. Я передал ваш вопрос, оператор ответит {when}."
    )
    meanwhile = "А пока я могу помочь с показаниями, балансом, оплатой и обращениями."
    callback = "Заявка на обратный звонок зарегистрирована под номером {number}."
    emergency = (
        "Если у вас авария — нет отопления, течь или прорыв трубы — напишите об этом: "
        "такие заявки мы принимаем круглосуточно. Телефон горячей линии: {phone}."
    )
    callback_description = "Клиент просит связаться с ним (обращение вне часов работы).\n{summary}"


REASON_CUSTOMER = "customer_request"


class HumanHandoff(Flow):
    name = "human_handoff"
    intents = frozenset({"human_handoff"})

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        account = await ctx.current_account()
        messages = await handoff.last_customer_messages(ctx.session, ctx.conversation.id)
        if not parse.text.startswith("/"):
            messages.append(redact_snils(parse.text))
        summary = handoff.build_summary(
            state.recent_intents, account.number if account else None, messages
        )
        request = HandoffRequest(reason=REASON_CUSTOMER, summary=summary)
        settings = ctx.settings
        if hours.is_open(settings, ctx.now):
            return answer(reply(Texts.queued), handoff=request)
        opening = hours.next_opening(settings, ctx.now)
        info = await handoff.register_callback(
            ctx.session,
            ctx.vault,
            settings,
            ctx.conversation,
            account.id if account else None,
            Texts.callback_description.format(summary=summary),
            ctx.now,
        )
        text = Texts.closed.format(
            open=settings.contact_center_open_hour,
            close=settings.contact_center_close_hour,
            when=fmt.when(opening, ctx.now, settings.tz),
        )
        return answer(
            reply(f"{text} {Texts.callback.format(number=info.number)}"),
            reply(Texts.emergency.format(phone=settings.hotline_phone)),
            reply(Texts.meanwhile),
            handoff=request,
        )


FLOWS = (HumanHandoff(),)
