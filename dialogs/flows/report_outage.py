"""report_outage: the address (from the linked account, or asked); a known
outage there -> why and when supply returns; otherwise an emergency appeal
with high priority, accepted around the clock."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dialogs.context import FlowContext
from dialogs.flows.service_common import address_from_text, validate_address
from dialogs.format import day_month_time
from dialogs.forms import Form, Outcome, Slot, Validated, answer, payload, reply
from dialogs.messages import Button
from dialogs.state import FormState
from handlers.outages import (
    EmergencyReport,
    OutageInfo,
    find_outages,
    parse_address,
    register_emergency,
)
from nlu.types import ParseResult
from storage.models import Service


class Texts:
    ask_address = "Подскажите адрес: улица и дом, например «ул. Радищева, д. 3»."
    bad_address = (
        "Не получилось разобрать адрес. Напишите улицу и номер дома, например «Ленина 10»."
    )
    no_house = "Уточните, пожалуйста, номер дома."
    active = (
        "По адресу {address} сейчас отключено {service}: {reason}.\n"
        "Подачу восстановят до {until} (по Москве)."
    )
    upcoming = (
        "По адресу {address} запланировано отключение: {service} с {since} до {until} "
        "(по Москве). Причина: {reason}."
    )
    other_problem = "Если у вас другая проблема (течь, авария), сообщите о ней кнопкой ниже."
    report_button = "Сообщить об аварии"
    registered = (
        "Плановых отключений по адресу {address} нет, поэтому я зарегистрировал аварийную "
        "заявку {number}. Передал её диспетчеру, аварийные заявки принимаем круглосуточно.\n"
        "Если течёт вода или есть угроза жизни, звоните сразу: {hotline}."
    )
    registered_direct = (
        "Зарегистрировал аварийную заявку {number} по адресу {address} и передал её "
        "диспетчеру. Аварийные заявки принимаем круглосуточно.\n"
        "Если течёт вода или есть угроза жизни, звоните сразу: {hotline}."
    )
    default_description = "Сообщение об аварии или отсутствии теплоснабжения"
    resume = "Вернёмся к сообщению об отключении?"


SERVICE_TITLES: dict[Service, str] = {
    Service.HEATING: "отопление",
    Service.HOT_WATER: "горячее водоснабжение",
    Service.OTHER: "теплоснабжение",
}
_HOT_WATER = re.compile(r"горяч|гвс|\bвод[аыу]", re.I)
_HEATING = re.compile(r"отоплен|батаре|радиатор|холодно|тепл", re.I)


def service_from_text(text: str) -> Service | None:
    if _HOT_WATER.search(text):
        return Service.HOT_WATER
    if _HEATING.search(text):
        return Service.HEATING
    return None


FACT_ADDRESS = "outage_address"


def describe_outage(outage: OutageInfo, address: str, ctx: FlowContext) -> str:
    tz = ctx.settings.tz
    service = SERVICE_TITLES[outage.service]
    if outage.active:
        return Texts.active.format(
            address=address,
            service=service,
            reason=outage.reason,
            until=day_month_time(outage.ends_at, tz),
        )
    return Texts.upcoming.format(
        address=address,
        service=service,
        since=day_month_time(outage.starts_at, tz),
        until=day_month_time(outage.ends_at, tz),
        reason=outage.reason,
    )


class ReportOutage(Form):
    name = "report_outage"
    intents = frozenset({"report_outage"})
    resume_question = Texts.resume
    slots = (Slot("address", Texts.ask_address, from_text=address_from_text),)

    async def on_start(
        self, ctx: FlowContext, form: FormState, parse: ParseResult
    ) -> Outcome | None:
        text = parse.text if not parse.text.startswith("/") else ""
        meter = parse.entity("meter_type")
        service = (
            Service(meter.value)
            if meter is not None and meter.value in {s.value for s in Service}
            else service_from_text(text)
        )
        form.slots["service"] = service.value if service else ""
        form.slots["description"] = text.strip()[:500] or Texts.default_description
        # The "Сообщить об аварии" button: skip the outage lookup.
        form.slots["emergency"] = parse.entity("emergency") is not None
        return None

    async def prefill(self, ctx: FlowContext, form: FormState) -> Mapping[str, Any]:
        if form.has("address"):
            return {}
        account = await ctx.current_account()
        if account is not None:
            return {"address": account.address}
        if FACT_ADDRESS in ctx.facts:
            # "а когда дадут?" after an earlier report: the same address.
            return {"address": ctx.facts[FACT_ADDRESS]}
        return {}

    async def validate_address(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        return validate_address(value, bad=Texts.bad_address, no_house=Texts.no_house)

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        address = str(form.slots["address"])
        service = Service(form.slots["service"]) if form.slots.get("service") else None
        parsed = parse_address(address)
        assert parsed is not None  # validated
        if not await ctx.current_account():
            # Remembered for the next question ("а когда дадут?").
            ctx.facts[FACT_ADDRESS] = address
        if not form.slots.get("emergency"):
            outages = await find_outages(ctx.session, parsed, ctx.now, service)
            if outages:
                lines = [describe_outage(o, address, ctx) for o in outages[:2]]
                lines.append(Texts.other_problem)
                button = Button(Texts.report_button, payload("report_outage", emergency="yes"))
                return answer(reply("\n".join(lines), button))
        account = await ctx.current_account()
        result = await register_emergency(
            ctx.session,
            ctx.vault,
            ctx.settings,
            EmergencyReport(
                description=str(form.slots.get("description") or Texts.default_description),
                address=address,
                service=service,
                account_id=account.id if account else None,
                conversation_id=ctx.conversation.id,
                channel=ctx.channel,
            ),
            ctx.now,
        )
        template = Texts.registered_direct if form.slots.get("emergency") else Texts.registered
        return answer(
            reply(
                template.format(
                    address=address,
                    number=result.appeal.number,
                    hotline=ctx.settings.hotline_phone,
                )
            )
        )


FLOWS = (ReportOutage(),)
