"""A conversation full of personal data leaves none of it in the clear.

The whole path runs for real (pipeline, embedded NLU, dialog engine,
handlers, SQLite and PostgreSQL): linking with SNILS in odd formats (a
typo and a digit short among them), a crafted button payload carrying a
SNILS, appeals with a phone in the description and a typed contact phone,
a hand-off whose summary quotes those lines, and an out-of-hours hand-off whose call-back
request copies the summary. Then every table is dumped, every column of
every row (JSON included), and none of the SNILS or phone digits may be
there: neither as typed nor as a run of digits with the separators removed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.pipeline import Pipeline
from config import Settings
from dialogs.engine import DialogEngine
from nlu.embedded import EmbeddedNluParser, load_model
from storage.crypto import PersonalDataVault
from storage.demo_data import load_demo_data
from storage.locks import MemoryLockStore
from storage.models import Appeal, Base, HandoffQueueEntry, InboxEntry
from tests.harness import DEFAULT_NOW, ChatClient, Clock

# (typed form, its digits): what the customer writes.
SNILS_TYPED = [
    "112.233.445.96",  # the failed try: a typo in the check number
    "СНИЛС 112/233/445/95",
    "112 - 233 - 445 - 95",
    "987—654—321  83",
    "112-233-445  95",
    "112 233 445 9",  # a digit short
]
SNILS_DIGITS = ["11223344595", "11223344596", "98765432183", "1122334459"]
PHONES_TYPED = ["8 (905) 123-45-67", "+7 912 345-67-89", "89161234567", "+7 (4712) 51-23-45"]
PHONE_DIGITS = [
    "79051234567",
    "89051234567",
    "9051234567",
    "79123456789",
    "89123456789",
    "9123456789",
    "79161234567",
    "89161234567",
    "9161234567",
    "74712512345",
    "84712512345",
    "4712512345",
]
# Digits with whatever a person puts between them.
_RUN = re.compile(r"\d(?:[\s\-–—.()/+]*\d)*")


def _leaks(value: str) -> list[str]:
    found = [t for t in SNILS_TYPED + PHONES_TYPED if t in value]
    for run in _RUN.findall(value):
        digits = re.sub(r"\D", "", run)
        found += [d for d in SNILS_DIGITS + PHONE_DIGITS if d in digits]
    return found


async def _dump(sf: async_sessionmaker[AsyncSession]) -> list[tuple[str, str, str]]:
    """(table, column, value as text) for every cell of every table."""
    cells: list[tuple[str, str, str]] = []
    async with sf() as s:
        for table in Base.metadata.sorted_tables:
            for row in (await s.execute(select(table))).mappings():
                cells.extend((table.name, col, str(val)) for col, val in row.items())
    return cells


@pytest.fixture
async def pipeline(
    db_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    vault: PersonalDataVault,
    nlu_model_path: Path,
) -> tuple[Pipeline, Clock]:
    async with session_factory() as session:
        assert await load_demo_data(session, vault, db_settings, DEFAULT_NOW)
    clock = Clock(DEFAULT_NOW)
    nlu = EmbeddedNluParser(load_model(nlu_model_path), db_settings.nlu_fallback_threshold)
    built = Pipeline(
        db_settings,
        session_factory,
        nlu,
        MemoryLockStore(),
        DialogEngine(db_settings),
        vault,
        clock=clock,
    )
    return built, clock


async def test_no_snils_or_phone_is_stored_in_the_clear(
    pipeline: tuple[Pipeline, Clock], session_factory: async_sessionmaker[AsyncSession]
) -> None:
    pipe, clock = pipeline
    chat = ChatClient(pipe, session_factory, clock)

    # Linking: a typo first, then the right SNILS in odd formats.
    await chat.say("хочу привязать лицевой счёт")
    await chat.say(f"1002003001 {SNILS_TYPED[0]}")
    assert "опечатка" in chat.last_text
    await chat.say(SNILS_TYPED[5])
    assert "В СНИЛС 11 цифр" in chat.last_text
    await chat.say(SNILS_TYPED[1])
    assert "Готово, счёт 1002003001 привязан" in chat.last_text
    # A second account: the wrong owner's SNILS, then the right one.
    await chat.say("привязать счёт")
    await chat.press("Привязать ещё счёт")
    await chat.say(f"1002003002 {SNILS_TYPED[2]}")
    assert "Не нашёл счёт" in chat.last_text
    await chat.say(f"1002003002, СНИЛС {SNILS_TYPED[3]}.")
    assert "счёт 1002003002 привязан" in chat.last_text
    # A crafted button: its payload carries a SNILS.
    await chat.press_payload('/link_account{"snils": "11223344595"}')
    await chat.press_payload(
        '/link_account{"account_number": "1002003001", "snils": "112-233-445 95"}'
    )

    # An appeal whose description holds a phone (taken as the contact phone).
    await chat.say("хочу подать обращение")
    await chat.press("Качество отопления")
    await chat.say(f"Третий день холодные батареи в спальне, звоните {PHONES_TYPED[0]} вечером")
    assert "+7 *** ***-**-67" in chat.last_text  # the masked phone, nothing more
    await chat.say("да")
    assert "Обращение зарегистрировано" in chat.last_text
    # Another with the contact phone typed when asked.
    await chat.say("хочу подать обращение")
    await chat.press("Начисления и перерасчёт")
    await chat.say("Прошу сделать перерасчёт за ноябрь, показания передавал вовремя")
    assert "телефон" in chat.last_text
    await chat.say(PHONES_TYPED[1])
    assert "+7 *** ***-**-89" in chat.last_text
    await chat.say("да")
    assert "Обращение зарегистрировано" in chat.last_text

    # Lines the operator's summary quotes, then the hand-off.
    await chat.say(f"мой мобильный {PHONES_TYPED[2]}, СНИЛС {SNILS_TYPED[4]}")
    await chat.say(f"или звоните на домашний {PHONES_TYPED[3]}")
    await chat.say("позовите оператора")
    assert chat.last_result is not None
    assert chat.last_result.handed_off

    # Out of hours: the summary also becomes a call-back request's description.
    clock.set(datetime(2026, 11, 24, 19, 30, tzinfo=UTC))  # 22:30 Moscow
    night = ChatClient(pipe, session_factory, clock, chat_id="chat-2", user_id="user-2")
    await night.say(f"СНИЛС {SNILS_TYPED[2]}, телефон {PHONES_TYPED[1]}")
    await night.say("соедините с оператором")
    assert "обратный звонок" in night.last_text

    async with session_factory() as s:
        summaries = list(await s.scalars(select(HandoffQueueEntry.summary)))
        appeals = list(await s.scalars(select(Appeal).order_by(Appeal.id)))
        inbox = list(await s.scalars(select(InboxEntry)))
    # The conversation did reach every place where the data could land.
    assert len(summaries) == 2
    assert any("Клиент: мой мобильный [телефон скрыт], СНИЛС ***" in x for x in summaries)
    assert sum("[телефон скрыт]" in a.description for a in appeals) >= 2
    assert sum(a.contact_phone_masked is not None for a in appeals) >= 2
    assert any(e.body.get("payload_enc") for e in inbox)

    cells = await _dump(session_factory)
    leaks = [(t, c, _leaks(v)) for t, c, v in cells if _leaks(v)]
    assert leaks == []
