"""debt_certificate: the worked example of dialogs/FRAMEWORK.md, from the
balance's button to a registered request with the e-mail kept encrypted."""

from __future__ import annotations

from sqlalchemy import select

from config import Settings
from dialogs.flows.debt_certificate import DebtCertificate
from storage.crypto import PersonalDataVault
from storage.models import Account, Appeal, AppealCategory, Conversation, Message
from tests.harness import DEMO_ACCOUNT_2, DEMO_SNILS_2, ChatClient

EMAIL = "Ivan.Petrov@Mail.ru"
START = DebtCertificate.start_payload()


async def _requests(chat: ChatClient) -> list[Appeal]:
    async with chat.session() as s:
        rows = await s.scalars(
            select(Appeal).where(Appeal.category == AppealCategory.DEBT_CERTIFICATE)
        )
        return list(rows)


async def test_ordered_by_email_from_the_balance(chat: ChatClient, db_settings: Settings) -> None:
    await chat.link(DEMO_ACCOUNT_2, DEMO_SNILS_2)
    await chat.say("сколько я должен")
    assert "переплата 150,00 ₽" in chat.last_text
    await chat.press("Заказать справку об отсутствии задолженности")
    assert chat.texts == ["За какой период нужна справка?"]
    assert chat.button_titles == ["На сегодня", "За последние 12 месяцев", "За 2025 год"]
    await chat.press("За 2025 год")
    assert chat.texts == ["Как удобнее получить справку?"]
    await chat.say(f"на почту {EMAIL}")
    assert chat.texts == [
        "Заказать справку об отсутствии задолженности по счёту 1002003002 за 2025 год? "
        "Пришлём на I***@mail.ru."
    ]
    await chat.press("Да")
    assert "Заказ справки зарегистрирован, номер A-2026-" in chat.last_text
    assert "пришлём её на I***@mail.ru" in chat.last_text

    [request] = await _requests(chat)
    vault = PersonalDataVault(db_settings.secret_key.get_secret_value())
    assert request.contact_email_enc is not None
    assert vault.decrypt(request.contact_email_enc) == "Ivan.Petrov@mail.ru"
    assert request.contact_email_masked == "I***@mail.ru"
    assert request.description == (
        "Справка об отсутствии задолженности за 2025 год. Получение: по e-mail I***@mail.ru."
    )
    async with chat.session() as s:
        account = await s.scalar(select(Account).where(Account.number == DEMO_ACCOUNT_2))
        assert account is not None
        assert request.account_id == account.id
        # Personal data: neither the stored messages nor the dialog state hold the address.
        texts = list(await s.scalars(select(Message.text)))
        states = list(await s.scalars(select(Conversation.state)))
    assert any("[e-mail скрыт]" in t for t in texts)
    assert not any("petrov" in t.lower() for t in texts)
    assert not any("petrov" in str(st).lower() for st in states)


async def test_collected_in_the_office_with_a_typed_period(chat: ChatClient) -> None:
    await chat.link(DEMO_ACCOUNT_2, DEMO_SNILS_2)
    await chat.press_payload(START)
    await chat.say("на сегодня")
    await chat.press("Заберу в офисе")
    assert chat.texts == [
        "Заказать справку об отсутствии задолженности по счёту 1002003002 на 24.11.2026? "
        "Заберёте в офисе обслуживания."
    ]
    await chat.press("Да")
    assert "заберите её в любом офисе обслуживания" in chat.last_text
    assert chat.button_titles == ["Адреса офисов"]
    [request] = await _requests(chat)
    assert request.contact_email_enc is None


async def test_a_bad_address_is_explained_and_asked_again(chat: ChatClient) -> None:
    await chat.link(DEMO_ACCOUNT_2, DEMO_SNILS_2)
    await chat.press_payload(START)
    await chat.press("За последние 12 месяцев")
    await chat.press("По e-mail")
    assert chat.texts == ["Напишите адрес электронной почты, на который прислать справку."]
    await chat.say("ivan@mail")
    assert chat.texts == [
        "Не похоже на адрес почты: нужен адрес с @, например на mail.ru или yandex.ru."
    ]
    await chat.say("ivan@mail.ru")
    assert "за последние 12 месяцев? Пришлём на i***@mail.ru." in chat.last_text


async def test_a_year_out_of_range_is_refused(chat: ChatClient) -> None:
    await chat.link(DEMO_ACCOUNT_2, DEMO_SNILS_2)
    await chat.press_payload(START)
    # A button of an old chat, pressed years later.
    await chat.press_payload(DebtCertificate.start_payload(period="2015"))
    assert chat.texts[0] == (
        "Справку можно заказать на сегодня, за последние 12 месяцев или за год с 2023 по 2026. "
        "Выберите, пожалуйста:"
    )
    assert chat.texts[1] == "За какой период нужна справка?"


async def test_no_certificate_while_the_account_owes(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("сколько я должен")
    assert "Заказать справку об отсутствии задолженности" not in chat.button_titles
    await chat.press_payload(START)
    assert chat.texts == [
        "По счёту 1002003001 задолженность 3 456,78 ₽, поэтому справку об отсутствии "
        "задолженности выдать пока нельзя. Оплатить можно здесь же."
    ]
    assert chat.button_titles == ["Оплатить"]
    assert await _requests(chat) == []


async def test_links_first_then_asks_the_period(chat: ChatClient) -> None:
    await chat.press_payload(START)
    assert "Сначала привяжем лицевой счёт" in chat.last_text
    await chat.say(f"{DEMO_ACCOUNT_2} {DEMO_SNILS_2}")
    assert "привязан" in chat.texts[0]
    assert chat.texts[1] == "За какой период нужна справка?"


async def test_a_question_mid_form_interrupts_and_the_form_resumes(chat: ChatClient) -> None:
    await chat.link(DEMO_ACCOUNT_2, DEMO_SNILS_2)
    await chat.press_payload(START)
    await chat.press("На сегодня")
    await chat.say("где ваш офис")
    assert "Ленина" in chat.last_text
    assert chat.texts[-1] == "Продолжим заказ справки?"
    await chat.press("Да")
    assert chat.texts == ["Как удобнее получить справку?"]
