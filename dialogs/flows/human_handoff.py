"""human_handoff: put the conversation in the operators' queue.

The pipeline writes the queue entry (Turn.handoff) in the turn's transaction;
this flow words the answer and, out of hours, registers a call-back request.
An emergency (the chat reported an outage, or the message speaks of a leak
or no heating) reaches the queue at any hour, with the highest priority.
"""

from __future__ import annotations

import re
from typing import Final

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
    emergency_queued = (
        "Контакт-центр сейчас закрыт, но аварийные обращения мы принимаем круглосуточно: "
        "передаю разговор дежурному оператору, он ответит здесь же. "
        "Если течёт вода или есть угроза жизни, звоните сразу: {phone}."
    )


REASON_CUSTOMER = "customer_request"
REASON_EMERGENCY = "emergency"
_EMERGENCY_WORDS: Final = re.compile(
    r"авари|теч[ьеёи]|прорв|прорыв|затоп|залив|кипят|нет\s+отоплени|нет\s+горяч|"
    r"холодн\w*\s+батар|батаре\w*\s+холодн",
    re.IGNORECASE,
)


OUTAGE_FLOW: Final = "report_outage"


def is_emergency(state: DialogState, text: str) -> bool:
    """The chat is about an outage or an accident: the queue takes it at any hour.

    A form in progress says what the chat is about (an answer "отопление" to
    a reading form reads as report_outage); else the message before this one.
    """
    if _EMERGENCY_WORDS.search(text):
        return True
    forms = [f.name for f in (state.active, *state.suspended) if f is not None]
    if forms:
        return OUTAGE_FLOW in forms
    return len(state.recent_intents) >= 2 and state.recent_intents[-2] == OUTAGE_FLOW


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
        text = "" if parse.text.startswith("/") else parse.text
        if is_emergency(state, text):
            request = HandoffRequest(
                reason=REASON_EMERGENCY, summary=summary, priority=handoff.EMERGENCY_PRIORITY
            )
        else:
            request = HandoffRequest(reason=REASON_CUSTOMER, summary=summary)
        settings = ctx.settings
        if hours.is_open(settings, ctx.now):
            return answer(reply(Texts.queued), handoff=request)
        if request.priority >= handoff.EMERGENCY_PRIORITY:
            # Out of hours too: the on-duty operator answers an emergency.
            return answer(
                reply(Texts.emergency_queued.format(phone=settings.hotline_phone)), handoff=request
            )
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
