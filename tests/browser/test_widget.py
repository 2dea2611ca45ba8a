"""The widget in a real Chromium against a real server: link an account,
submit a reading, reload and keep the conversation."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Locator, Page, async_playwright, expect

from config.settings import PROJECT_ROOT
from tests.browser.conftest import Server
from tests.conftest import IN_CI

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = PROJECT_ROOT / "var" / "widget.png"
WAIT_MS = 20_000


def need(condition: bool, why: str) -> None:
    if not condition:
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture
def chromium() -> Path:
    need(shutil.which(str(CHROMIUM)) is not None, f"{CHROMIUM} is missing")
    return CHROMIUM


@pytest.fixture
async def page(tmp_path: Path, chromium: Path) -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh user data dir
            executable_path=str(chromium),
            args=CHROMIUM_ARGS,
            headless=True,
            locale="ru-RU",
            timezone_id="Europe/Moscow",
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield await context.new_page()
        finally:
            await context.close()


async def test_link_account_submit_reading_and_keep_history(page: Page, server: Server) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    await page.goto(f"{server.base_url}/")
    await expect(page.get_by_role("heading", name="Оплата и показания")).to_be_visible()

    launcher = page.get_by_test_id("chat-launcher")
    await expect(launcher).to_have_attribute("aria-label", "Открыть чат с Курской генерацией")
    await launcher.click()
    panel = page.get_by_test_id("chat-panel")
    await expect(panel).to_be_visible()
    await expect(panel.get_by_text("Чат с Курской генерацией")).to_be_visible()
    log = page.get_by_test_id("chat-log")
    box = page.get_by_test_id("chat-input")
    await expect(box).to_have_attribute("placeholder", "Напишите сообщение…")
    await expect(page.get_by_test_id("chat-status")).to_have_text(
        "На связи круглосуточно", timeout=WAIT_MS
    )

    typing = page.get_by_test_id("chat-typing")

    async def bot_says(text: str) -> None:
        await expect(log.locator('[data-sender="bot"]').filter(has_text=text).last).to_be_visible(
            timeout=WAIT_MS
        )

    def choices(title: str) -> Locator:
        return log.locator('[data-testid="chat-button"]:not([disabled])').filter(has_text=title)

    async def answered() -> None:
        # The typing indicator goes once the server acknowledged the message,
        # and it does so after pushing every reply of the turn.
        await expect(typing).to_be_hidden(timeout=WAIT_MS)

    async def press(title: str) -> None:
        await choices(title).last.click()
        await expect(
            log.locator('[data-sender="customer"]').filter(has_text=title).last
        ).to_be_visible()
        await answered()

    # Ask for a reading: the bot links the account first.
    await box.fill("Хочу передать показания")
    await box.press("Enter")  # Enter sends
    await answered()
    await bot_says("привяж")
    await box.fill("1002003001 112-233-445 95")
    await page.get_by_test_id("chat-send").click()
    await answered()
    await bot_says("1002003001")

    # Two meters: the bot asks which; buttons render as buttons.
    if await choices("Отопление").count():
        await press("Отопление")
    await bot_says("148,620")  # the last reading is shown
    await box.fill("150")
    await box.press("Enter")
    await answered()
    await bot_says("150,000")
    await press("Да")
    await bot_says("принято")
    before = await log.locator('[data-testid="chat-message"]').all_inner_texts()

    # A reload keeps the conversation (the token lives in localStorage).
    await page.reload()
    await expect(panel).to_be_visible()
    await expect(log.locator('[data-sender="bot"]').filter(has_text="принято")).to_be_visible(
        timeout=WAIT_MS
    )
    after = await log.locator('[data-testid="chat-message"]').all_inner_texts()
    assert len(after) == len(before)  # nothing lost, nothing doubled
    assert [a.split("\n")[0] for a in after][-1] == [b.split("\n")[0] for b in before][-1]
    await expect(log.locator('[data-sender="customer"]').filter(has_text="150")).to_be_visible()
    await expect(log.locator('[data-testid="chat-button"]:not([disabled])')).to_have_count(
        0
    )  # old choices are not offered again

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT))

    # Markup is shown as text, never run.
    await box.fill('<img src=x onerror="window.__pwned=1"><b>жирный</b>')
    await box.press("Enter")
    mine = log.locator('[data-sender="customer"]').last
    await expect(mine).to_contain_text("<b>жирный</b>")
    await answered()
    assert await log.locator("b, img").count() == 0
    assert await page.evaluate("window.__pwned === undefined")
    assert errors == []

    # The same tag on another company's site: the widget finds its server
    # from its own src and starts a session of that site's own.
    host_page = (
        '<!doctype html><html lang="ru"><head><meta charset="utf-8"><title>Партнёр</title>'
        "</head><body><h1>Сайт партнёра</h1>"
        f'<script src="{server.base_url}/widget.js"></script></body></html>'
    )
    # Another origin (localhost vs 127.0.0.1), served by the test itself. Both
    # are loopback here, so Chromium's local-network-access check applies
    # (it would not between two public sites): the permission is granted.
    origin = server.base_url.replace("127.0.0.1", "localhost")
    partner = f"{origin}/partner.html"
    await page.context.grant_permissions(["local-network-access"], origin=origin)
    await page.route(
        partner,
        lambda route: route.fulfill(body=host_page, content_type="text/html; charset=utf-8"),
    )
    await page.goto(partner)
    await page.get_by_test_id("chat-launcher").click()
    await expect(page.get_by_test_id("chat-status")).to_have_text(
        "На связи круглосуточно", timeout=WAIT_MS
    )
    assert await log.locator('[data-testid="chat-message"]').count() == 0  # a new session
    await box.fill("Здравствуйте")
    await box.press("Enter")
    await answered()
    await expect(log.locator('[data-sender="bot"]').first).to_be_visible()
    assert errors == []


async def test_a_site_not_listed_cannot_open_the_widget(page: Page, server: Server) -> None:
    # Loopback like the server (so Chromium's local-network-access check can be
    # granted), but another origin, and one not listed in the server's settings.
    other = server.base_url.replace("127.0.0.1", "127.0.0.2")
    page_url = f"{other}/page.html"
    html = (
        '<!doctype html><html lang="ru"><head><meta charset="utf-8"><title>Чужой</title>'
        f'</head><body><script src="{server.base_url}/widget.js"></script></body></html>'
    )
    await page.context.grant_permissions(["local-network-access"], origin=other)
    await page.route(
        page_url, lambda route: route.fulfill(body=html, content_type="text/html; charset=utf-8")
    )
    await page.goto(page_url)
    await page.get_by_test_id("chat-launcher").click()
    # Refused at the handshake: the widget never gets a session.
    await expect(page.get_by_test_id("chat-status")).to_have_text(
        "Нет связи. Переподключаемся…", timeout=WAIT_MS
    )
    token = await page.evaluate("localStorage.getItem('heatdesk.widget.token')")
    assert token is None
    assert f"refused a socket from origin '{other}'" in server.log.read_text()


async def test_a_message_stored_before_a_failure_is_not_shown_as_not_sent(
    page: Page, flaky_server: Server
) -> None:
    await page.goto(f"{flaky_server.base_url}/")
    await page.get_by_test_id("chat-launcher").click()
    await expect(page.get_by_test_id("chat-status")).to_have_text(
        "На связи круглосуточно", timeout=WAIT_MS
    )
    log = page.get_by_test_id("chat-log")
    box = page.get_by_test_id("chat-input")
    await box.fill("какой тариф на отопление")
    await box.press("Enter")
    mine = log.locator('[data-sender="customer"]')
    # The inbox took it, its turn failed: received, the answer comes later.
    await expect(mine.get_by_test_id("chat-accepted")).to_contain_text(
        "получено", ignore_case=True, timeout=WAIT_MS
    )
    await expect(log.locator('[data-sender="bot"]').filter(has_text="тариф").first).to_be_visible(
        timeout=WAIT_MS
    )
    await expect(log.get_by_text("Не отправлено")).to_have_count(0)
    await expect(page.get_by_test_id("chat-retry")).to_have_count(0)
    await expect(mine).to_have_count(1)
