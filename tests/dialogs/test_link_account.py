"""link_account: account + SNILS, checksum first, lockout, several accounts."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from storage.models import AccountLink, ChannelIdentity, Conversation, InboxEntry, Message
from tests.harness import DEMO_ACCOUNT, DEMO_ACCOUNT_2, DEMO_ACCOUNT_3, DEMO_SNILS, ChatClient


async def _identity(chat: ChatClient) -> ChannelIdentity:
    async with chat.session() as s:
        row = await s.scalar(select(ChannelIdentity).where(ChannelIdentity.user_id == chat.user_id))
        assert row is not None
        return row


async def test_one_message_links_the_account(chat: ChatClient) -> None:
    await chat.say("хочу привязать лицевой счет")
    assert "номер" in chat.last_text
    assert "СНИЛС" in chat.last_text
    await chat.say(f"{DEMO_ACCOUNT} {DEMO_SNILS}")
    assert chat.texts == [
        "Готово, счёт 1002003001 привязан к этому чату. Адрес: г. Курск, ул. Ленина, д. 10, кв. 5."
    ]
    identity = await _identity(chat)
    assert identity.current_account_id is not None
    async with chat.session() as s:
        links = (await s.scalars(select(AccountLink))).all()
    assert [link.identity_id for link in links] == [identity.id]


async def test_account_and_snils_in_two_messages(chat: ChatClient) -> None:
    await chat.say("привязать счёт")
    await chat.say(DEMO_ACCOUNT)
    assert "СНИЛС" in chat.last_text
    await chat.say("11223344595")
    assert "привязан" in chat.last_text


async def test_wrong_checksum_is_explained_and_not_counted(chat: ChatClient) -> None:
    await chat.say("привязать лицевой счёт")
    await chat.say(f"{DEMO_ACCOUNT} 112-233-445 96")
    assert "контрольное число" in chat.last_text
    assert "112" not in chat.last_text  # the SNILS is never echoed
    assert (await _identity(chat)).failed_link_attempts == 0
    await chat.say(DEMO_SNILS)
    assert "привязан" in chat.last_text


async def test_wrong_length_snils(chat: ChatClient) -> None:
    await chat.say("привязать лицевой счёт")
    await chat.say(DEMO_ACCOUNT)
    await chat.say("123-45")
    assert "11 цифр" in chat.last_text


async def test_unknown_account_or_foreign_snils_is_a_failed_attempt(chat: ChatClient) -> None:
    await chat.say("привязать лицевой счёт")
    await chat.say("1009999999 112-233-445 95")
    assert "Не нашёл счёт" in chat.last_text
    assert "Осталось попыток: 2" in chat.last_text
    # The SNILS of another customer (valid checksum) does not match either.
    await chat.say(f"{DEMO_ACCOUNT_2} {DEMO_SNILS}")
    assert "Осталось попыток: 1" in chat.last_text
    assert (await _identity(chat)).current_account_id is None


async def test_three_failures_lock_linking_for_15_minutes(chat: ChatClient) -> None:
    await chat.say("привязать лицевой счёт")
    for _ in range(3):
        await chat.say("1009999999 112-233-445 95")
    # 10:00 Moscow + 15 minutes
    assert "Слишком много неудачных попыток" in chat.last_text
    assert "сегодня в 10:15" in chat.last_text
    await chat.say(f"{DEMO_ACCOUNT} {DEMO_SNILS}")
    assert "сегодня в 10:15" in chat.last_text
    assert (await _identity(chat)).current_account_id is None
    # A form that needs an account is refused the same way.
    await chat.say("передать показания")
    assert "Слишком много неудачных попыток" in chat.last_text

    chat.clock.advance(timedelta(minutes=16))
    await chat.say(f"{DEMO_ACCOUNT} {DEMO_SNILS}")
    assert "привязан" in chat.last_text


async def test_several_accounts_and_switching(chat: ChatClient) -> None:
    await chat.link(DEMO_ACCOUNT, DEMO_SNILS)
    await chat.say("другой счёт")
    assert "Сейчас выбран счёт 1002003001" in chat.last_text
    await chat.press("Привязать ещё счёт")
    assert "напишите его номер" in chat.last_text
    await chat.say(f"{DEMO_ACCOUNT_3} {DEMO_SNILS}")
    assert "счёт 1002003003 привязан" in chat.last_text

    await chat.say("сменить счет")
    assert chat.button_titles == ["Счёт 1002003001", "Привязать ещё счёт"]
    await chat.press("Счёт 1002003001")
    assert chat.texts[0].startswith("Переключился на счёт 1002003001")
    await chat.say("сколько я должен")
    assert "По счёту 1002003001" in chat.last_text


async def test_the_snils_is_never_stored_in_the_clear(chat: ChatClient) -> None:
    await chat.say("привязать лицевой счёт")
    await chat.say(DEMO_ACCOUNT)
    await chat.say("мой снилс 112-233-445 95")
    async with chat.session() as s:
        texts = (await s.scalars(select(Message.text))).all()
        states = (await s.scalars(select(Conversation.state))).all()
        bodies = (await s.scalars(select(InboxEntry.body))).all()
    stored = " ".join(texts) + repr(states) + repr(bodies)
    assert "112-233-445" not in stored
    assert "11223344595" not in stored
    assert "мой снилс ***-***-*** **" in texts


async def test_a_phone_number_is_not_taken_for_an_account(chat: ChatClient) -> None:
    await chat.say("привязать лицевой счёт")
    await chat.say("+7 910 555-22-33")
    assert chat.texts[0] == "Не совсем понял ответ."
    assert "напишите его номер (он есть в квитанции)" in chat.last_text
