"""The KPI routes mounted in a test app behind a guard the test controls."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.console.kpi import DAY_COLUMNS, OPERATOR_COLUMNS, STATIC_DIR, make_router
from tests.handlers.kpi_history import NOW, load_history


async def role_guard(x_test_role: Annotated[str | None, Header()] = None) -> str:
    """Stands in for the console's require_role(SUPERVISOR)."""
    if x_test_role is None:
        raise HTTPException(401, "no session")
    if x_test_role != "supervisor":
        raise HTTPException(403, "supervisors only")
    return x_test_role


SUPERVISOR = {"X-Test-Role": "supervisor"}
RANGE = {"from": "2026-11-23", "to": "2026-11-27"}


@pytest.fixture
async def client(
    session_factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    async with session_factory() as session:
        await load_history(session)
    app = FastAPI()
    app.include_router(make_router(role_guard, session_factory, clock=lambda: NOW))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith("\ufeff".encode())  # Excel reads it as UTF-8
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=";"))


async def test_json_has_the_hand_computed_figures(client: httpx.AsyncClient) -> None:
    response = await client.get("/console/api/kpi", params=RANGE, headers=SUPERVISOR)
    assert response.status_code == 200
    k = response.json()
    assert (k["start"], k["end"]) == ("2026-11-23", "2026-11-27")
    assert k["conversations"] == 8
    assert [c["channel"] for c in k["channels"]] == ["telegram", "webchat", "whatsapp"]
    assert (k["bot_alone_pct"], k["handoff_rate_pct"]) == (37.5, 62.5)
    assert k["queue_wait"] == {"count": 4, "median_s": 180.0, "avg_s": 255.0}
    assert k["first_response"] == {"count": 4, "median_s": 300.0, "avg_s": 345.0}
    assert k["handling"] == {"count": 4, "median_s": 1590.0, "avg_s": 1425.0}
    assert k["appeals"]["within_24h_pct"] == 60.0
    assert k["nps"]["score"] == 40.0
    assert [d["day"] for d in k["days"]] == ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"]
    assert k["days"][0]["by_channel"] == {"telegram": 3, "webchat": 1}
    assert [o["login"] for o in k["operators"]] == ["anna", "boris", "vera"]


async def test_without_the_supervisor_role_everything_but_the_assets_is_refused(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/console/api/kpi", "/console/api/kpi.csv"):
        assert (await client.get(path, params=RANGE)).status_code == 401
    # The page sends a browser without a session to the login form.
    page = await client.get("/console/kpi")
    assert (page.status_code, page.headers["location"]) == (303, "/console")
    for path in ("/console/api/kpi", "/console/api/kpi.csv", "/console/kpi"):
        refused = await client.get(path, params=RANGE, headers={"X-Test-Role": "operator"})
        assert refused.status_code == 403
        assert "conversations" not in refused.text
    asset = await client.get("/console/kpi/assets/chart.umd.min.js")
    assert asset.status_code == 200


async def test_days_csv_columns_and_total_row(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/console/api/kpi.csv", params={**RANGE, "table": "days"}, headers=SUPERVISOR
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "kpi-days-2026-11-23-2026-11-26.csv" in response.headers["content-disposition"]
    rows = read_csv(response.content)
    assert rows[0] == [
        "День",
        "Диалогов",
        "Диалогов: Telegram",
        "Диалогов: Сайт",
        "Диалогов: WhatsApp",
        *DAY_COLUMNS[2:],
    ]
    assert [r[0] for r in rows[1:]] == [
        "2026-11-23",
        "2026-11-24",
        "2026-11-25",
        "2026-11-26",
        "Итого",
    ]
    assert rows[1] == [
        "2026-11-23",
        "4",
        "3",
        "1",
        "0",
        "1",
        "75,0",
        "1",
        "120",
        "240",
        "1320",
        "2",
        "100,0",
        "1",
        "100,0",
    ]
    assert rows[4][5:9] == ["1", "0,0", "1", ""]  # c6 left the queue: no wait measured
    assert rows[-1] == [
        "Итого",
        "8",
        "3",
        "3",
        "2",
        "5",
        "37,5",
        "5",
        "180",
        "300",
        "1590",
        "6",
        "60,0",
        "5",
        "40,0",
    ]


async def test_operators_csv(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/console/api/kpi.csv", params={**RANGE, "table": "operators"}, headers=SUPERVISOR
    )
    rows = read_csv(response.content)
    assert rows[0] == list(OPERATOR_COLUMNS)
    assert rows[1] == [
        "Анна",
        "anna",
        "3",
        "2",
        "1",
        "240",
        "240",
        "1320",
        "1280",
        "3",
        "3",
        "33,3",
    ]
    assert rows[2] == [
        "Борис",
        "boris",
        "1",
        "1",
        "0",
        "660",
        "660",
        "1860",
        "1860",
        "2",
        "2",
        "50,0",
    ]
    assert rows[3] == ["Вера", "vera", "0", "0", "0", "", "", "", "", "0", "0", ""]


async def test_range_defaults_and_refusals(client: httpx.AsyncClient) -> None:
    # NOW is Friday 27th 10:00 Moscow: the last 7 days are 21st-27th.
    default = (await client.get("/console/api/kpi", headers=SUPERVISOR)).json()
    assert (default["start"], default["end"]) == ("2026-11-21", "2026-11-28")
    assert default["conversations"] == 10  # c1-c10: c8 on the 22nd, c9 on the 27th
    reversed_range = await client.get(
        "/console/api/kpi", params={"from": "2026-11-27", "to": "2026-11-23"}, headers=SUPERVISOR
    )
    assert reversed_range.status_code == 422
    assert reversed_range.json()["detail"] == "Конец периода должен быть позже его начала."
    too_long = await client.get(
        "/console/api/kpi", params={"from": "2025-01-01", "to": "2026-11-23"}, headers=SUPERVISOR
    )
    assert too_long.status_code == 422
    not_a_date = await client.get(
        "/console/api/kpi", params={"from": "23.11.2026"}, headers=SUPERVISOR
    )
    assert not_a_date.status_code == 422
    unknown_table = await client.get(
        "/console/api/kpi.csv", params={**RANGE, "table": "x"}, headers=SUPERVISOR
    )
    assert unknown_table.status_code == 422


async def test_the_page_and_its_assets_fit_a_self_only_csp(client: httpx.AsyncClient) -> None:
    page = await client.get("/console/kpi", headers=SUPERVISOR)
    assert page.status_code == 200
    html = page.text
    for canvas in ("chart-channels", "chart-bot", "chart-times", "chart-quality"):
        assert f'<canvas id="{canvas}"' in html
    # script-src 'self' and no hashes: every script is a file of ours, no
    # inline script, handler attribute, style block or style attribute.
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts
    assert all('src="/console/kpi/assets/' in s for s in scripts)
    assert not re.search(r"\son[a-z]+=", html)
    assert "<style" not in html
    assert " style=" not in html
    for src in re.findall(r'(?:src|href)="(/console/kpi/assets/[^"]+)"', html):
        asset = await client.get(src)
        assert asset.status_code == 200, src
    js = await client.get("/console/kpi/assets/chart.umd.min.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert js.content == (STATIC_DIR / "vendor" / "chart.umd.min.js").read_bytes()
    assert b"Chart.js v4" in js.content[:200]
    assert (await client.get("/console/kpi/assets/..%2Fkpi.py")).status_code == 404
    assert (await client.get("/console/kpi/assets/missing.js")).status_code == 404
