"""A conversation full of personal data leaves none of it in the clear.

The whole path runs for real (pipeline, embedded NLU, dialog engine,
handlers, SQLite and PostgreSQL): linking with SNILS in odd formats (a
typo and a digit short among them), a crafted button payload carrying a
SNILS, appeals with a phone in the description and a typed contact phone,
a hand-off whose summary quotes those lines, and an out-of-hours hand-off whose call-back
request copies the summary. Then every table is dumped, every column of
every row (JSON included), and none of the SNILS or phone digits may be
there: neither as typed nor as a run of digits with the separators removed.

The second test runs a whole session on the real app, on SQLite and on
PostgreSQL: a Telegram customer with a username links an account, files an
appeal and asks for an operator; a WhatsApp customer (their number is their
address) and a widget customer do too; a supervisor saves a canned response,
replies, writes private notes, registers an appeal and moves it on, resolves
a chat and the customer answers the NPS question with a comment; the KPI CSV
is exported. Every text and JSON column of every table (found by reflecting
the database, so a new table is scanned unasked), the export and the logs
(DEBUG) must hold none of the SNILS, phones or username in any formatting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, MetaData, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql import sqltypes

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

from bot.app import create_app
from bot.pipeline import Pipeline
from config import Settings
from dialogs.engine import DialogEngine
from handlers.pii import redact_text
from nlu.embedded import EmbeddedNluParser, load_model
from storage.crypto import PersonalDataVault
from storage.db import create_engine, create_session_factory
from storage.demo_data import load_demo_data
from storage.locks import MemoryLockStore
from storage.models import Appeal, Base, HandoffQueueEntry, InboxEntry, OperatorRole
from tests.bot.conftest import Tab, app_settings_for, container_of
from tests.bot.console_support import add_operator, log_in, new_login
from tests.bot.telegram_support import SECRET, TelegramChat
from tests.bot.test_whatsapp import ACCOUNT_SID, AUTH_TOKEN, twilio_overrides
from tests.bot.test_whatsapp import Customer as WhatsAppCustomer
from tests.conftest import make_settings, own_pg_database, run_in_thread
from tests.fakes.telegram_api import TOKEN, FakeBotApi, message_update
from tests.fakes.twilio_api import FakeTwilio
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


# --------------------------------------------------------------------------
# A whole session on the real app: every channel, the console, the logs
# --------------------------------------------------------------------------

# What the customers write, each in several of the ways people write it.
CUSTOMER_SNILS = "11223344595"  # the demo customer's: linking needs it
CUSTOMER_PHONE = "9051234567"  # ten digits after +7 / 8
WHATSAPP_PHONE = "9107654321"  # the WhatsApp customer's own number (their address)
TELEGRAM_HANDLE = "ivan_petrov_85"  # the Telegram customer's username
TELEGRAM_ID = 5_123_456_789  # the Telegram customer's chat (and user) id: their address
SNILS_WRITTEN = ["112-233-445 95", "112 233 445 95", "11223344595", "112.233.445-95"]
PHONE_WRITTEN = ["8 (905) 123-45-67", "+7 905 123 45 67", "89051234567", "+7-905-123-45-67"]
WA_WRITTEN = ["whatsapp:+79107654321", "wa.me/79107654321", "8 910 765-43-21"]
HANDLE_WRITTEN = ["@ivan_petrov_85", "t.me/ivan_petrov_85", "https://t.me/Ivan_Petrov_85"]
# Where the Telegram id was stored in the clear: a chat id, an inbox identity, JSON.
TG_ID_WRITTEN = ["5123456789", "5123456789:17", '{"chat_id": "5123456789"}', '{"id": 5123456789}']
# The contact center open whenever the test runs (the hours have tests of their own).
ALWAYS_OPEN: dict[str, object] = {
    "contact_center_days": (1, 2, 3, 4, 5, 6, 7),
    "contact_center_open_hour": 0,
    "contact_center_close_hour": 24,
}
_DIGIT_RUN = re.compile(r"\d(?:[\s\-–—.()/+:]*\d)*")
# The id as a number of its own (not inside a longer one, a hash's digits say).
_TELEGRAM_ID = re.compile(rf"(?<![0-9a-f]){TELEGRAM_ID}(?![0-9a-f])")


def personal_data_in(value: str) -> list[str]:
    """The personal values in ``value`` however they are written: digits with
    any separators between them, a phone with +7, 8 or neither, the username
    in any case, with or without ``@`` or a t.me link, the Telegram id."""
    found: list[str] = []
    for run in _DIGIT_RUN.findall(value):
        digits = re.sub(r"\D", "", run)
        found += [d for d in (CUSTOMER_SNILS, CUSTOMER_PHONE, WHATSAPP_PHONE) if d in digits]
    if TELEGRAM_HANDLE in value.lower():
        found.append(TELEGRAM_HANDLE)
    if _TELEGRAM_ID.search(value):
        found.append(str(TELEGRAM_ID))
    return found


def test_the_leak_finder_sees_every_formatting() -> None:
    """The scanner below is only as good as this: every way of writing the
    values is found, and the redacted forms are not."""
    for written in SNILS_WRITTEN + PHONE_WRITTEN + WA_WRITTEN + HANDLE_WRITTEN + TG_ID_WRITTEN:
        assert personal_data_in(f"текст {written}, ещё текст"), written
    assert personal_data_in(TG_ID_WRITTEN[0]) == [str(TELEGRAM_ID)]
    for written in SNILS_WRITTEN + PHONE_WRITTEN + WA_WRITTEN + HANDLE_WRITTEN:
        assert personal_data_in(redact_text(written)) == [], written


async def text_cells(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    """(table, column, value) of every text and JSON cell of every table in
    the database, found by reflection: a table or column added later is
    scanned without this test knowing it."""

    def reflect(conn: Connection) -> list[tuple[str, str, str]]:
        meta = MetaData()
        meta.reflect(conn)
        cells: list[tuple[str, str, str]] = []
        for table in meta.sorted_tables:
            columns = [
                c
                for c in table.columns
                if isinstance(c.type, (sqltypes.String, sqltypes.JSON, sqltypes.NullType))
                or c.type.__class__.__name__ in {"JSONB", "JSON"}
            ]
            if not columns:
                continue
            for row in conn.execute(select(*columns)):
                cells.extend(
                    (table.name, c.name, v if isinstance(v, str) else json.dumps(v))
                    for c, v in zip(columns, row, strict=True)
                    if v is not None
                )
        return cells

    async with engine.connect() as conn:
        return await conn.run_sync(reflect)


@pytest.fixture(scope="module")
def bot_api() -> Iterator[FakeBotApi]:
    server = FakeBotApi().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN).start()
    yield fake
    fake.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def session_settings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    nlu_model_path: Path,
    bot_api: FakeBotApi,
    twilio: FakeTwilio,
) -> Iterator[Settings]:
    """The app on both channels (and the widget), with demo data, on SQLite
    or on a PostgreSQL database of its own."""
    overrides: dict[str, object] = {
        **twilio_overrides(twilio),
        "telegram_bot_token": TOKEN,
        "telegram_webhook_secret": SECRET,
        "telegram_api_base": bot_api.base_url,
        "telegram_request_timeout_seconds": 5.0,
        "log_level": "DEBUG",
        **ALWAYS_OPEN,
    }
    if request.param == "sqlite":
        yield app_settings_for(tmp_path, nlu_model_path, **overrides)
        return
    with own_pg_database("pii") as url:
        settings = make_settings(url, nlu_model_path=nlu_model_path, **overrides)
        run_in_thread(lambda: asyncio.run(_load_demo_data(settings)))
        yield settings


async def _load_demo_data(settings: Settings) -> None:
    """What the app's start does on SQLite, done here (PostgreSQL is set up
    by a deploy step)."""
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            vault = PersonalDataVault(settings.secret_key.get_secret_value())
            assert await load_demo_data(session, vault, settings)
    finally:
        await engine.dispose()


def tg_say(chat: TelegramChat, text: str) -> str:
    """A line from a Telegram customer with a username (their address there)."""
    user = {"id": chat.chat_id, "is_bot": False, "first_name": "Иван", "username": TELEGRAM_HANDLE}
    return "\n".join(chat.deliver(message_update(chat.chat_id, text, **{"from": user})))


def test_a_whole_session_leaves_no_personal_data_in_any_table_or_log(
    session_settings: Settings,
    bot_api: FakeBotApi,
    twilio: FakeTwilio,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(session_settings), client=("127.0.0.1", 50000)) as client:
        # Telegram: linking with the SNILS, an appeal whose description holds
        # every kind of value, then a hand-off whose summary quotes it.
        tg = TelegramChat(client, bot_api, chat_id=TELEGRAM_ID)
        tg_say(tg, "Здравствуйте")
        tg_say(tg, "хочу привязать лицевой счёт")
        assert "привязан" in tg_say(tg, f"1002003001 СНИЛС {SNILS_WRITTEN[0]}")
        tg_say(tg, "хочу подать обращение")
        tg.press("Качество отопления")
        asked = tg_say(
            tg,
            f"Холодные батареи третий день. Звоните {PHONE_WRITTEN[0]} или пишите в "
            f"телеграм {HANDLE_WRITTEN[0]}, СНИЛС {SNILS_WRITTEN[1]}",
        )
        if "Без телефона" in asked:  # the phone asked for: typed
            asked = tg_say(tg, PHONE_WRITTEN[0])
        assert "+7 *** ***-**-67" in asked  # the phone it took, masked
        assert "зарегистрировано" in tg_say(tg, "да")
        tg_say(tg, f"мой второй номер {PHONE_WRITTEN[1]}, ник {HANDLE_WRITTEN[1]}")
        tg_say(tg, "позовите оператора")

        # WhatsApp: the customer's number is their address; they also write it.
        wa = WhatsAppCustomer(client, twilio, number="+7" + WHATSAPP_PHONE)
        assert wa.say(f"Добрый день, это {WA_WRITTEN[1]}, СНИЛС {SNILS_WRITTEN[2]}")
        wa.say(
            f"перезвоните на {WA_WRITTEN[2]} или {PHONE_WRITTEN[2]}, телеграм {HANDLE_WRITTEN[2]}"
        )
        wa.say("соедините с оператором")

        # The widget: the same values once more, and a hand-off.
        with client.websocket_connect("/widget/ws") as ws:
            tab = Tab(ws).hello()
            tab.say(f"Мой СНИЛС {SNILS_WRITTEN[3]}, телефон {PHONE_WRITTEN[3]}")
            tab.say("позовите оператора")

        # The console: a supervisor works the chats.
        login = new_login("pii")
        add_operator(client, login, OperatorRole.SUPERVISOR, display_name="Анна")
        anna = log_in(client, login)
        saved = anna.post(
            "/console/api/canned",
            {"shortcut": "перезвон", "text": f"Перезвоним вам на {PHONE_WRITTEN[0]} сегодня."},
        )
        assert saved.status_code == 200, saved.text
        queue = anna.get("/console/api/queue").json()["queue"]
        assert {i["channel"] for i in queue} == {"telegram", "whatsapp", "webchat"}
        for item in queue:
            conv = item["conversation_id"]
            assert anna.post(f"/console/api/chats/{conv}/take").status_code == 200
            reply = anna.post(
                f"/console/api/chats/{conv}/reply",
                {"text": f"Записала номер {PHONE_WRITTEN[1]} и ник {HANDLE_WRITTEN[0]}."},
            )
            assert reply.status_code == 200, reply.text
            assert anna.post(f"/console/api/chats/{conv}/reply", {"text": "/перезвон"}).is_success
            note = anna.post(
                f"/console/api/chats/{conv}/notes",
                {
                    "text": f"СНИЛС {SNILS_WRITTEN[0]}, тел. {PHONE_WRITTEN[2]}, "
                    f"{WA_WRITTEN[0]}, {HANDLE_WRITTEN[1]}"
                },
            )
            assert note.status_code == 200, note.text
        tg_conv = next(i["conversation_id"] for i in queue if i["channel"] == "telegram")
        filed = anna.post(
            f"/console/api/chats/{tg_conv}/appeals",
            {
                "category": "heating_quality",
                "description": f"Клиент просит перезвонить {PHONE_WRITTEN[3]}, {HANDLE_WRITTEN[2]}",
            },
        )
        assert filed.status_code == 201, filed.text
        number = filed.json()["appeal"]["number"]
        card = anna.get(f"/console/api/chats/{tg_conv}").json()["card"]
        appeal_id = next(a["id"] for a in card["appeals"] if a["number"] == number)
        moved = anna.post(
            f"/console/api/appeals/{appeal_id}/status",
            {
                "status": "in_review",
                "comment": f"Перезвонили на {PHONE_WRITTEN[0]}, {WA_WRITTEN[0]}",
            },
        )
        assert moved.status_code == 200, moved.text
        assert anna.post(f"/console/api/chats/{tg_conv}/resolve").status_code == 200
        # The NPS question on Telegram, answered with a comment full of data.
        assert "от 0 до 10" in "\n".join(bot_api.texts(tg.chat_id))
        assert "напишите" in tg_say(tg, "9").lower()
        assert "записан" in tg_say(
            tg, f"Всё хорошо, но звоните на {PHONE_WRITTEN[3]}, СНИЛС {SNILS_WRITTEN[3]}"
        )

        # The KPI export.
        today = datetime.now(UTC).date()
        exported = [
            anna.get(
                f"/console/api/kpi.csv?from={today - timedelta(days=1)}&to={today}&table={table}"
            )
            for table in ("days", "operators")
        ]
        assert all(e.status_code == 200 for e in exported)
        engine = container_of(client).db
        cells = client.portal.call(text_cells, engine)  # type: ignore[union-attr]

    leaks = [(t, c, personal_data_in(v)) for t, c, v in cells if personal_data_in(v)]
    assert leaks == []

    # The session did reach every place where the data could land.
    by_table: dict[str, list[str]] = {}
    for table, _, value in cells:
        by_table.setdefault(table, []).append(value)
    reached = ["messages", "inbox", "outbox", "conversations", "appeals", "appeal_status_changes"]
    reached += ["handoff_queue", "operator_notes", "canned_responses", "nps_responses"]
    for table in reached:
        assert by_table.get(table), table
    assert any("[телефон скрыт]" in v for v in by_table["operator_notes"])
    assert any("[телефон скрыт]" in v for v in by_table["canned_responses"])
    assert any("[телефон скрыт]" in v for v in by_table["appeal_status_changes"])
    assert any("[телефон скрыт]" in v for v in by_table["nps_responses"])
    assert len(by_table["handoff_queue"]) >= 3
    # The Telegram chat is kept under its keyed hash, its id encrypted to reply.
    vault = PersonalDataVault(session_settings.secret_key.get_secret_value())
    tg_hash = vault.hash_address("telegram", str(TELEGRAM_ID))
    assert tg_hash in by_table["conversations"]
    assert tg_hash in by_table["channel_identities"]
    assert tg_hash in by_table["channel_addresses"]

    for e in exported:
        assert personal_data_in(e.text) == []
    # The app's own loggers were heard, down to DEBUG.
    assert any(r.name.startswith("bot.") for r in caplog.records)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    logged = [caplog.text, *(r.getMessage() for r in caplog.records)]
    assert [personal_data_in(x) for x in logged if personal_data_in(x)] == []
