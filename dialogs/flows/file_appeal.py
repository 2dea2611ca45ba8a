"""file_appeal: category, description, optional contact phone, confirmation;
then the number and the two deadlines in Moscow time."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from dialogs.context import FlowContext
from dialogs.flows.service_common import (
    choice_from_words,
    day_month_time,
    full_date,
    is_other_question,
)
from dialogs.forms import (
    Form,
    Outcome,
    Slot,
    SlotCheck,
    answer,
    invalid,
    payload,
    reply,
    valid,
    yes_no,
)
from dialogs.messages import Button, Reply
from dialogs.state import FormState
from handlers.appeals import (
    MAX_ATTACHMENTS,
    MAX_DESCRIPTION_CHARS,
    InvalidAppeal,
    NewAppeal,
    NewAttachment,
    create_appeal,
)
from handlers.contacts import InvalidPhone, find_phones, normalize_phone
from handlers.pii import redact_text
from nlu.types import ParseResult
from storage.crypto import mask_phone
from storage.models import AppealCategory

SKIP = "skip"
ATTACHMENTS = "attachments"  # a form slot filled by files, never asked for
ATTACHABLE_KINDS = frozenset({"photo", "document"})
MIN_DESCRIPTION_CHARS = 5
# A first message this long is taken as the appeal's description.
DESCRIPTION_WORDS_AT_START = 6


class Texts:
    ask_category = "Подам обращение. Выберите тему:"
    ask_description = (
        "Опишите, пожалуйста, суть обращения одним сообщением: что случилось, "
        "с какого времени, за какой период."
    )
    ask_phone = (
        "Оставьте номер телефона, если удобно, чтобы специалист мог перезвонить. "
        "Или нажмите «Без телефона»."
    )
    skip_phone = "Без телефона"
    bad_category = "Выберите тему кнопкой, пожалуйста."
    too_short = "Опишите чуть подробнее, пожалуйста: хотя бы пару слов."
    too_long = "Слишком длинный текст: уложитесь, пожалуйста, в {limit} символов."
    bad_phone = (
        "Не похоже на номер телефона. Напишите его так: +7 910 123-45-67, "
        "или нажмите «Без телефона»."
    )
    confirm = (
        "Проверьте обращение:\nТема: {category}\nСуть: {description}\nТелефон: {phone}\n\n"
        "Отправляем?"
    )
    no_phone = "не указан"
    confirm_files = "Вложения: {count}\n\n"
    attached = "Файл приложу к обращению (всего файлов: {count})."
    too_many_files = "Больше {limit} файлов к одному обращению не приложить; лишние я не сохранил."
    done = (
        "Обращение зарегистрировано, номер {number}.{account}\n"
        "Предварительное рассмотрение — до {review}, решение — до {decision} (по Москве).\n"
        "Статус можно узнать здесь же: напишите номер обращения."
    )
    done_account = " Лицевой счёт {account}."
    status_button = "Статус обращения"
    failed = "Не удалось зарегистрировать обращение: {reason}. Попробуйте ещё раз."
    cancelled = "Хорошо, обращение не отправляю. Чем ещё могу помочь?"
    resume = "Продолжим оформление обращения?"


# The five topics a customer chooses from (emergencies and call-backs are
# registered by other flows).
CATEGORY_TITLES: dict[AppealCategory, str] = {
    AppealCategory.CHARGES: "Начисления и перерасчёт",
    AppealCategory.HEATING_QUALITY: "Качество отопления",
    AppealCategory.HOT_WATER_QUALITY: "Качество горячей воды",
    AppealCategory.METER: "Счётчик",
    AppealCategory.OTHER: "Другое",
}
_CATEGORY_WORDS: tuple[tuple[str, AppealCategory], ...] = (
    (r"начисл|перерас|квитанц|оплат|сумм|долг", AppealCategory.CHARGES),
    (r"горяч|гвс|вод", AppealCategory.HOT_WATER_QUALITY),
    (r"отопл|батаре|радиатор|тепл", AppealCategory.HEATING_QUALITY),
    (r"сч[её]тчик|прибор", AppealCategory.METER),
    (r"друго|ино[ей]", AppealCategory.OTHER),
)
_SKIP_WORDS = re.compile(r"без\s+телефона|не\s+надо|не\s+нужно|пропуст|нет\b|не\s+хочу", re.I)


def category_from_text(text: str) -> str | None:
    return choice_from_words(text, _CATEGORY_WORDS)


def phone_from_text(text: str) -> str | None:
    if text.startswith("/"):
        return None
    if _SKIP_WORDS.search(text):
        return SKIP
    found = next(find_phones(text), None)
    if found is not None:
        return found.phone
    # Anything with digits is checked by validate() (which explains a bad one).
    return text if re.search(r"\d", text) else None


def phone_slot_from_text(parse: ParseResult, found: dict[str, Any], requested: bool) -> None:
    """A phone in free text is what handlers.contacts.find_phones finds (the
    recognizer redaction uses), not the NLU's own guess; a button's value
    ("skip") stays as it came."""
    entity = parse.entity("phone")
    if "contact_phone" not in found or entity is None or entity.extractor is None:
        return
    phone = next(find_phones(parse.text), None)
    if phone is not None:
        found["contact_phone"] = phone.phone
    elif requested:
        found["contact_phone"] = parse.text.strip()
    else:
        found.pop("contact_phone")


class FileAppeal(Form):
    name = "file_appeal"
    intents = frozenset({"file_appeal"})
    confirm = True
    resume_question = Texts.resume
    cancelled_text = Texts.cancelled
    slots = (
        Slot(
            "category",
            Texts.ask_category,
            buttons=tuple(
                Button(title, payload("file_appeal", category=cat.value))
                for cat, title in CATEGORY_TITLES.items()
            ),
            from_text=category_from_text,
        ),
        Slot("description", Texts.ask_description, free_text=True),
        Slot(
            "contact_phone",
            Texts.ask_phone,
            buttons=(Button(Texts.skip_phone, payload("file_appeal", phone=SKIP)),),
            entity="phone",
            from_text=phone_from_text,
        ),
    )

    async def on_start(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> Outcome | None:
        # "хочу пожаловаться: плохо греют батареи в спальне" already says the
        # topic and the matter: don't make the customer repeat them (the
        # confirmation shows both, so a wrong guess is declined there).
        text = parse.text.strip()
        if text.startswith("/"):
            return None
        category = category_from_text(text)
        if category is not None and category != AppealCategory.OTHER.value:
            form.pending["category"] = category
        if len(text.split()) >= DESCRIPTION_WORDS_AT_START:
            form.pending["description"] = text
        return None

    async def prompt(self, ctx: FlowContext, form: FormState, slot: str) -> Reply:
        asked = await super().prompt(ctx, form, slot)
        return dataclasses.replace(asked, ask_contact=True) if slot == "contact_phone" else asked

    async def extract(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> dict[str, Any]:
        found = await super().extract(ctx, form, parse)
        phone_slot_from_text(parse, found, form.requested_slot == "contact_phone")
        files = _with_new_files(ctx, form)
        if files is not None:
            found[ATTACHMENTS] = files
        # "какой тариф на горячую воду" is a question, not the topic "горячая
        # вода" nor a phone number: the engine lets it interrupt the form.
        if form.requested_slot in {"category", "contact_phone"} and is_other_question(
            parse, self.intents
        ):
            found.pop(form.requested_slot, None)
        return found

    async def validate(self, ctx: FlowContext, form: FormState, slot: str, value: Any) -> SlotCheck:
        if slot == ATTACHMENTS:
            files = list(value)
            if len(files) > MAX_ATTACHMENTS:
                return valid(
                    files[:MAX_ATTACHMENTS],
                    reply(Texts.too_many_files.format(limit=MAX_ATTACHMENTS)),
                )
            return valid(files, reply(Texts.attached.format(count=len(files))))
        if slot == "category":
            try:
                category = AppealCategory(str(value))
            except ValueError:
                return invalid(Texts.bad_category, reprompt=True)
            if category not in CATEGORY_TITLES:
                return invalid(Texts.bad_category, reprompt=True)
            return valid(category.value)
        if slot == "description":
            text = str(value).strip()
            if len(text) < MIN_DESCRIPTION_CHARS:
                return invalid(Texts.too_short)
            if len(text) > MAX_DESCRIPTION_CHARS:
                return invalid(Texts.too_long.format(limit=MAX_DESCRIPTION_CHARS))
            # Kept in the dialog state, echoed in the confirmation, stored in
            # the appeal: never with a phone or SNILS in it (the contact
            # phone has its own, encrypted slot).
            return valid(redact_text(text))
        if slot == "contact_phone":
            if value == SKIP:
                # Filled, but empty: no phone.
                return valid("", phone_masked="")
            try:
                phone = normalize_phone(str(value))
            except InvalidPhone:
                return invalid(Texts.bad_phone)
            # Never in the clear in the dialog state.
            return valid(ctx.vault.encrypt(phone), phone_masked=mask_phone(phone))
        return valid(value)

    async def confirmation(self, ctx: FlowContext, form: FormState) -> Reply:
        # A file sent at "Отправляем?" is kept too (the engine asks again).
        files = _with_new_files(ctx, form)
        if files is not None:
            form.slots[ATTACHMENTS] = files[:MAX_ATTACHMENTS]
        description = str(form.slots["description"])
        if len(description) > 300:
            description = description[:300] + "…"
        text = Texts.confirm.format(
            category=CATEGORY_TITLES[AppealCategory(form.slots["category"])],
            description=description,
            phone=form.slots.get("phone_masked") or Texts.no_phone,
        )
        count = len(form.slots.get(ATTACHMENTS) or ())
        if count:
            head, sep, tail = text.rpartition("\n\n")
            text = head + "\n" + Texts.confirm_files.format(count=count).rstrip("\n") + sep + tail
        return yes_no(text)

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        account = await ctx.current_account()
        encrypted = form.slots.get("contact_phone") or ""
        try:
            info = await create_appeal(
                ctx.session,
                ctx.vault,
                ctx.settings,
                NewAppeal(
                    category=AppealCategory(form.slots["category"]),
                    description=str(form.slots["description"]),
                    account_id=account.id if account else None,
                    conversation_id=ctx.conversation.id,
                    channel=ctx.channel,
                    address=account.address if account else None,
                    contact_phone=ctx.vault.decrypt(encrypted) if encrypted else None,
                    attachments=tuple(
                        NewAttachment(
                            kind=str(f["kind"]),
                            file_id=str(f["file_id"]),
                            mime_type=f.get("mime_type"),
                        )
                        for f in form.slots.get(ATTACHMENTS) or ()
                    ),
                ),
                ctx.now,
            )
        except InvalidAppeal as exc:
            return answer(reply(Texts.failed.format(reason=exc)))
        tz = ctx.settings.tz
        text = Texts.done.format(
            number=info.number,
            account=Texts.done_account.format(account=account.number) if account else "",
            review=day_month_time(info.review_due_at, tz),
            decision=full_date(info.decision_due_at, tz),
        )
        return answer(
            reply(
                text,
                Button(Texts.status_button, payload("appeal_status", appeal_number=info.number)),
            )
        )


def _with_new_files(ctx: FlowContext, form: FormState) -> list[dict[str, Any]] | None:
    """The form's files plus this message's photos and documents; None if it
    brought none. A file already kept (a redelivery) is not added twice."""
    kept: list[dict[str, Any]] = list(form.slots.get(ATTACHMENTS) or ())
    known = {f["file_id"] for f in kept}
    new = [
        {"kind": a.kind, "file_id": a.file_id, "mime_type": a.mime_type}
        for a in ctx.attachments
        if a.kind in ATTACHABLE_KINDS and a.file_id and a.file_id not in known
    ]
    return kept + new if new else None


FLOWS = (FileAppeal(),)
