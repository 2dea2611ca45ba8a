"""check_balance and pay_bill."""

from __future__ import annotations

from tests.harness import DEMO_ACCOUNT_2, DEMO_ACCOUNT_3, DEMO_SNILS, DEMO_SNILS_2, ChatClient


async def test_balance_asks_to_link_first_then_answers(chat: ChatClient) -> None:
    await chat.say("сколько я должен")
    assert "Сначала привяжем лицевой счёт" in chat.last_text
    await chat.say(f"1002003001 {DEMO_SNILS}")
    text = chat.last_text
    assert "По счёту 1002003001 задолженность 3 456,78 ₽." in text
    assert "Начисления за октябрь 2026:" in text
    assert "• отопление:" in text
    assert "• горячая вода:" in text
    assert "Итого за месяц:" in text
    assert "Последний платёж: 2 800,00 ₽ от 10.09.2026" in text
    assert chat.button_titles == ["Оплатить"]


async def test_overpayment_and_no_debt(chat: ChatClient) -> None:
    await chat.link(DEMO_ACCOUNT_2, DEMO_SNILS_2)
    await chat.say("какая задолженность")
    assert "По счёту 1002003002 переплата 150,00 ₽" in chat.last_text
    assert "Оплатить" not in chat.button_titles
    await chat.link(DEMO_ACCOUNT_3, DEMO_SNILS)
    await chat.say("какая задолженность")
    assert "По счёту 1002003003 задолженности нет." in chat.last_text


async def test_a_named_month(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("начисления за март")
    assert "Начисления за март 2026:" in chat.last_text


async def test_pay_link_has_account_and_debt_and_bank_details(chat: ChatClient) -> None:
    await chat.link()
    await chat.say("сколько я должен")
    await chat.press("Оплатить")
    assert "https://pay.kursk-gen.example/?account=1002003001&amount=3456.78" in chat.last_text
    assert "Оплатить 3 456,78 ₽ по счёту 1002003001" in chat.last_text
    assert "ИНН 4632000000" in chat.texts[1]
    assert "лицевому счёту 1002003001" in chat.texts[1]


async def test_pay_without_debt_links_a_zero_amount(chat: ChatClient) -> None:
    await chat.link(DEMO_ACCOUNT_2, DEMO_SNILS_2)
    await chat.say("ссылка на оплату")
    assert "Задолженности по счёту 1002003002 нет" in chat.last_text
    assert "?account=1002003002&amount=0.00" in chat.last_text


async def test_asking_for_the_balance_while_linking_answers_after_linking(chat: ChatClient) -> None:
    await chat.say("хочу привязать лицевой счет")
    await chat.say("сколько я должен")
    assert "Сначала привяжем лицевой счёт" in chat.texts[0]
    await chat.say(f"1002003001 {DEMO_SNILS}")
    assert "привязан" in chat.texts[0]
    assert "задолженность 3 456,78 ₽" in chat.last_text
    assert "Продолжим" not in chat.last_text
