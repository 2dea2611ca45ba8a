"""debt_certificate: order a no-debt certificate (справка об отсутствии
задолженности) for an account and a period, by e-mail or to collect in an
office.

The worked example of dialogs/FRAMEWORK.md: slots, one validator per slot,
texts, a submit step through handlers/, registered in dialogs/flows/__init__.py.
There is no intent for it (the intents are a fixed contract): it starts from
the button check_balance offers when the account owes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from dialogs import format as fmt
from dialogs.context import FlowContext
from dialogs.forms import Form, Outcome, Slot, Validated, answer, payload, refuse, reply, yes_no
from dialogs.messages import Button, Reply
from dialogs.state import FormState
from handlers import certificates
from handlers.accounts import linked_accounts
from handlers.certificates import CertificateRequest, Delivery, HasDebt
from handlers.emails import InvalidEmail, find_emails, mask_email, normalize_email
from nlu.types import ParseResult
from storage.models import Account

TODAY = "today"
LAST_12_MONTHS = "12m"
# Certificates for whole years go back this many years before the current one.
YEARS_BACK = 3


class Texts:
    has_debt = (
        "По счёту {account} задолженность {amount}, поэтому справку об отсутствии "
        "задолженности выдать пока нельзя. Оплатить можно здесь же."
    )
    pay_button = "Оплатить"
    not_linked = "Справку выдаём только по счёту, привязанному к этому чату."
    ask_period = "За какой период нужна справка?"
    period_today = "На сегодня"
    period_12m = "За последние 12 месяцев"
    period_year = "За {year} год"
    # The period inside a sentence: "справку ... на 24.11.2026".
    label_today = "на {date}"
    label_12m = "за последние 12 месяцев"
    label_year = "за {year} год"
    bad_period = (
        "Справку можно заказать на сегодня, за последние 12 месяцев или за год "
        "с {first} по {last}. Выберите, пожалуйста:"
    )
    ask_delivery = "Как удобнее получить справку?"
    choose_delivery = "Выберите, пожалуйста, кнопкой."
    by_email = "По e-mail"
    in_office = "Заберу в офисе"
    ask_email = "Напишите адрес электронной почты, на который прислать справку."
    bad_email = "Не похоже на адрес почты: нужен адрес с @, например на mail.ru или yandex.ru."
    confirm = "Заказать справку об отсутствии задолженности по счёту {account} {period}? {delivery}"
    confirm_email = "Пришлём на {email}."
    confirm_office = "Заберёте в офисе обслуживания."
    done = (
        "Заказ справки зарегистрирован, номер {number}. Справка будет готова до {date}: {delivery}"
    )
    done_email = "пришлём её на {email}."
    done_office = "заберите её в любом офисе обслуживания, с паспортом."
    offices_button = "Адреса офисов"
    cancelled = "Хорошо, справку не заказываю. Чем ещё могу помочь?"
    resume = "Продолжим заказ справки?"
    # For the back office, stored in the request (an appeal).
    description = "Справка об отсутствии задолженности {period}. Получение: {delivery}."
    description_email = "по e-mail {email}"
    description_office = "в офисе"


_TODAY_WORDS = re.compile(r"сегодн|текущ|сейчас|на дату", re.I)
_LAST_12_WORDS = re.compile(r"12|последн|за год\b", re.I)
_YEAR = re.compile(r"\b(20\d\d)\b")
_EMAIL_WORDS = re.compile(r"e-?mail|почт|мейл|мэйл|электрон", re.I)
# "в офисе", not any "офис": "где ваш офис" is a question about the offices.
_OFFICE_WORDS = re.compile(r"в\s+офис|забер|сам[аи]?\b|лично", re.I)


def period_from_text(text: str) -> str | None:
    if text.startswith("/"):
        return None
    year = _YEAR.search(text)
    if year is not None:
        return year.group(1)
    if _TODAY_WORDS.search(text):
        return TODAY
    if _LAST_12_WORDS.search(text):
        return LAST_12_MONTHS
    return None


def delivery_from_text(text: str) -> str | None:
    if text.startswith("/"):
        return None
    if _EMAIL_WORDS.search(text) or "@" in text:
        return Delivery.EMAIL.value
    if _OFFICE_WORDS.search(text):
        return Delivery.OFFICE.value
    return None


def email_from_text(text: str) -> str | None:
    found = next(find_emails(text), None)
    if found is not None:
        return found.email
    # A try at an address: validate_email() says what is wrong with it.
    return text.strip() if "@" in text and not text.startswith("/") else None


def period_label(period: str, now: datetime, ctx: FlowContext) -> str:
    """``на 24.11.2026``, ``за последние 12 месяцев``, ``за 2025 год``."""
    if period == TODAY:
        return Texts.label_today.format(date=fmt.short_date(now, ctx.settings.tz))
    if period == LAST_12_MONTHS:
        return Texts.label_12m
    return Texts.label_year.format(year=period)


class DebtCertificate(Form):
    name = "debt_certificate"
    button_intent = "check_balance"  # counted with the balance questions it follows
    requires_account = True
    confirm = True
    resume_question = Texts.resume
    cancelled_text = Texts.cancelled
    slots = (
        # The current account (prefill), or the one the starting button names.
        Slot("account", Texts.not_linked, entity="account_number"),
        Slot("period", Texts.ask_period, from_text=period_from_text, loose=True),
        Slot("delivery", Texts.ask_delivery, from_text=delivery_from_text, loose=True),
        Slot("email", Texts.ask_email, from_text=email_from_text),
    )

    # ----- which slots, and where values come from --------------------------

    async def required_slots(self, ctx: FlowContext, form: FormState) -> list[str]:
        wanted = ["account", "period", "delivery"]
        if form.slots.get("delivery") == Delivery.EMAIL.value:
            wanted.append("email")
        return wanted

    async def precondition(self, ctx: FlowContext, form: FormState) -> Outcome | None:
        account = await ctx.current_account()
        assert account is not None  # requires_account
        owed = await certificates.debt(ctx.session, account)
        return answer(_has_debt(account, owed)) if owed > 0 else None

    async def prefill(self, ctx: FlowContext, form: FormState) -> Mapping[str, Any]:
        account = await ctx.current_account()
        if form.has("account") or account is None:
            return {}
        return {"account": account.number}

    async def extract(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> dict[str, Any]:
        found = await super().extract(ctx, form, parse)
        if form.requested_slot == "delivery" and found.get("delivery") == Delivery.EMAIL.value:
            # "на почту ivanov@mail.ru": the address too.
            email = next(find_emails(parse.text), None)
            if email is not None:
                found["email"] = email.email
        return found

    # ----- one validator per slot: they read, never write --------------------

    async def validate_account(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        number = str(value).strip()
        linked = await linked_accounts(ctx.session, ctx.identity.id)
        account = next((a for a in linked if a.number == number), None)
        if account is None:
            return refuse(Texts.not_linked)
        owed = await certificates.debt(ctx.session, account)
        if owed > 0:
            debt = _has_debt(account, owed)
            return refuse(debt.text, *debt.buttons)
        return {"account": account.number}

    async def validate_period(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        period = str(value)
        if period in {TODAY, LAST_12_MONTHS}:
            return {"period": period}
        first, last = self._years(ctx)
        if period.isdigit() and first <= int(period) <= last:
            return {"period": period}
        return refuse(Texts.bad_period.format(first=first, last=last), reprompt=True)

    async def validate_delivery(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        try:
            return {"delivery": Delivery(str(value)).value}
        except ValueError:
            return refuse(Texts.choose_delivery, reprompt=True)

    async def validate_email(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        try:
            email = normalize_email(str(value))
        except InvalidEmail:
            return refuse(Texts.bad_email)
        # Personal data: encrypted in the dialog state, shown masked.
        return {"email": ctx.vault.encrypt(email), "email_masked": mask_email(email)}

    # ----- prompts, confirmation, submit ------------------------------------

    def _years(self, ctx: FlowContext) -> tuple[int, int]:
        last = ctx.local_now.year
        return last - YEARS_BACK, last

    async def prompt(self, ctx: FlowContext, form: FormState, slot: str) -> Reply:
        if slot == "period":
            last_year = ctx.local_now.year - 1
            return reply(
                Texts.ask_period,
                Button(Texts.period_today, self.start_payload(period=TODAY)),
                Button(Texts.period_12m, self.start_payload(period=LAST_12_MONTHS)),
                Button(
                    Texts.period_year.format(year=last_year),
                    self.start_payload(period=str(last_year)),
                ),
            )
        if slot == "delivery":
            return reply(
                Texts.ask_delivery,
                Button(Texts.by_email, self.start_payload(delivery=Delivery.EMAIL.value)),
                Button(Texts.in_office, self.start_payload(delivery=Delivery.OFFICE.value)),
            )
        return await super().prompt(ctx, form, slot)

    async def confirmation(self, ctx: FlowContext, form: FormState) -> Reply:
        by_email = form.slots["delivery"] == Delivery.EMAIL.value
        delivery = (
            Texts.confirm_email.format(email=form.slots["email_masked"])
            if by_email
            else Texts.confirm_office
        )
        return yes_no(
            Texts.confirm.format(
                account=form.slots["account"],
                period=period_label(str(form.slots["period"]), ctx.now, ctx),
                delivery=delivery,
            )
        )

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        linked = await linked_accounts(ctx.session, ctx.identity.id)
        account = next((a for a in linked if a.number == form.slots["account"]), None)
        if account is None:  # unlinked since it was checked
            return answer(reply(Texts.not_linked))
        delivery = Delivery(form.slots["delivery"])
        by_email = delivery is Delivery.EMAIL
        masked = str(form.slots.get("email_masked") or "")
        period = period_label(str(form.slots["period"]), ctx.now, ctx)
        try:
            info = await certificates.request_debt_certificate(
                ctx.session,
                ctx.vault,
                ctx.settings,
                CertificateRequest(
                    account=account,
                    description=Texts.description.format(
                        period=period,
                        delivery=Texts.description_email.format(email=masked)
                        if by_email
                        else Texts.description_office,
                    ),
                    delivery=delivery,
                    email=ctx.vault.decrypt(str(form.slots["email"])) if by_email else None,
                    conversation_id=ctx.conversation.id,
                    channel=ctx.channel,
                ),
                ctx.now,
            )
        except HasDebt as exc:  # a charge arrived since the account was checked
            return answer(_has_debt(account, exc.debt))
        text = Texts.done.format(
            number=info.number,
            date=fmt.short_date(info.decision_due_at, ctx.settings.tz),
            delivery=Texts.done_email.format(email=masked) if by_email else Texts.done_office,
        )
        buttons = () if by_email else (Button(Texts.offices_button, payload("contacts_hours")),)
        return answer(reply(text, *buttons))


def _has_debt(account: Account, owed: Decimal) -> Reply:
    return reply(
        Texts.has_debt.format(account=account.number, amount=fmt.money(owed)),
        Button(Texts.pay_button, payload("pay_bill")),
    )


FLOWS = (DebtCertificate(),)
