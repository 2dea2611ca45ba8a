"""Texts the engine itself says (not tied to one flow), and the main menu."""

from __future__ import annotations

from typing import Final

from dialogs.messages import Button

MENU: Final[tuple[Button, ...]] = (
    Button("Передать показания", "/submit_reading"),
    Button("Баланс и начисления", "/check_balance"),
    Button("Оплатить", "/pay_bill"),
    Button("Подать обращение", "/file_appeal"),
    Button("Нет отопления или воды", "/report_outage"),
    Button("Контакты и часы работы", "/contacts_hours"),
    Button("Связаться с оператором", "/human_handoff"),
)

OPERATOR_BUTTON: Final = Button("Позвать оператора", "/human_handoff")


class EngineTexts:
    cancelled = "Хорошо, отменил. Чем ещё могу помочь?"
    nothing_to_cancel = "Отменять нечего. Чем могу помочь?"
    resume_declined = "Хорошо. Чем ещё могу помочь?"
    link_first = "Сначала привяжем лицевой счёт к этому чату, это нужно один раз."
    form_gave_up = "Кажется, я вас не понимаю. Давайте начнём заново или позову оператора."
    confirm_hint = "Ответьте, пожалуйста, «Да» или «Нет»."
