"""human_handoff: the operators' queue, in and out of hours."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from storage.models import (
    Appeal,
    AppealCategory,
    Conversation,
    ConversationStatus,
    HandoffOutcome,
    HandoffQueueEntry,
    HandoffStatus,
    Message,
    Owner,
)
from tests.harness import ChatClient


async def _queue(chat: ChatClient) -> list[HandoffQueueEntry]:
    async with chat.session() as s:
        return list(await s.scalars(select(HandoffQueueEntry)))


async def _conversation(chat: ChatClient) -> Conversation:
    async with chat.session() as s:
        conv: Conversation | None = await s.scalar(select(Conversation))
        assert conv is not None
        return conv


async def test_in_hours_the_chat_is_queued_with_a_summary(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("сколько я должен")
    await chat.say("позовите оператора")
    assert chat.texts == [
        "Передаю разговор оператору. Он ответит здесь же, в этом чате, "
        "обычно в течение нескольких минут.",
        "Ваше место в очереди: 1. Если вопрос решится раньше, напишите «отмена».",
    ]
    assert chat.button_titles == ["Выйти из очереди"]
    [entry] = await _queue(chat)
    assert entry.reason == "customer_request"
    assert entry.details is not None
    assert entry.details["account"] == "1002003001"
    assert entry.details["topic"] == "check_balance"
    assert entry.details["reason"] == "customer_request"
    assert entry.out_of_hours is False
    assert "Лицевой счёт: 1002003001" in entry.summary
    assert "Темы: привязка лицевого счёта, баланс и начисления" in entry.summary
    assert "Клиент: сколько я должен" in entry.summary
    assert "Клиент: позовите оператора" in entry.summary
    conv = await _conversation(chat)
    assert conv.status is ConversationStatus.QUEUED
    assert conv.owner is Owner.QUEUE


async def test_a_queued_chat_gets_one_short_notice_then_silence(chat: ChatClient) -> None:
    await chat.say("соедините с живым человеком")
    await chat.say("алло")
    assert chat.texts == [
        "Вы в очереди, ваше место: 1. Оператор ответит здесь же. "
        "Если вопрос уже решён, напишите «отмена»."
    ]
    await chat.say("ну где вы")
    assert chat.texts == []
    async with chat.session() as s:
        stored = (await s.scalars(select(Message.text).order_by(Message.id))).all()
    assert "ну где вы" in stored
    assert len(await _queue(chat)) == 1


async def test_an_operator_owned_chat_gets_no_bot_reply(chat: ChatClient) -> None:
    await chat.say("привет")
    async with chat.session() as s:
        conv = await s.scalar(select(Conversation))
        assert conv is not None
        conv.owner = Owner.OPERATOR
        await s.commit()
    await chat.say("сколько я должен")
    assert chat.texts == []
    async with chat.session() as s:
        last = await s.scalar(select(Message).order_by(Message.id.desc()).limit(1))
    assert last is not None
    assert last.text == "сколько я должен"


async def test_out_of_hours_says_when_and_registers_a_callback(chat: ChatClient) -> None:
    # Saturday 28 November 2026, 21:00 Moscow: closed until Monday 8:00.
    chat.clock.set(datetime(2026, 11, 28, 18, 0, tzinfo=UTC))
    await chat.say("оператор")
    text = chat.last_text
    assert "Сейчас операторы не работают" in text
    assert "пн–сб с 8:00 до 20:00" in text
    assert "оператор ответит в понедельник, 30 ноября, в 8:00" in text
    assert "Заявка на обратный звонок зарегистрирована под номером A-2026-000003" in text
    assert "круглосуточно" in chat.texts[1]
    [entry] = await _queue(chat)
    assert entry.out_of_hours is True
    async with chat.session() as s:
        appeal = await s.scalar(select(Appeal).where(Appeal.number == "A-2026-000003"))
    assert appeal is not None
    assert appeal.category is AppealCategory.CALLBACK
    # Out of hours the bot keeps serving while the entry waits for the morning.
    assert (await _conversation(chat)).status is ConversationStatus.BOT
    assert (await _conversation(chat)).owner is Owner.BOT
    await chat.say("сколько я должен")
    assert "Передаю" not in chat.last_text
    assert "лицевой счёт" in chat.last_text  # the bot goes on: it asks to link first


async def test_a_public_holiday_counts_as_closed(chat: ChatClient) -> None:
    # Wednesday 4 November 2026 (Unity Day), noon: back on Thursday.
    chat.clock.set(datetime(2026, 11, 4, 9, 0, tzinfo=UTC))
    await chat.say("позовите оператора")
    assert "оператор ответит завтра в 8:00" in chat.last_text


async def test_early_morning_means_today(chat: ChatClient) -> None:
    chat.clock.set(datetime(2026, 11, 24, 3, 30, tzinfo=UTC))  # 6:30 Moscow
    await chat.say("позовите оператора")
    assert "оператор ответит сегодня в 8:00" in chat.last_text


async def test_handoff_mid_form_drops_the_form(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("передать показания")
    await chat.say("оператор")
    assert "Передаю разговор оператору" in chat.last_text
    assert "Продолжим" not in chat.last_text
    conv = await _conversation(chat)
    assert conv.state["active"] is None


async def test_a_waiting_customer_can_leave_the_queue(chat: ChatClient) -> None:
    await chat.say("позовите оператора")
    await chat.say("отмена")
    assert chat.texts == ["Хорошо, вызов оператора отменил. Чем могу помочь?"]
    assert "Передать показания" in chat.button_titles
    [entry] = await _queue(chat)
    assert entry.status is HandoffStatus.CLOSED
    assert entry.outcome is HandoffOutcome.LEFT
    assert (await _conversation(chat)).status is ConversationStatus.BOT
    await chat.say("привет")
    assert chat.last_text.startswith("Здравствуйте")


async def test_a_taken_chat_stays_with_the_operator(chat: ChatClient) -> None:
    await chat.say("позовите оператора")
    async with chat.session() as s:
        conv = await s.scalar(select(Conversation))
        entry = await s.scalar(select(HandoffQueueEntry))
        assert conv is not None
        assert entry is not None
        conv.owner = Owner.OPERATOR
        entry.status = HandoffStatus.TAKEN
        await s.commit()
    await chat.say("отмена")
    assert chat.texts == []
