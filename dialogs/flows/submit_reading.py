"""submit_reading: a meter reading, checked, confirmed and saved."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from dialogs import format as fmt
from dialogs.context import FlowContext
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
from handlers import readings
from handlers.readings import MeterInfo, ReadingError, Verdict
from storage.models import MeterType


class Texts:
    meter_names: ClassVar[dict[MeterType, str]] = {
        MeterType.HEATING: "отопления",
        MeterType.HOT_WATER: "горячей воды",
    }
    meter_buttons: ClassVar[dict[MeterType, str]] = {
        MeterType.HEATING: "Отопление",
        MeterType.HOT_WATER: "Горячая вода",
    }
    no_meters = (
        "К счёту {account} не подключены счётчики, передавать показания не нужно. "
        "Если это ошибка, позовите оператора."
    )
    ask_meter = "По какому счётчику передаёте показание?"
    no_such_meter = "У счёта {account} нет счётчика {meter}. Выберите счётчик из списка."
    ask_value = "Напишите показание счётчика {meter} в {unit}, например {example}."
    previous = " Предыдущее показание: {value} от {date}."
    not_a_number = "Не вижу числа. Напишите показание цифрами, например {example}."
    below = (
        "Показание {value} меньше предыдущего: {previous} от {date}. "
        "Показания не могут уменьшаться, проверьте цифры и напишите ещё раз."
    )
    absurd = (
        "Показание {value} не похоже на настоящее: это намного больше обычного расхода. "
        "Проверьте цифры и напишите ещё раз."
    )
    confirm = "Передать показание {value} по счётчику {meter}?"
    saved = "Показание {value} по счётчику {meter} принято."
    counts_in = (
        " Оно будет учтено в начислениях за {month}: показания, переданные до {day} числа, "
        "учитываются в текущем месяце, позже — в следующем."
    )
    flagged = (
        "Расход заметно больше обычного, поэтому мы проверим счётчик: заявка на проверку "
        "создана, специалист свяжется с вами."
    )
    cancelled = "Хорошо, показание не передаю. Чем ещё могу помочь?"


_METER_ALIASES = {
    "heating": MeterType.HEATING,
    "отопление": MeterType.HEATING,
    "hot_water": MeterType.HOT_WATER,
    "гвс": MeterType.HOT_WATER,
    "горячая вода": MeterType.HOT_WATER,
}


def _meter_type(value: Any) -> MeterType | None:
    return _METER_ALIASES.get(str(value).strip().lower())


def _meter_from_text(text: str) -> MeterType | None:
    lower = text.lower()
    if "отоп" in lower or "тепл" in lower:
        return MeterType.HEATING
    if "гвс" in lower or "горяч" in lower or "вод" in lower:
        return MeterType.HOT_WATER
    return None


def _example(meter: MeterInfo | None) -> str:
    if meter is None or meter.last_value is None:
        return "1234,5"
    return fmt.number(meter.last_value + (meter.usual_monthly or Decimal(1)), 1)


class SubmitReading(Form):
    name = "submit_reading"
    intents = frozenset({"submit_reading"})
    requires_account = True
    confirm = True
    resume_question = "Продолжим передачу показаний?"
    cancelled_text = Texts.cancelled
    slots = (
        Slot("meter", Texts.ask_meter, entity="meter_type", from_text=_meter_from_text),
        Slot(
            "value",
            "",
            entity="reading_value",
            from_text=readings.parse_reading_value,
            # Checked against that meter's previous reading.
            needs=("meter",),
        ),
    )

    async def _meters(self, ctx: FlowContext) -> list[MeterInfo]:
        account = await ctx.current_account()
        if account is None:
            return []
        key = f"meters:{account.id}"
        if key not in ctx.memo:
            ctx.memo[key] = await readings.account_meters(ctx.session, account.id, ctx.now)
        meters: list[MeterInfo] = ctx.memo[key]
        return meters

    async def _meter(self, ctx: FlowContext, slots: Mapping[str, Any]) -> MeterInfo | None:
        wanted = slots.get("meter")
        return next((m for m in await self._meters(ctx) if m.meter_type.value == wanted), None)

    async def precondition(self, ctx: FlowContext, form: FormState) -> Outcome | None:
        if not await self._meters(ctx):
            account = await ctx.current_account()
            number = account.number if account else ""
            return answer(reply(Texts.no_meters.format(account=number)))
        return None

    async def prefill(self, ctx: FlowContext, form: FormState) -> Mapping[str, Any]:
        meters = await self._meters(ctx)
        if not form.has("meter") and len(meters) == 1:
            return {"meter": meters[0].meter_type.value}
        return {}

    async def required_slots(self, ctx: FlowContext, form: FormState) -> list[str]:
        return ["meter", "value"]

    async def validate_meter(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        kind = value if isinstance(value, MeterType) else _meter_type(value)
        meters = await self._meters(ctx)
        meter = next((m for m in meters if m.meter_type == kind), None)
        if kind is None or meter is None:
            account = await ctx.current_account()
            number = account.number if account else ""
            name = Texts.meter_names.get(kind, "") if kind else ""
            return refuse(
                Texts.no_such_meter.format(account=number, meter=name).replace("  ", " "),
                *self._meter_buttons(meters),
            )
        return {"meter": meter.meter_type.value}

    async def validate_value(
        self, ctx: FlowContext, value: Any, slots: Mapping[str, Any]
    ) -> Validated:
        meter = await self._meter(ctx, slots)
        assert meter is not None  # the slot needs the meter
        amount = readings.to_decimal(value)
        if amount is None:
            return refuse(Texts.not_a_number.format(example=_example(meter)))
        check = readings.check_reading(meter, amount, ctx.settings, ctx.now)
        shown = fmt.volume(amount, meter.unit)
        if check.verdict is Verdict.BELOW_PREVIOUS:
            assert check.previous is not None
            assert meter.last_taken_at is not None
            return refuse(
                Texts.below.format(
                    value=shown,
                    previous=fmt.volume(check.previous, meter.unit),
                    date=fmt.short_date(meter.last_taken_at, ctx.settings.tz),
                )
            )
        if check.verdict is Verdict.ABSURD:
            return refuse(Texts.absurd.format(value=shown))
        return {"value": str(amount)}

    def _meter_buttons(self, meters: list[MeterInfo]) -> tuple[Button, ...]:
        return tuple(
            Button(
                Texts.meter_buttons[m.meter_type],
                payload("submit_reading", meter_type=m.meter_type.value),
            )
            for m in meters
        )

    async def prompt(self, ctx: FlowContext, form: FormState, slot: str) -> Reply:
        if slot == "meter":
            return reply(Texts.ask_meter, *self._meter_buttons(await self._meters(ctx)))
        meter = await self._meter(ctx, form.slots)
        assert meter is not None
        text = Texts.ask_value.format(
            meter=Texts.meter_names[meter.meter_type], unit=meter.unit, example=_example(meter)
        )
        if meter.last_value is not None and meter.last_taken_at is not None:
            text += Texts.previous.format(
                value=fmt.volume(meter.last_value, meter.unit),
                date=fmt.short_date(meter.last_taken_at, ctx.settings.tz),
            )
        return reply(text)

    async def confirmation(self, ctx: FlowContext, form: FormState) -> Reply:
        meter = await self._meter(ctx, form.slots)
        assert meter is not None
        return yes_no(
            Texts.confirm.format(
                value=fmt.volume(Decimal(form.slots["value"]), meter.unit),
                meter=Texts.meter_names[meter.meter_type],
            )
        )

    async def submit(self, ctx: FlowContext, form: FormState) -> Outcome:
        account = await ctx.current_account()
        meter = await self._meter(ctx, form.slots)
        assert account is not None
        assert meter is not None
        value = Decimal(form.slots["value"])
        try:
            saved = await readings.save_reading(
                ctx.session, ctx.settings, account.id, meter.id, value, ctx.now, ctx.channel
            )
        except ReadingError:
            again = FormState(name=self.name, slots={"meter": meter.meter_type.value})
            return await self.advance(ctx, again, {})
        text = Texts.saved.format(
            value=fmt.volume(saved.value, meter.unit), meter=Texts.meter_names[meter.meter_type]
        ) + Texts.counts_in.format(
            month=fmt.MONTHS_NOMINATIVE[saved.counts_in.month - 1],
            day=readings.READINGS_CUTOFF_DAY,
        )
        replies = [reply(text)]
        if saved.flagged:
            replies.append(reply(Texts.flagged))
        return Outcome(replies=tuple(replies))


FLOWS = (SubmitReading(),)
