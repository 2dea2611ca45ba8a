"""check_balance and pay_bill: the balance, charges by service, the last
payment, and how to pay."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from dialogs import format as fmt
from dialogs.context import FlowContext
from dialogs.flows.debt_certificate import DebtCertificate
from dialogs.forms import Form, Outcome, Slot, answer, payload, reply
from dialogs.messages import Button
from dialogs.state import FormState
from handlers import billing, payments
from nlu.types import ParseResult
from storage.models import Service


class Texts:
    debt = "По счёту {account} задолженность {amount}."
    overpaid = "По счёту {account} переплата {amount}, она уйдёт в счёт следующих начислений."
    settled = "По счёту {account} задолженности нет."
    charges_header = "Начисления за {month}:"
    charge_line = "• {service}: {amount}"
    charge_volume = " ({volume} × {tariff})"
    charges_total = "Итого за месяц: {amount}."
    no_charges_month = "За {month} начислений по счёту нет."
    no_charges = "Начислений по счёту пока нет."
    last_payment = "Последний платёж: {amount} от {date} ({method})."
    no_payments = "Платежей по счёту пока не было."
    services: ClassVar[dict[Service, str]] = {
        Service.HEATING: "отопление",
        Service.HOT_WATER: "горячая вода",
        Service.OTHER: "прочее",
    }
    units: ClassVar[dict[Service, str]] = {
        Service.HEATING: "Гкал",
        Service.HOT_WATER: "м³",
        Service.OTHER: "",
    }
    pay_button = "Оплатить"
    certificate_button = "Заказать справку об отсутствии задолженности"
    pay_debt = "Оплатить {amount} по счёту {account} можно по ссылке, сумма уже подставлена:\n{url}"
    pay_nothing = (
        "Задолженности по счёту {account} нет. Если хотите внести аванс, "
        "вот ссылка на оплату:\n{url}"
    )
    bank = (
        "Для оплаты в банке или через приложение — реквизиты:\n{details}\n"
        "Назначение платежа: оплата по лицевому счёту {account}."
    )


_MONTH_STEMS = (
    ("январ", 1), ("феврал", 2), ("март", 3), ("апрел", 4), ("ма", 5), ("июн", 6),
    ("июл", 7), ("август", 8), ("сентябр", 9), ("октябр", 10), ("ноябр", 11), ("декабр", 12),
)  # fmt: skip
_MONTH_WORD = re.compile(r"\b(?:за|в)\s+([а-яё]+)", re.IGNORECASE)
_ISO_MONTH = re.compile(r"^(?:\d{4}|-)-(\d{2})")


def month_from(parse: ParseResult) -> int | None:
    """The month a message names ("за март", a ``date`` entity), 1-12."""
    entity = parse.entity("date")
    if entity is not None:
        match = _ISO_MONTH.match(str(entity.value))
        if match:
            return int(match.group(1))
    for word in _MONTH_WORD.findall(parse.text.lower()):
        for stem, number in _MONTH_STEMS:
            if word.startswith(stem) and (stem != "ма" or word in ("май", "мая", "мае")):
                return number
    return None


class CheckBalance(Form):
    name = "check_balance"
    intents = frozenset({"check_balance"})
    requires_account = True
    resume_question = "Вернёмся к балансу?"
    # The month is optional: taken when named, never asked for.
    slots = (Slot("month", ""),)

    async def required_slots(self, ctx: FlowContext, form: FormState) -> list[str]:
        return []

    async def extract(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> dict[str, Any]:
        month = month_from(parse)
        return {"month": month} if month else {}

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        account = await ctx.current_account()
        assert account is not None
        month = form.slots.get("month")
        info = await billing.account_summary(
            ctx.session, account, ctx.now, ctx.settings.tz, int(month) if month else None
        )
        lines: list[str] = []
        if info.balance > 0:
            lines.append(Texts.debt.format(account=account.number, amount=fmt.money(info.balance)))
        elif info.balance < 0:
            lines.append(
                Texts.overpaid.format(account=account.number, amount=fmt.money(-info.balance))
            )
        else:
            lines.append(Texts.settled.format(account=account.number))
        if info.period is None:
            if month:
                lines.append(
                    Texts.no_charges_month.format(month=fmt.MONTHS_NOMINATIVE[int(month) - 1])
                )
            else:
                lines.append(Texts.no_charges)
        else:
            lines.append("")
            lines.append(Texts.charges_header.format(month=fmt.month_year(info.period)))
            for line in info.charges:
                text = Texts.charge_line.format(
                    service=Texts.services[line.service], amount=fmt.money(line.amount)
                )
                if line.volume is not None and line.tariff is not None:
                    text += Texts.charge_volume.format(
                        volume=fmt.volume(line.volume, Texts.units[line.service]).rstrip(),
                        tariff=fmt.money(line.tariff),
                    )
                lines.append(text)
            lines.append(Texts.charges_total.format(amount=fmt.money(info.charges_total)))
        lines.append("")
        if info.last_payment is None:
            lines.append(Texts.no_payments)
        else:
            p = info.last_payment
            lines.append(
                Texts.last_payment.format(
                    amount=fmt.money(p.amount),
                    date=fmt.short_date(p.paid_at, ctx.settings.tz),
                    method=p.method,
                )
            )
        if info.balance > 0:
            buttons: tuple[Button, ...] = (Button(Texts.pay_button, payload("pay_bill")),)
        else:
            start = DebtCertificate.start_payload(account_number=account.number)
            buttons = (Button(Texts.certificate_button, start),)
        return answer(reply("\n".join(lines), *buttons))


class PayBill(Form):
    name = "pay_bill"
    intents = frozenset({"pay_bill"})
    requires_account = True
    resume_question = "Вернёмся к оплате?"

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        account = await ctx.current_account()
        assert account is not None
        debt = max(await billing.balance(ctx.session, account), billing.ZERO)
        offer = payments.payment_offer(ctx.settings, account.number, debt)
        if debt > 0:
            text = Texts.pay_debt.format(
                amount=fmt.money(debt), account=account.number, url=offer.url
            )
        else:
            text = Texts.pay_nothing.format(account=account.number, url=offer.url)
        bank = Texts.bank.format(details=offer.bank_details, account=account.number)
        return answer(reply(text), reply(bank))


FLOWS = (CheckBalance(), PayBill())
