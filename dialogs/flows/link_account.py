"""link_account: account number + SNILS, in one message or two; switching
between linked accounts.

The SNILS checksum is checked before any lookup. Only the SNILS's keyed hash
is kept in the form's slots; the digits are never stored, logged or echoed.
"""

from __future__ import annotations

import re
from typing import Any

from dialogs import format as fmt
from dialogs.context import FlowContext
from dialogs.forms import (
    Form,
    Outcome,
    Slot,
    SlotCheck,
    answer,
    invalid,
    payload,
    reply,
    stop,
    valid,
)
from dialogs.messages import Button, Reply
from dialogs.state import FormState
from handlers import accounts
from handlers.accounts import LinkStatus
from handlers.contacts import find_phones
from handlers.snils import find_snils, is_valid_snils
from nlu.types import ParseResult


class Texts:
    ask_both = (
        "Чтобы привязать лицевой счёт, напишите его номер (он есть в квитанции) "
        "и СНИЛС владельца счёта. Можно одним сообщением, например: "
        "1002003001 123-456-789 01"
    )
    ask_account = "Напишите номер лицевого счёта: от 8 до 12 цифр, он есть в квитанции."
    ask_snils = "Теперь напишите СНИЛС владельца счёта, например 123-456-789 01."
    choose = (
        "Сейчас выбран счёт {current}. Можно переключиться на другой привязанный счёт "
        "или привязать ещё один."
    )
    switch_button = "Счёт {number}"
    add_button = "Привязать ещё счёт"
    bad_account = "Номер лицевого счёта состоит из 8–12 цифр. Проверьте его, пожалуйста."
    bad_snils_length = "В СНИЛС 11 цифр, например 123-456-789 01. Проверьте номер, пожалуйста."
    bad_snils_checksum = (
        "Похоже, в СНИЛС опечатка: последние две цифры — контрольное число, и оно не "
        "сходится с первыми девятью. Проверьте номер и напишите его ещё раз."
    )
    linked = "Готово, счёт {number} привязан к этому чату. Адрес: {address}."
    already = "Этот счёт уже привязан. Теперь работаем со счётом {number}, {address}."
    switched = "Переключился на счёт {number}, {address}."
    no_match = (
        "Не нашёл счёт с таким номером и СНИЛС. Проверьте данные и напишите номер счёта "
        "и СНИЛС ещё раз. Осталось попыток: {left}."
    )
    locked = (
        "Слишком много неудачных попыток. Привязать счёт можно будет {when} "
        "(по московскому времени). Если нужна помощь, позовите оператора."
    )
    cancelled = "Хорошо, привязку счёта отменил. Чем ещё могу помочь?"


_ACCOUNT = re.compile(r"(?<!\d)\d{8,12}(?!\d)")


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value))


class LinkAccount(Form):
    name = "link_account"
    intents = frozenset({"link_account"})
    resume_question = "Продолжим привязку лицевого счёта?"
    cancelled_text = Texts.cancelled
    slots = (
        Slot("account_number", Texts.ask_account),
        Slot("snils", Texts.ask_snils),
    )

    async def on_start(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> Outcome | None:
        until = accounts.locked_until(ctx.identity, ctx.now)
        if until is not None:
            return answer(_locked(ctx, until))
        return None

    async def extract(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> dict[str, Any]:
        text = parse.text
        found: dict[str, Any] = {}
        action = parse.entity("action")
        if action is not None and action.value == "add":
            found["adding"] = True
        # SNILS: handlers.snils.find_snils is the one recognizer (redaction
        # removes exactly what it finds); the NLU's own guess from the text is
        # not used. A formatted match is a SNILS; a plain run of 11 digits is
        # one when the SNILS is what was asked for, or when its checksum holds.
        snils_span: tuple[int, int] | None = None
        entity = parse.entity("snils")
        for match in find_snils(text):
            if (
                match.formatted
                or form.requested_slot == "snils"
                or form.has("account_number")
                or is_valid_snils(match.digits)
                or (entity is not None and _digits(entity.value) == match.digits)
            ):
                found["snils"] = match.digits
                snils_span = (match.start, match.end)
                break
        if (
            "snils" not in found
            and entity is not None
            and entity.extractor is None  # a button's payload, not the text
            and len(_digits(entity.value)) == 11
        ):
            found["snils"] = _digits(entity.value)
        if "snils" not in found and form.requested_slot == "snils" and _digits(text):
            # A mistyped SNILS (too short or too long): say so, not "not understood".
            found["snils"] = _digits(text)
            return found
        # The account number: a payload/NLU entity, else 8-12 digits elsewhere.
        acc_entity = parse.entity("account_number")
        if (
            acc_entity is not None
            and snils_span is not None
            and acc_entity.extractor is not None
            and acc_entity.start < snils_span[1]
            and acc_entity.end > snils_span[0]
        ):
            # The NLU read part of the SNILS ("000 00000000") as an account.
            acc_entity = None
        if acc_entity is not None and _digits(acc_entity.value) != found.get("snils"):
            found["account_number"] = _digits(acc_entity.value)
        else:
            rest = (
                text if snils_span is None else text[: snils_span[0]] + " " + text[snils_span[1] :]
            )
            account = _ACCOUNT.search(rest)
            if account is not None:
                found["account_number"] = account.group(0)
            elif (
                form.requested_slot == "account_number"
                and _digits(text)
                and "snils" not in found
                # "+7 910 555-22-33" is a phone number, not an account.
                and next(find_phones(text), None) is None
            ):
                found["account_number"] = _digits(text)
        return found

    async def validate(self, ctx: FlowContext, form: FormState, slot: str, value: Any) -> SlotCheck:
        if slot == "adding":
            return valid(True)
        if slot == "snils":
            digits = _digits(value)
            if len(digits) != 11:
                return invalid(Texts.bad_snils_length)
            if not is_valid_snils(digits):
                return invalid(Texts.bad_snils_checksum)
            return valid(ctx.vault.hash_snils(digits))
        if slot == "account_number":
            number = _digits(value)
            if not 8 <= len(number) <= 12:
                return invalid(Texts.bad_account)
            switched = await accounts.switch_account(ctx.session, ctx.identity, number)
            if switched is not None:
                return stop(reply(Texts.switched.format(number=number, address=switched.address)))
            return valid(number)
        return valid(value)

    async def prompt(self, ctx: FlowContext, form: FormState, slot: str) -> Reply:
        if slot == "account_number":
            if not form.slots.get("adding"):
                linked = await accounts.linked_accounts(ctx.session, ctx.identity.id)
                if linked:
                    return _choose(ctx, linked)
            if not form.has("snils"):
                return reply(Texts.ask_both)
        return await super().prompt(ctx, form, slot)

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        number = str(form.slots["account_number"])
        result = await accounts.link_account(
            ctx.session, ctx.settings, ctx.identity, number, str(form.slots["snils"]), ctx.now
        )
        if result.status is LinkStatus.LOCKED:
            assert result.locked_until is not None
            return answer(_locked(ctx, result.locked_until))
        if result.status is LinkStatus.NO_MATCH:
            again = FormState(
                name=self.name, requested_slot="account_number", slots={"adding": True}
            )
            return Outcome(
                replies=(reply(Texts.no_match.format(left=result.attempts_left)),), keep=again
            )
        account = await ctx.current_account()
        assert account is not None
        text = Texts.linked if result.status is LinkStatus.LINKED else Texts.already
        return answer(reply(text.format(number=account.number, address=account.address)))


def _locked(ctx: FlowContext, until: Any) -> Reply:
    return reply(Texts.locked.format(when=fmt.when(until, ctx.now, ctx.settings.tz)))


def _choose(ctx: FlowContext, linked: list[Any]) -> Reply:
    current = next((a for a in linked if a.id == ctx.identity.current_account_id), linked[0])
    buttons = [
        Button(
            Texts.switch_button.format(number=a.number),
            payload("link_account", account_number=a.number),
        )
        for a in linked
        if a.id != current.id
    ]
    buttons.append(Button(Texts.add_button, payload("link_account", action="add")))
    return reply(Texts.choose.format(current=current.number), *buttons)


FLOWS = (LinkAccount(),)
