"""The KPI routes in the real app, behind the console's guard: supervisors in, operators 403."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

from bot.app import create_app
from config import Settings
from storage.models import OperatorRole
from tests.bot.console_support import add_operator, log_in, new_login

KPI_PATHS = ("/console/api/kpi", "/console/api/kpi.csv", "/console/kpi")


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    """The real app: bot/app.py mounts the KPI routes behind require_role(SUPERVISOR)."""
    with TestClient(create_app(app_settings), client=("127.0.0.1", 50000)) as c:
        yield c


def test_an_operator_gets_403_a_supervisor_and_an_admin_the_figures(client: TestClient) -> None:
    for path in KPI_PATHS[:2]:
        assert client.get(path).status_code == 401, path
    login_first = client.get("/console/kpi", follow_redirects=False)
    assert (login_first.status_code, login_first.headers["location"]) == (303, "/console")

    operator = log_in(client, add_login(client, OperatorRole.OPERATOR))
    for path in KPI_PATHS:
        refused = operator.get(path)
        assert refused.status_code == 403, path
        assert "conversations" not in refused.text

    for role in (OperatorRole.SUPERVISOR, OperatorRole.ADMIN):
        console = log_in(client, add_login(client, role))
        figures = console.get("/console/api/kpi?from=2026-11-23&to=2026-11-27")
        assert figures.status_code == 200, role
        body = figures.json()
        assert (body["start"], body["end"]) == ("2026-11-23", "2026-11-27")
        # The app's own database (the container's session factory), where
        # this operator now is: a row in the per-operator table.
        assert console.operator_id in [o["operator_id"] for o in body["operators"]]
        exported = console.get("/console/api/kpi.csv?table=operators")
        assert exported.status_code == 200
        assert exported.content.decode("utf-8-sig").startswith("Оператор;Логин;Чатов")
        page = console.get("/console/kpi")
        assert page.status_code == 200
        assert '<canvas id="chart-channels"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]


def add_login(client: TestClient, role: OperatorRole) -> str:
    login = new_login(role.value)
    add_operator(client, login, role, display_name=f"Тест {role.value}")
    return login
