"""tariff_info: the tariffs in force, the last change and the next one."""

from __future__ import annotations

from dialogs.context import FlowContext
from dialogs.format import decimal_ru, money, short_date
from dialogs.forms import Flow, Outcome, answer, reply
from dialogs.state import DialogState
from handlers.tariffs import ServiceTariffs, tariff_overview
from nlu.types import ParseResult
from storage.models import Service


class Texts:
    header = "Тарифы «{company}» (с НДС):"
    current = "• {service}: {price} за {unit} с {since}"
    was = " (до этого {price}, {sign}{percent} %)"
    upcoming = "  С {since} — {price} за {unit} ({sign}{percent} %)."
    none = "Тарифы сейчас уточняются. Актуальные цифры подскажут на горячей линии: {phone}."
    footer = "Тарифы утверждает регулятор Курской области, они одинаковы для всех потребителей."


SERVICE_TITLES: dict[Service, str] = {
    Service.HEATING: "Отопление",
    Service.HOT_WATER: "Горячая вода",
    Service.OTHER: "Прочее",
}


def _sign(value: object) -> str:
    return "+" if str(value)[0] != "-" else ""


def describe(item: ServiceTariffs) -> list[str]:
    lines: list[str] = []
    current = item.current
    if current is not None:
        line = Texts.current.format(
            service=SERVICE_TITLES[item.service],
            price=money(current.price),
            unit=current.unit,
            since=short_date(current.valid_from),
        )
        change = item.last_change_percent
        if item.previous is not None and change is not None:
            line += Texts.was.format(
                price=money(item.previous.price), sign=_sign(change), percent=decimal_ru(change)
            )
        lines.append(line)
    if item.upcoming is not None:
        change = item.upcoming_change_percent
        lines.append(
            Texts.upcoming.format(
                since=short_date(item.upcoming.valid_from),
                price=money(item.upcoming.price),
                unit=item.upcoming.unit,
                sign=_sign(change) if change is not None else "",
                percent=decimal_ru(change) if change is not None else "—",
            )
        )
    return lines


class TariffInfo(Flow):
    name = "tariff_info"
    intents = frozenset({"tariff_info"})

    async def run(self, ctx: FlowContext, state: DialogState, parse: ParseResult) -> Outcome:
        overview = await tariff_overview(ctx.session, ctx.local_now.date())
        if not overview:
            return answer(reply(Texts.none.format(phone=ctx.settings.hotline_phone)))
        lines = [Texts.header.format(company=ctx.settings.company_name)]
        for item in overview:
            lines.extend(describe(item))
        lines.append(Texts.footer)
        return answer(reply("\n".join(lines)))


FLOWS = (TariffInfo(),)
