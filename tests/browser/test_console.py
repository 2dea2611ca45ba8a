"""The operator's day in a real Chromium against ``python -m bot run``.

A customer asks for an operator, in the widget (one browser context) or in
Telegram (through the local Bot API server); an operator logs in to
/console in another context, sees the chat in the queue with its summary,
takes it, they exchange messages both ways, the operator moves an appeal on
(the customer gets the notice) and resolves the chat; the customer answers
the NPS question, and the KPI dashboard counts the conversation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from config.settings import PROJECT_ROOT
from dialogs.flows.human_handoff import Texts as HandoffTexts
from dialogs.flows.nps import Texts as NpsTexts
from tests.browser.conftest import Server, running_server
from tests.browser.test_widget import CHROMIUM_ARGS, need
from tests.fakes.telegram_api import TOKEN, FakeBotApi, message_update

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 20_000
LOGIN = "svetlana"
PASSWORD = "console-browser-pass"
DISPLAY_NAME = "Светлана"
SCREENSHOT = PROJECT_ROOT / "var" / "console.png"
TELEGRAM_CHAT = 710_500_001


@dataclass(frozen=True)
class Desk:
    server: Server
    api: FakeBotApi


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, nlu_model_path: Path) -> Iterator[Desk]:
    tmp = tmp_path_factory.mktemp("console-server")
    api = FakeBotApi().start()
    hours = {
        # Open around the clock, so the test runs at any hour.
        "CONTACT_CENTER_OPEN_HOUR": "0",
        "CONTACT_CENTER_CLOSE_HOUR": "24",
        "CONTACT_CENTER_DAYS": json.dumps([1, 2, 3, 4, 5, 6, 7]),
        "NOTICE_INTERVAL_SECONDS": "1",
    }
    try:
        with running_server(
            tmp, nlu_model_path, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE=api.base_url, **hours
        ) as server:
            assert "python -m bot operators add admin" in server.log.read_text()
            add_operator(tmp)
            yield Desk(server, api)
    finally:
        api.stop()


def add_operator(tmp: Path) -> None:
    """What the README says to do: ``python -m bot operators add ... --password-stdin``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in {"DATABASE_URL", "REDIS_URL", "ENVIRONMENT", "SECRET_KEY"}
    }
    env.update(
        PYTHONPATH=str(PROJECT_ROOT),
        ENVIRONMENT="test",
        SECRET_KEY="browser-test-secret",  # the server's (tests/browser/conftest.py)
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp / 'bot.sqlite3'}",
        LOG_LEVEL="WARNING",
    )
    done = subprocess.run(
        [sys.executable, "-m", "bot", "operators", "add", LOGIN, "--role", "supervisor",
         "--name", DISPLAY_NAME, "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, env=env, cwd=tmp,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    need(shutil.which(str(CHROMIUM)) is not None, f"{CHROMIUM} is missing")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield b
        finally:
            await b.close()


async def new_page(browser: Browser, errors: list[str]) -> Page:
    context = await browser.new_context(
        locale="ru-RU", timezone_id="Europe/Moscow", viewport={"width": 1400, "height": 900}
    )
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return page


def unexpected(errors: list[str]) -> list[str]:
    # The one wrong password of operator_logs_in is answered 401, as it must be.
    return [e for e in errors if "status of 401" not in e]


async def operator_logs_in(page: Page, server: Server) -> None:
    await page.goto(f"{server.base_url}/console")
    await expect(page.locator("#login-form")).to_be_visible()
    await page.locator("#login").fill(LOGIN)
    await page.locator("#password").fill("wrong-password-here")
    await page.locator("#login-submit").click()
    await expect(page.locator("#login-error")).to_have_text("Неверный логин или пароль.")
    await page.locator("#password").fill(PASSWORD)
    await page.locator("#login-submit").click()
    await expect(page.locator("#console-app")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#me")).to_contain_text(DISPLAY_NAME)
    await expect(page.locator("#live.on")).to_have_count(1, timeout=WAIT_MS)


async def take_from_queue(page: Page, summary_text: str) -> None:
    item = page.locator("#queue .queue-item").filter(has_text=summary_text)
    await expect(item).to_be_visible(timeout=WAIT_MS)  # arrives over the live socket
    await expect(item.locator(".item-summary")).to_contain_text("Клиент:")
    await item.locator(".take-button").click()
    await expect(page.locator("#mine .mine-item")).to_have_count(1, timeout=WAIT_MS)
    await expect(page.locator("#chat-owner")).to_have_text("Ваш чат")
    await expect(page.locator("#queue .queue-item").filter(has_text=summary_text)).to_have_count(0)


async def operator_says(page: Page, text: str) -> None:
    await page.locator("#reply-text").fill(text)
    await page.locator("#reply-text").press("Enter")
    await expect(
        page.locator("#transcript .from-operator").filter(has_text=text).last
    ).to_be_visible(timeout=WAIT_MS)


async def operator_sees(page: Page, text: str) -> None:
    await expect(
        page.locator("#transcript .from-customer").filter(has_text=text).last
    ).to_be_visible(timeout=WAIT_MS)


async def dashboard_counts_it(page: Page, server: Server) -> None:
    await page.goto(f"{server.base_url}/console/kpi")
    await expect(page.locator("body[data-loaded=true]")).to_have_count(1, timeout=WAIT_MS)
    row = page.locator("#operators tbody tr").filter(has_text=DISPLAY_NAME)
    await expect(row).to_have_count(1)
    await expect(page.locator("#k-nps")).not_to_have_text("—")


async def test_a_widget_customer_and_an_operator(browser: Browser, desk: Desk) -> None:
    server = desk.server
    errors: list[str] = []
    customer = await new_page(browser, errors)
    operator = await new_page(browser, errors)

    await customer.goto(f"{server.base_url}/")
    await customer.get_by_test_id("chat-launcher").click()
    log = customer.get_by_test_id("chat-log")
    box = customer.get_by_test_id("chat-input")

    async def customer_sees(text: str, sender: str | None = None) -> None:
        where = log.locator(f'[data-sender="{sender}"]') if sender else log
        await expect(where.filter(has_text=text).last).to_be_visible(timeout=WAIT_MS)

    async def customer_says(text: str) -> None:
        await box.fill(text)
        await box.press("Enter")
        await expect(customer.get_by_test_id("chat-typing")).to_be_hidden(timeout=WAIT_MS)

    await customer_says("Почему такой большой счёт за отопление в ноябре?")
    await customer_says("позовите оператора")
    await customer_sees(HandoffTexts.queued.split(".")[0])

    await operator_logs_in(operator, server)
    await take_from_queue(operator, "большой счёт за отопление")
    await customer_sees(f"Оператор {DISPLAY_NAME} подключился")
    # The transcript shows the bot's part of the conversation as the bot's.
    await expect(operator.locator("#transcript .from-bot").first).to_be_visible()

    await operator_says(operator, "Здравствуйте! Сейчас проверю ваш счёт.")
    # (Pushed live, the widget labels it as the bot's: the delivery path does
    # not carry the sender yet; history, after a reload, says "operator".)
    await customer_sees("Сейчас проверю ваш счёт")
    await customer_says("Спасибо, жду")
    await operator_sees(operator, "Спасибо, жду")
    # A canned response from the reply box: "/мин" offers "/минуту".
    await operator.locator("#reply-text").fill("/мин")
    hint = operator.locator("#canned-hints .canned-hint").filter(has_text="/минуту")
    await expect(hint).to_be_visible()
    await hint.click()
    await expect(operator.locator("#reply-text")).to_have_value(
        "Пожалуйста, подождите минуту: уточняю информацию."
    )
    await operator.locator("#reply-send").click()
    await customer_sees("уточняю информацию")

    # A private note stays among the operators.
    await operator.locator("#note-text").fill("Клиент просит перерасчёт за ноябрь")
    await operator.locator("#note-form button").click()
    await expect(operator.locator("#notes")).to_contain_text("перерасчёт за ноябрь")

    # An appeal registered from the console, then moved on: the customer is told each time.
    await operator.locator("#appeal-category").select_option("charges")
    await operator.locator("#appeal-description").fill("Проверить начисления за отопление")
    await operator.locator("#appeal-form button").click()
    appeal = operator.locator("#card .appeal").filter(has_text="Проверить начисления")
    await expect(appeal).to_be_visible(timeout=WAIT_MS)
    number = await appeal.get_attribute("data-number")
    assert number is not None
    await customer_sees(f"№ {number}")
    await appeal.locator(".status-select").select_option("in_review")
    await appeal.locator(".status-comment").fill("Передали в расчётный отдел")
    await appeal.locator(".status-button").click()
    await customer_sees("Передали в расчётный отдел")
    await expect(
        operator.locator("#card .appeal").filter(has_text=number).locator(".appeal-status")
    ).to_have_text("На рассмотрении", timeout=WAIT_MS)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await operator.screenshot(path=str(SCREENSHOT), full_page=True)

    await operator.locator("#resolve").click()
    await expect(operator.locator("#mine .mine-item")).to_have_count(0, timeout=WAIT_MS)
    await customer_sees("Оцените, пожалуйста, помощь оператора")
    await customer_says("10")
    await customer_sees(NpsTexts.ask_comment.split(".")[0])
    await customer_says("Всё понятно, спасибо")
    await customer_sees(NpsTexts.thanks.split(",")[0])

    await dashboard_counts_it(operator, server)
    await expect(operator.locator("#k-nps-n")).to_contain_text("1")
    assert unexpected(errors) == []


async def test_a_telegram_customer_and_an_operator(browser: Browser, desk: Desk) -> None:
    server, api = desk.server, desk.api
    chat = TELEGRAM_CHAT
    errors: list[str] = []

    def customer_writes(text: str) -> int:
        before = len(api.sent(chat))
        api.push_update(message_update(chat, text))
        return before

    def customer_gets(text: str, after: int = 0) -> None:
        api.wait_for(
            lambda: any(text in t for t in api.texts(chat)[after:]),
            timeout=WAIT_MS / 1000,
            what=f"{text!r} in Telegram",
        )

    # The customer links their demo account and asks for an operator.
    start = customer_writes("/start link")
    customer_gets("", start)
    linked = customer_writes("1002003001 112-233-445 95")
    customer_gets("1002003001", linked)
    queued = customer_writes("позовите оператора, вопрос по долгу")
    customer_gets(HandoffTexts.queued.split(".")[0], queued)

    operator = await new_page(browser, errors)
    await operator_logs_in(operator, server)
    await take_from_queue(operator, "1002003001")
    customer_gets(f"Оператор {DISPLAY_NAME} подключился")
    await expect(operator.locator("#chat-title")).to_contain_text("Telegram")

    # The card: the account, its balance and readings, the demo appeals.
    card = operator.locator("#card-body")
    await expect(card).to_contain_text("Иванов Иван Петрович")
    await expect(card).to_contain_text("№ 1002003001")
    await expect(card).to_contain_text("долг 3")
    await expect(card).to_contain_text("148,62")

    await operator_says(operator, "Здравствуйте! Вижу долг по счёту 1002003001.")
    customer_gets("Вижу долг по счёту")
    silent = customer_writes("А можно рассрочку?")
    await operator_sees(operator, "А можно рассрочку?")
    assert len(api.sent(chat)) == silent  # the bot says nothing while the operator has the chat

    # The demo appeal in review gets an answer; the customer is told in Telegram.
    appeal = operator.locator("#card .appeal").filter(has_text="Слабо греют батареи")
    await appeal.locator(".status-select").select_option("answered")
    await appeal.locator(".status-comment").fill("Мастер придёт в пятницу")
    await appeal.locator(".status-button").click()
    customer_gets("Мастер придёт в пятницу")
    await expect(appeal.locator(".appeal-status")).to_have_text("Дан ответ", timeout=WAIT_MS)
    told = [t for t in api.texts(chat) if "Мастер придёт в пятницу" in t]

    await operator.locator("#resolve").click()
    customer_gets("Оцените, пожалуйста, помощь оператора")
    scored = customer_writes("9")
    customer_gets(NpsTexts.ask_comment.split(".")[0], scored)
    # The notice went once.
    assert [t for t in api.texts(chat) if "Мастер придёт в пятницу" in t] == told
    assert len(told) == 1

    await dashboard_counts_it(operator, server)
    assert unexpected(errors) == []
