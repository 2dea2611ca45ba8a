"""file_appeal: category, description, optional phone, confirmation, number and deadlines."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from config import Settings
from storage.crypto import PersonalDataVault
from storage.models import (
    Account,
    Appeal,
    AppealCategory,
    AppealStatus,
    AppealStatusChange,
    Conversation,
    Priority,
)
from tests.harness import ChatClient

DEMO_APPEALS = ("A-2026-000001", "A-2026-000002")


async def _appeals(chat: ChatClient) -> list[Appeal]:
    """The appeals filed during the test (not the demo data's)."""
    async with chat.session() as s:
        rows = await s.scalars(
            select(Appeal).where(Appeal.number.not_in(DEMO_APPEALS)).order_by(Appeal.id)
        )
        return list(rows)


async def test_appeal_with_phone_for_a_linked_account(
    chat: ChatClient, db_settings: Settings
) -> None:
    await chat.link()
    await chat.say("хочу подать жалобу")
    assert "Выберите тему" in chat.last_text
    assert chat.button_titles == [
        "Начисления и перерасчёт",
        "Качество отопления",
        "Качество горячей воды",
        "Счётчик",
        "Другое",
    ]
    await chat.press("Начисления и перерасчёт")
    assert "Опишите" in chat.last_text
    await chat.say("В ноябре начислили за отопление вдвое больше, чем в октябре")
    assert "телефон" in chat.last_text
    assert chat.button_titles == ["Без телефона"]
    await chat.say("+7 (910) 210-45-67")
    assert "Тема: Начисления и перерасчёт" in chat.last_text
    assert "Суть: В ноябре начислили за отопление вдвое больше" in chat.last_text
    assert "Телефон: +7 *** ***-**-67" in chat.last_text
    assert "210-45" not in chat.last_text
    await chat.press("Да")
    # Demo data holds A-2026-000001 and -000002; Tuesday 24.11 10:00 Moscow
    # + 48 h, and + 10 working days -> Tuesday 08.12.
    assert chat.texts[0] == (
        "Обращение зарегистрировано, номер A-2026-000003. Лицевой счёт 1002003001.\n"
        "Предварительное рассмотрение — до 26.11 10:00, решение — до 08.12.2026 (по Москве).\n"
        "Статус можно узнать здесь же: напишите номер обращения."
    )
    assert chat.button_titles == ["Статус обращения"]

    (appeal,) = await _appeals(chat)
    async with chat.session() as s:
        account = await s.scalar(select(Account).where(Account.number == "1002003001"))
        history = (
            await s.scalars(
                select(AppealStatusChange.status).where(AppealStatusChange.appeal_id == appeal.id)
            )
        ).all()
        conversation = await s.scalar(select(Conversation))
    assert account is not None
    assert conversation is not None
    assert (appeal.number, appeal.category, appeal.status, appeal.priority) == (
        "A-2026-000003",
        AppealCategory.CHARGES,
        AppealStatus.REGISTERED,
        Priority.NORMAL,
    )
    assert (appeal.account_id, appeal.conversation_id, appeal.channel) == (
        account.id,
        conversation.id,
        "test",
    )
    assert appeal.address == "г. Курск, ул. Ленина, д. 10, кв. 5"
    assert appeal.contact_phone_masked == "+7 *** ***-**-67"
    assert appeal.contact_phone_enc is not None
    vault = PersonalDataVault(db_settings.secret_key.get_secret_value())
    assert vault.decrypt(appeal.contact_phone_enc) == "+79102104567"
    assert list(history) == [AppealStatus.REGISTERED]
    # The phone never sits in the dialog state in the clear.
    assert "2104567" not in str(conversation.state)

    # The button asks for the status of the new appeal.
    await chat.press("Статус обращения")
    assert "A-2026-000003 (начисления и перерасчёт): зарегистрировано." in chat.last_text


async def test_appeal_without_account_and_without_phone(chat: ChatClient) -> None:
    await chat.say("хочу оставить жалобу")
    await chat.press("Качество горячей воды")
    await chat.say("Горячая вода еле тёплая уже неделю, ул. Сумская 40")
    await chat.press("Без телефона")
    assert "Телефон: не указан" in chat.last_text
    await chat.press("Да")
    assert "номер A-2026-000003." in chat.last_text
    assert "Лицевой счёт" not in chat.last_text
    (appeal,) = await _appeals(chat)
    assert appeal.account_id is None
    assert appeal.category is AppealCategory.HOT_WATER_QUALITY
    assert appeal.contact_phone_enc is None
    assert appeal.contact_phone_masked is None
    # Filed in this chat: its status is shown here even without an account.
    await chat.say("статус обращения A-2026-000003")
    assert "A-2026-000003 (качество горячей воды): зарегистрировано." in chat.last_text


async def test_typed_category_short_description_bad_phone(chat: ChatClient) -> None:
    await chat.say("хочу пожаловаться")
    await chat.say("по счётчику")
    assert "Опишите" in chat.last_text
    await chat.say("да")
    assert "подробнее" in chat.last_text
    await chat.say("Счётчик горячей воды не опломбирован после замены")
    await chat.say("12345")
    assert "Не похоже на номер телефона" in chat.last_text
    await chat.say("нет, не нужно")
    assert "Тема: Счётчик" in chat.last_text
    await chat.press("Да")
    (appeal,) = await _appeals(chat)
    assert appeal.category is AppealCategory.METER
    assert appeal.description == "Счётчик горячей воды не опломбирован после замены"


async def test_declining_the_confirmation_files_nothing(chat: ChatClient) -> None:
    await chat.say("хочу подать обращение")
    await chat.press("Другое")
    await chat.say("Прошу прислать копию договора")
    await chat.press("Без телефона")
    await chat.press("Нет")
    assert "обращение не отправляю" in chat.last_text
    assert await _appeals(chat) == []


async def test_cancel_mid_form(chat: ChatClient) -> None:
    await chat.say("хочу подать обращение")
    await chat.press("Другое")
    await chat.say("отмена")
    assert "отменил" in chat.last_text
    assert await _appeals(chat) == []


async def test_markup_and_sql_looking_text_is_stored_as_is(chat: ChatClient) -> None:
    await chat.say("хочу подать обращение")
    await chat.press("Другое")
    text = "<script>alert(1)</script> '; DROP TABLE appeals; -- 😡 батареи"
    await chat.say(text)
    await chat.press("Без телефона")
    await chat.press("Да")
    assert "номер A-2026-000003" in chat.last_text
    (appeal,) = await _appeals(chat)
    assert appeal.description == text


async def test_deadlines_skip_weekends_and_holidays(chat: ChatClient) -> None:
    # Friday 30.10.2026 18:00 Moscow: 4.11 is a holiday.
    chat.clock.set(datetime.fromisoformat("2026-10-30T15:00:00+00:00"))
    await chat.say("хочу подать обращение")
    await chat.press("Другое")
    await chat.say("Вопрос по договору теплоснабжения")
    await chat.press("Без телефона")
    await chat.press("Да")
    # 2,3,5,6,9,10,11,12,13,16 November.
    assert "до 01.11 18:00, решение — до 16.11.2026" in chat.last_text
    (appeal,) = await _appeals(chat)
    assert appeal.review_due_at - appeal.created_at == timedelta(hours=48)


async def test_a_question_mid_form_then_continue(chat: ChatClient) -> None:
    await chat.say("хочу подать обращение")
    await chat.say("какой тариф на горячую воду")
    assert "Горячая вода: 261,48 ₽ за м³" in chat.last_text
    assert chat.texts[-1] == "Продолжим оформление обращения?"
    await chat.press("Да")
    assert "Выберите тему" in chat.last_text
    await chat.press("Качество отопления")
    await chat.say("В спальне батарея чуть тёплая 😡")
    await chat.press("Без телефона")
    await chat.press("Да")
    (appeal,) = await _appeals(chat)
    assert appeal.category is AppealCategory.HEATING_QUALITY
    assert appeal.description == "В спальне батарея чуть тёплая 😡"


async def test_an_overlong_description_is_refused_and_asked_again(chat: ChatClient) -> None:
    await chat.say("хочу подать обращение")
    await chat.press("Другое")
    await chat.say("очень длинно " * 310)  # about 4 030 characters, under the chat limit
    assert "Слишком длинный текст: уложитесь, пожалуйста, в 4000 символов." in chat.last_text
    await chat.say("Коротко: прошу проверить начисления за октябрь")
    assert "телефон" in chat.last_text


async def test_a_detailed_first_message_is_not_asked_again(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("хочу пожаловаться плохо греют батареи в спальне уже неделю")
    # Topic and matter came with the first message: straight to the phone.
    assert "телефон" in chat.last_text
    await chat.press("Без телефона")
    assert "Тема: Качество отопления" in chat.last_text
    assert "Суть: хочу пожаловаться плохо греют батареи в спальне уже неделю" in chat.last_text
    await chat.press("Да")
    [appeal] = await _appeals(chat)
    assert appeal.category is AppealCategory.HEATING_QUALITY


async def test_a_short_complaint_still_asks_for_the_matter(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("хочу пожаловаться на отопление")
    assert "Опишите" in chat.last_text
