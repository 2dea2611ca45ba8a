"""appeal_status: one appeal by its number, or the list of the customer's
open appeals with status and due date."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from dialogs.context import FlowContext
from dialogs.format import day_month_time, short_date
from dialogs.forms import Form, Outcome, Slot, Validated, answer, payload, refuse, reply
from dialogs.messages import Button
from dialogs.state import FormState
from handlers.accounts import visible_account_ids
from handlers.appeals import (
    AppealInfo,
    AppealNotFound,
    InvalidAppealNumber,
    get_appeal,
    list_open_appeals,
    normalize_appeal_number,
)
from nlu.types import ParseResult
from storage.models import AppealStatus


class Texts:
    ask_number = (
        "Напишите номер обращения, например A-2026-000123. "
        "Если привязать лицевой счёт, покажу все ваши открытые обращения."
    )
    link_button = "Привязать лицевой счёт"
    bad_number = "Номер обращения выглядит так: A-2026-000123. Проверьте, пожалуйста."
    not_found_unlinked = (
        "Среди обращений из этого чата {number} нет. Если оно подано по вашему лицевому "
        "счёту, привяжите счёт — и я покажу статус."
    )
    not_found = (
        "Обращение {number} не нашлось среди ваших. Проверьте номер; обращения других "
        "заявителей я не показываю."
    )
    one = "Обращение {number} ({category}): {status}."
    review_due = "Предварительное рассмотрение — до {review}, решение — до {decision}."
    decision_due = "Решение — до {decision}."
    overdue = "Срок решения ({decision}) прошёл: передам вопрос специалисту, если нужно."
    list_header = "Ваши открытые обращения:"
    list_item = "• {number} — {category}, {status}, решение до {decision}"
    none_open = "Открытых обращений нет. Подать новое?"
    file_button = "Подать обращение"
    operator_button = "Позвать оператора"
    resume = "Продолжим поиск обращения?"
    # A status change told to the customer (bot/notices.py).
    notice = "Обращение {number}: новый статус — «{status}»."
    notice_comment = "Комментарий: {comment}"
    # The comment of the move the review deadline makes on its own.
    auto_review_comment = "Обращение взято в работу."


STATUS_TITLES: dict[AppealStatus, str] = {
    AppealStatus.REGISTERED: "зарегистрировано",
    AppealStatus.IN_REVIEW: "на рассмотрении",
    AppealStatus.ANSWERED: "дан ответ",
    AppealStatus.RESOLVED: "решено",
    AppealStatus.REJECTED: "отклонено",
    AppealStatus.CLOSED: "закрыто",
}
CATEGORY_TITLES: dict[str, str] = {
    "charges": "начисления и перерасчёт",
    "heating_quality": "качество отопления",
    "hot_water_quality": "качество горячей воды",
    "meter": "счётчик",
    "emergency": "аварийная заявка",
    "callback": "обратный звонок",
    "debt_certificate": "справка об отсутствии задолженности",
    "other": "другое",
}


def number_from_text(text: str) -> str | None:
    if text.startswith("/"):
        return None
    try:
        return normalize_appeal_number(text)
    except InvalidAppealNumber:
        return None


def attempted_number(text: str) -> str | None:
    """When asked for the number, anything with digits is an attempt at it:
    validate() explains the format rather than the bot wandering off."""
    if text.startswith("/"):
        return None
    return number_in_text(text) or (text.strip() if re.search(r"\d", text) else None)


def number_in_text(text: str) -> str | None:
    for candidate in (text, *text.replace(",", " ").split()):
        number = number_from_text(candidate.strip(".?!№#"))
        if number:
            return number
    return None


def number_in(parse: ParseResult) -> str | None:
    """An appeal number in the message: the NLU entity, the text or a word of it."""
    entity = parse.entity("appeal_number")
    if entity is not None and entity.value:
        return str(entity.value)
    return number_in_text(parse.text)


def describe(info: AppealInfo, ctx: FlowContext) -> str:
    tz = ctx.settings.tz
    text = Texts.one.format(
        number=info.number,
        category=CATEGORY_TITLES.get(info.category.value, info.category.value),
        status=STATUS_TITLES[info.status],
    )
    if not info.status.is_open:
        return text
    decision = short_date(info.decision_due_at, tz)
    if info.decision_due_at < ctx.now:
        return f"{text}\n{Texts.overdue.format(decision=decision)}"
    if info.status is AppealStatus.REGISTERED and info.review_due_at > ctx.now:
        due = Texts.review_due.format(
            review=day_month_time(info.review_due_at, tz), decision=decision
        )
    else:
        due = Texts.decision_due.format(decision=decision)
    return f"{text}\n{due}"


def status_notice(
    number: str,
    status: AppealStatus,
    comment: str | None,
    decision_due_at: datetime,
    tz: ZoneInfo,
) -> str:
    """The notice of a status change, in the words the status answer uses."""
    lines = [Texts.notice.format(number=number, status=STATUS_TITLES[status])]
    if comment:
        lines.append(Texts.notice_comment.format(comment=comment))
    if status.is_open:
        lines.append(Texts.decision_due.format(decision=short_date(decision_due_at, tz)))
    return "\n".join(lines)


class AppealStatusForm(Form):
    name = "appeal_status"
    intents = frozenset({"appeal_status"})
    resume_question = Texts.resume
    slots = (
        Slot(
            "appeal_number",
            Texts.ask_number,
            buttons=(Button(Texts.link_button, payload("link_account")),),
            from_text=attempted_number,
        ),
    )

    async def on_start(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> Outcome | None:
        if number_in(parse) is not None:
            return None  # answered by number
        account_ids = await visible_account_ids(ctx.session, ctx.identity)
        if not account_ids:
            # Appeals filed in this chat before linking are the customer's too.
            filed_here = await list_open_appeals(ctx.session, [], ctx.conversation.id)
            if not filed_here:
                return None  # ask for the number
            return self._list(ctx, filed_here)
        return self._list(
            ctx, await list_open_appeals(ctx.session, account_ids, ctx.conversation.id)
        )

    def _list(self, ctx: FlowContext, appeals: list[AppealInfo]) -> Outcome:
        if not appeals:
            return answer(reply(Texts.none_open, Button(Texts.file_button, payload("file_appeal"))))
        lines = [Texts.list_header]
        for info in appeals:
            lines.append(
                Texts.list_item.format(
                    number=info.number,
                    category=CATEGORY_TITLES.get(info.category.value, info.category.value),
                    status=STATUS_TITLES[info.status],
                    decision=short_date(info.decision_due_at, ctx.settings.tz),
                )
            )
        return answer(reply("\n".join(lines)))

    async def extract(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> dict[str, Any]:
        found = await super().extract(ctx, form, parse)
        number = number_in(parse)
        if "appeal_number" not in found and number is not None:
            # "статус обращения A-2026-000002": the number inside a sentence.
            found["appeal_number"] = number
        return found

    async def validate_appeal_number(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        try:
            return {"appeal_number": normalize_appeal_number(str(value))}
        except InvalidAppealNumber:
            return refuse(Texts.bad_number)

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        number = str(form.slots["appeal_number"])
        try:
            info = await get_appeal(
                ctx.session,
                number,
                await visible_account_ids(ctx.session, ctx.identity),
                ctx.conversation.id,
            )
        except AppealNotFound:
            if await ctx.current_account() is None:
                # It may well be the customer's, filed by their account: linking shows it.
                return answer(
                    reply(
                        Texts.not_found_unlinked.format(number=number),
                        Button(Texts.link_button, payload("link_account")),
                        Button(Texts.operator_button, payload("human_handoff")),
                    )
                )
            return answer(
                reply(
                    Texts.not_found.format(number=number),
                    Button(Texts.operator_button, payload("human_handoff")),
                )
            )
        return answer(reply(describe(info, ctx)))


FLOWS = (AppealStatusForm(),)
