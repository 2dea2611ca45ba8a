"""The KPI dashboard draws its charts in Chromium under the site's CSP."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Page, expect

from bot.console.kpi import make_router
from bot.security import SecurityHeaders, page_csp
from storage.db import create_engine, create_session_factory
from tests.browser.conftest import free_port
from tests.browser.test_csp import COLLECT_VIOLATIONS
from tests.browser.test_widget import WAIT_MS, chromium, page  # noqa: F401 - shared fixtures
from tests.conftest import make_settings
from tests.handlers.kpi_history import NOW, load_history

pytestmark = pytest.mark.browser


async def open_guard() -> None:
    """The console's guard lets a supervisor through; this test is one."""


def dashboard_app(database_url: str) -> FastAPI:
    settings = make_settings(database_url)
    engine = create_engine(settings)
    sessions = create_session_factory(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with sessions() as session:
            await load_history(session)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    # The site's policy (bot/app.py), with no inline style to allow.
    app.add_middleware(SecurityHeaders, csp=page_csp([]))
    app.include_router(make_router(open_guard, sessions, clock=lambda: NOW))
    return app


@pytest.fixture
def dashboard(tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    db = tmp_path / "kpi.sqlite3"
    shutil.copyfile(sqlite_template, db)
    port = free_port()
    config = uvicorn.Config(
        dashboard_app(f"sqlite+aiosqlite:///{db}"), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the dashboard's server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


async def test_the_dashboard_draws_its_charts(page: Page, dashboard: str) -> None:  # noqa: F811
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.add_init_script(COLLECT_VIOLATIONS)

    response = await page.goto(f"{dashboard}/console/kpi?from=2026-11-23&to=2026-11-27")
    assert response is not None
    assert "script-src 'self'" in (await response.header_value("content-security-policy") or "")
    await expect(page.locator("body[data-loaded=true]")).to_have_count(1, timeout=WAIT_MS)

    # The form shows the range with both ends included.
    await expect(page.locator("#from")).to_have_value("2026-11-23")
    await expect(page.locator("#to")).to_have_value("2026-11-26")
    await expect(page.locator("#k-conversations")).to_have_text("8")
    await expect(page.locator("#k-bot-alone")).to_have_text("37,5%")
    await expect(page.locator("#k-first-response")).to_have_text("5 мин")
    await expect(page.locator("#k-appeals")).to_have_text("60%")
    await expect(page.locator("#k-nps")).to_have_text("40")
    await expect(page.locator("#operators tbody tr")).to_have_count(3)
    await expect(page.locator("#operators tbody tr").first.locator("td").first).to_have_text("Анна")

    # Every canvas is a drawn Chart.js chart with the four days on its axis.
    for canvas in ("chart-channels", "chart-bot", "chart-times", "chart-quality"):
        drawn = await page.evaluate(
            """id => {
                const chart = window.Chart.getChart(document.getElementById(id));
                return chart ? [chart.data.labels, chart.width > 0 && chart.height > 0] : null;
            }""",
            canvas,
        )
        assert drawn == [["23.11", "24.11", "25.11", "26.11"], True], canvas
    channels = await page.evaluate(
        "window.Chart.getChart(document.getElementById('chart-channels'))"
        ".data.datasets.map(d => [d.label, d.data])"
    )
    assert channels == [
        ["Telegram", [3, 0, 1, 0]],
        ["Сайт", [1, 0, 1, 1]],
        ["WhatsApp", [0, 2, 0, 0]],
    ]

    # The CSV links follow the range.
    href = await page.locator("#csv-days").get_attribute("href")
    assert href == "/console/api/kpi.csv?from=2026-11-23&to=2026-11-27&table=days"

    # Another range through the form.
    await page.locator("#to").fill("2026-11-23")
    await page.get_by_role("button", name="Показать").click()
    await expect(page.locator("#k-conversations")).to_have_text("4")

    assert await page.evaluate("window.__cspViolations") == []
    assert errors == []
