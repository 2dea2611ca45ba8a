"""The demo page and the widget work under the page's Content-Security-Policy."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Server
from tests.browser.test_widget import WAIT_MS, chromium, page  # noqa: F401 - shared fixtures

pytestmark = pytest.mark.browser

# Registered before any page script runs: every violation the browser reports.
COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


async def test_the_widget_talks_under_the_pages_policy(page: Page, server: Server) -> None:  # noqa: F811
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    await page.add_init_script(COLLECT_VIOLATIONS)

    response = await page.goto(f"{server.base_url}/")
    assert response is not None
    policy = await response.header_value("content-security-policy")
    assert policy is not None
    assert "default-src 'none'" in policy

    launcher = page.get_by_test_id("chat-launcher")
    await launcher.click()
    # Styled (its stylesheet loaded) and connected (the WebSocket opened).
    await expect(page.get_by_test_id("chat-panel")).to_be_visible()
    await expect(page.get_by_test_id("chat-status")).to_have_text(
        "На связи круглосуточно", timeout=WAIT_MS
    )
    box = page.get_by_test_id("chat-input")
    await box.fill("Здравствуйте")
    await box.press("Enter")
    log = page.get_by_test_id("chat-log")
    await expect(log.locator('[data-sender="bot"]').last).to_be_visible(timeout=WAIT_MS)
    # The page's own inline styles applied: the header has its brand colour.
    header_bg = await page.locator("header").evaluate("e => getComputedStyle(e).backgroundColor")
    assert header_bg == "rgb(11, 79, 138)"

    assert await page.evaluate("window.__cspViolations") == []
    assert console == []
