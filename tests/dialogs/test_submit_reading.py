"""submit_reading: link first, meter choice, checks, confirmation, saving."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from storage.models import Account, Meter, MeterType, Reading, Task, TaskKind
from tests.harness import DEMO_ACCOUNT_2, DEMO_SNILS, DEMO_SNILS_2, ChatClient


async def _readings(chat: ChatClient, meter_type: MeterType) -> list[Reading]:
    async with chat.session() as s:
        rows = await s.scalars(
            select(Reading)
            .join(Meter, Meter.id == Reading.meter_id)
            .where(Meter.meter_type == meter_type, Meter.serial == _SERIALS[meter_type])
            .order_by(Reading.taken_at)
        )
        return list(rows)


_SERIALS = {MeterType.HEATING: "ТЭМ-104 №310522", MeterType.HOT_WATER: "СГВ-15 №778812"}


async def test_links_first_then_resumes_and_saves(chat: ChatClient) -> None:
    await chat.say("хочу передать показания счетчика")
    assert "Сначала привяжем лицевой счёт" in chat.last_text
    await chat.say(f"1002003001 {DEMO_SNILS}")
    assert "привязан" in chat.texts[0]
    assert chat.texts[1] == "По какому счётчику передаёте показание?"
    assert chat.button_titles == ["Отопление", "Горячая вода"]
    await chat.press("Отопление")
    assert "Предыдущее показание: 148,620 Гкал от 20.11.2026" in chat.last_text
    await chat.say("149,8")
    assert chat.texts == ["Передать показание 149,800 Гкал по счётчику отопления?"]
    assert chat.button_titles == ["Да", "Нет"]
    before = len(await _readings(chat, MeterType.HEATING))
    await chat.press("Да")
    assert "Показание 149,800 Гкал по счётчику отопления принято" in chat.last_text
    assert "учтено в начислениях за ноябрь" in chat.last_text
    assert "до 25 числа" in chat.last_text
    saved = await _readings(chat, MeterType.HEATING)
    assert len(saved) == before + 1
    assert saved[-1].value == Decimal("149.800")
    assert saved[-1].flagged is False
    assert saved[-1].channel == "test"


async def test_everything_in_one_message(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("передать показания отопления 149,8")
    assert chat.texts == ["Передать показание 149,800 Гкал по счётчику отопления?"]


async def test_value_given_before_link_is_kept(chat: ChatClient) -> None:
    await chat.say("передать показания горячая вода 413,2")
    await chat.say(f"1002003001 {DEMO_SNILS}")
    assert chat.texts[-1] == "Передать показание 413,200 м³ по счётчику горячей воды?"


async def test_number_formats(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("передать показания")
    await chat.press("Горячая вода")
    await chat.say("1 234.5")
    assert chat.texts == [
        "Показание 1 234,500 м³ не похоже на настоящее: это намного больше обычного расхода. "
        "Проверьте цифры и напишите ещё раз."
    ]
    await chat.say("416")
    assert chat.texts == ["Передать показание 416,000 м³ по счётчику горячей воды?"]


async def test_below_previous_is_refused_with_the_previous_value(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("передать показания")
    await chat.press("Отопление")
    await chat.say("140")
    assert "меньше предыдущего: 148,620 Гкал от 20.11.2026" in chat.last_text
    await chat.say("149")
    assert "Передать показание 149,000 Гкал" in chat.last_text


async def test_absurd_values_are_refused(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("передать показания")
    await chat.press("Отопление")
    await chat.say("99999999")
    assert "не похоже на настоящее" in chat.last_text
    await chat.say("5000")
    assert "не похоже на настоящее" in chat.last_text
    await chat.say("сейчас посмотрю")
    assert chat.texts[0] == "Не совсем понял ответ."
    assert "Напишите показание счётчика отопления" in chat.texts[1]


async def test_a_jump_is_accepted_flagged_and_a_meter_check_opened(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("передать показания отопления 160")
    await chat.press("Да")
    assert "принято" in chat.last_text
    assert "проверим счётчик" in chat.last_text
    saved = (await _readings(chat, MeterType.HEATING))[-1]
    assert saved.value == Decimal("160.000")
    assert saved.flagged is True
    async with chat.session() as s:
        tasks = (await s.scalars(select(Task))).all()
    assert [(t.kind, t.reading_id) for t in tasks] == [(TaskKind.METER_CHECK, saved.id)]


async def test_no_at_the_confirmation_saves_nothing(chat: ChatClient) -> None:
    await chat.link()
    before = len(await _readings(chat, MeterType.HEATING))
    await chat.say("передать показания отопления 149,8")
    await chat.press("Нет")
    assert chat.texts == ["Хорошо, показание не передаю. Чем ещё могу помочь?"]
    assert len(await _readings(chat, MeterType.HEATING)) == before


async def test_after_the_25th_it_counts_next_month(chat: ChatClient) -> None:
    chat.clock.set(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    await chat.link()
    await chat.say("передать показания отопления 149,8")
    await chat.press("Да")
    assert "учтено в начислениях за декабрь" in chat.last_text


async def test_single_meter_is_not_asked_about(chat: ChatClient) -> None:
    await chat.link(DEMO_ACCOUNT_2, DEMO_SNILS_2)
    await chat.say("передать показания")
    assert "счётчика горячей воды" in chat.last_text
    assert "210,400 м³" in chat.last_text
    await chat.say("213,9")
    assert chat.texts == ["Передать показание 213,900 м³ по счётчику горячей воды?"]


async def test_missing_meter_type_is_explained(chat: ChatClient) -> None:
    await chat.link(DEMO_ACCOUNT_2, DEMO_SNILS_2)
    await chat.say("передать показания отопления 100")
    assert "нет счётчика отопления" in chat.last_text
    assert chat.button_titles == ["Горячая вода"]


async def test_interruption_answers_and_offers_to_continue(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("передать показания")
    await chat.say("сколько я должен")
    assert "задолженность 3 456,78 ₽" in chat.last_text
    assert chat.texts[-1] == "Продолжим передачу показаний?"
    await chat.press("Да")
    assert chat.texts == ["По какому счётчику передаёте показание?"]
    await chat.press("Горячая вода")
    await chat.say("413")
    assert "Передать показание 413,000 м³" in chat.last_text


async def test_declining_to_continue_drops_the_form(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("передать показания")
    await chat.say("где ваш офис")
    assert chat.texts[-1] == "Продолжим передачу показаний?"
    await chat.press("Нет")
    await chat.say("149,8")
    assert "Передать показание" not in chat.last_text


async def test_cancel_mid_form(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("передать показания")
    await chat.press("Отопление")
    await chat.say("отмена")
    assert chat.texts[0] == "Хорошо, отменил. Чем ещё могу помочь?"
    await chat.say("149,8")
    assert "Передать показание" not in chat.last_text


async def test_old_reading_window_still_counts(chat: ChatClient) -> None:
    # A month later (no new readings) the previous value is still the bar.
    chat.clock.advance(timedelta(days=30))
    await chat.link()
    await chat.say("передать показания отопления 148,5")
    assert "меньше предыдущего: 148,620 Гкал" in chat.last_text


async def test_a_form_left_for_a_day_is_forgotten(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("передать показания отопления 149,8")
    chat.clock.advance(timedelta(days=1))
    await chat.say("да")
    assert "принято" not in chat.last_text
    assert len(await _readings(chat, MeterType.HEATING)) == 12


async def test_a_question_mentioning_a_meter_is_a_question(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("передать показания")
    await chat.say("сколько я должен за отопление")
    assert "задолженность 3 456,78 ₽" in chat.last_text
    assert chat.texts[-1] == "Продолжим передачу показаний?"
    await chat.press("Да")
    # A bare answer is still an answer.
    await chat.say("горячая вода")
    assert "счётчика горячей воды" in chat.last_text


async def test_an_account_without_meters_is_told_so_after_linking(chat: ChatClient) -> None:
    async with chat.session() as s:
        meters = await s.scalars(
            select(Meter)
            .join(Account, Account.id == Meter.account_id)
            .where(Account.number == DEMO_ACCOUNT_2)
        )
        for meter in meters:
            meter.active = False
        await s.commit()
    await chat.say("передать показания")
    await chat.say(f"{DEMO_ACCOUNT_2} {DEMO_SNILS_2}")
    assert "привязан" in chat.texts[0]
    assert "К счёту 1002003002 не подключены счётчики" in chat.texts[1]
    await chat.say("отопление 100")
    assert "Передать показание" not in chat.last_text


async def test_refused_answers_do_not_loop_forever(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("передать показания")
    await chat.press("Отопление")
    for _ in range(4):
        await chat.say("100")  # below the last reading 148,620
        assert "меньше предыдущего" in chat.last_text or "148,620" in chat.last_text
    await chat.say("100")
    assert "Давайте начнём заново или позову оператора" in chat.last_text
    assert "Связаться с оператором" in chat.button_titles
