"""connection_request: address, kind of building, heat load (Gcal/h), contact
phone; feasibility against the network zones and an application number."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from dialogs.context import FlowContext
from dialogs.flows.file_appeal import phone_from_text, phone_slot_from_text
from dialogs.flows.service_common import address_from_text, choice_from_words, validate_address
from dialogs.format import decimal_ru
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
from handlers.connection import (
    MAX_LOAD_GCAL_H,
    BuildingKind,
    InvalidAddress,
    InvalidLoad,
    LoadProblem,
    NewConnectionApplication,
    Verdict,
    create_application,
    parse_load,
)
from handlers.contacts import InvalidPhone, normalize_phone
from nlu.types import ParseResult
from storage.crypto import mask_phone


class Texts:
    ask_address = "Подскажу по подключению к теплосети. Напишите адрес объекта: улица и дом."
    no_house = "Уточните, пожалуйста, номер дома или участка, например «Литовская 15»."
    bad_address = (
        "Не получилось разобрать адрес. Напишите улицу и номер дома, например «Сумская 12»."
    )
    ask_kind = "Что за здание?"
    bad_kind = "Выберите вид здания кнопкой, пожалуйста."
    ask_load = (
        "Какая нужна тепловая нагрузка, Гкал/ч? Например, 0,05 для частного дома "
        "или 0,8 для многоквартирного. Если не знаете точно, напишите примерно."
    )
    load_not_number = "Напишите нагрузку числом, например 0,15."
    load_not_positive = "Нагрузка должна быть больше нуля. Напишите число, например 0,15."
    load_too_large = (
        "Больше {limit} Гкал/ч по заявке через чат не оформить: проверьте число или позвоните нам."
    )
    ask_phone = "Оставьте номер телефона для связи: по нему инженер уточнит детали."
    bad_phone = "Не похоже на номер телефона. Напишите его так: +7 910 123-45-67."
    phone_required = "Без телефона заявку не оформить: инженеру нужно с вами связаться."
    confirm = (
        "Проверьте заявку на подключение:\nАдрес: {address}\nЗдание: {kind}\n"
        "Нагрузка: {load} Гкал/ч\nТелефон: {phone}\n\nОтправляем?"
    )
    feasible = (
        "Подключение по адресу возможно: объект в зоне «{zone}» (источник — {source}), "
        "свободной мощности хватает."
    )
    short = (
        "В зоне «{zone}» сейчас свободно только {spare} Гкал/ч, а нужно {load}: "
        "подключение потребует реконструкции сетей, инженер предложит варианты."
    )
    no_network = (
        "Рядом с этим адресом нет наших тепловых сетей: инженер проверит возможность "
        "подключения индивидуально."
    )
    registered = (
        "Заявка зарегистрирована, номер {number}. Инженер свяжется с вами по указанному телефону."
    )
    cancelled = "Хорошо, заявку не отправляю. Чем ещё могу помочь?"
    resume = "Продолжим заявку на подключение?"


KIND_TITLES: dict[BuildingKind, str] = {
    BuildingKind.APARTMENT_BUILDING: "Жилой дом",
    BuildingKind.NON_RESIDENTIAL: "Нежилое здание",
    BuildingKind.PRIVATE_HOUSE: "Частный дом",
    BuildingKind.OTHER: "Другое",
}
_KIND_WORDS: tuple[tuple[str, BuildingKind], ...] = (
    (r"частн|коттедж|свой дом|ижс", BuildingKind.PRIVATE_HOUSE),
    (r"нежил|офис|магазин|склад|производ|кафе", BuildingKind.NON_RESIDENTIAL),
    (r"жил|многоквартир|мкд", BuildingKind.APARTMENT_BUILDING),
    (r"друго|ино[ей]", BuildingKind.OTHER),
)


def kind_from_text(text: str) -> str | None:
    return choice_from_words(text, _KIND_WORDS)


def load_from_text(text: str) -> str | None:
    # Any number goes to validate(), which explains what is wrong with it.
    if text.startswith("/") or not re.search(r"\d", text):
        return None
    return text.strip()


class ConnectionRequest(Form):
    name = "connection_request"
    intents = frozenset({"connection_request"})
    confirm = True
    resume_question = Texts.resume
    cancelled_text = Texts.cancelled
    slots = (
        Slot("address", Texts.ask_address, from_text=address_from_text),
        Slot(
            "building_kind",
            Texts.ask_kind,
            buttons=tuple(
                Button(title, payload("connection_request", building_kind=kind.value))
                for kind, title in KIND_TITLES.items()
            ),
            from_text=kind_from_text,
            loose=True,
        ),
        Slot("heat_load", Texts.ask_load, from_text=load_from_text, loose=True),
        Slot(
            "contact_phone",
            Texts.ask_phone,
            entity="phone",
            from_text=phone_from_text,
            loose=True,
        ),
    )

    async def prompt(self, ctx: FlowContext, form: FormState, slot: str) -> Reply:
        asked = await super().prompt(ctx, form, slot)
        return dataclasses.replace(asked, ask_contact=True) if slot == "contact_phone" else asked

    async def extract(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> dict[str, Any]:
        found = await super().extract(ctx, form, parse)
        phone_slot_from_text(parse, found, form.requested_slot == "contact_phone")
        return found

    async def validate_address(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        return validate_address(value, bad=Texts.bad_address, no_house=Texts.no_house)

    async def validate_building_kind(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        try:
            return {"building_kind": BuildingKind(str(value)).value}
        except ValueError:
            return refuse(Texts.bad_kind, reprompt=True)

    async def validate_heat_load(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        try:
            load = parse_load(str(value))
        except InvalidLoad as exc:
            messages = {
                LoadProblem.NOT_A_NUMBER: Texts.load_not_number,
                LoadProblem.NOT_POSITIVE: Texts.load_not_positive,
                LoadProblem.TOO_LARGE: Texts.load_too_large.format(
                    limit=decimal_ru(MAX_LOAD_GCAL_H)
                ),
            }
            return refuse(messages[exc.reason])
        return {"heat_load": str(load)}  # a string: the state is JSON

    async def validate_contact_phone(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        if value == "skip":
            return refuse(Texts.phone_required)
        try:
            phone = normalize_phone(str(value))
        except InvalidPhone:
            return refuse(Texts.bad_phone)
        return {"contact_phone": ctx.vault.encrypt(phone), "phone_masked": mask_phone(phone)}

    async def confirmation(self, ctx: FlowContext, form: FormState) -> Reply:
        return yes_no(
            Texts.confirm.format(
                address=form.slots["address"],
                kind=KIND_TITLES[BuildingKind(form.slots["building_kind"])],
                load=decimal_ru(Decimal(form.slots["heat_load"])),
                phone=form.slots.get("phone_masked", ""),
            )
        )

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        load = Decimal(form.slots["heat_load"])
        try:
            info = await create_application(
                ctx.session,
                ctx.vault,
                ctx.settings,
                NewConnectionApplication(
                    address=str(form.slots["address"]),
                    building_kind=BuildingKind(form.slots["building_kind"]),
                    load_gcal_h=load,
                    contact_phone=ctx.vault.decrypt(str(form.slots["contact_phone"])),
                    identity_id=ctx.identity.id,
                ),
                ctx.now,
            )
        except (InvalidAddress, InvalidLoad):
            return answer(reply(Texts.bad_address))
        feasibility = info.feasibility
        if feasibility.verdict is Verdict.FEASIBLE:
            verdict = Texts.feasible.format(zone=feasibility.zone_name, source=feasibility.source)
        elif feasibility.verdict is Verdict.NOT_ENOUGH_CAPACITY:
            verdict = Texts.short.format(
                zone=feasibility.zone_name,
                spare=decimal_ru(feasibility.spare_load_gcal_h or Decimal(0)),
                load=decimal_ru(load),
            )
        else:
            verdict = Texts.no_network
        return answer(reply(f"{verdict}\n{Texts.registered.format(number=info.number)}"))


FLOWS = (ConnectionRequest(),)
