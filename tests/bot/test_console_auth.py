"""The console's door: sessions, roles, CSRF, the lockout, logout, the pages."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

from bot.app import create_app
from storage.models import OperatorRole
from tests.bot.conftest import app_settings_for
from tests.bot.console_support import (
    PASSWORD,
    add_operator,
    browser,
    log_in,
    login_token,
    new_login,
    try_login,
)

# Every console API route a browser may call, with the least role it needs
# (None: any logged-in operator).
PROTECTED_GETS = ["/console/api/me", "/console/api/canned", "/console/api/admin/operators"]
PROTECTED_POSTS = ["/console/api/logout", "/console/api/canned", "/console/api/admin/operators"]


def test_without_a_session_the_page_is_the_login_form_and_the_api_says_401(
    client: TestClient,
) -> None:
    page = client.get("/console")
    assert page.status_code == 200
    assert 'id="login-form"' in page.text
    assert "<script>" not in page.text  # the CSP admits our own script files only
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    for path in PROTECTED_GETS:
        assert client.get(path).status_code == 401, path
    for path in PROTECTED_POSTS:
        assert client.post(path, json={}).status_code == 401, path
    # A forged or expired cookie is no session either.
    client.cookies.set("heatdesk_console", "forged", path="/console")
    try:
        assert client.get("/console/api/me").status_code == 401
    finally:
        client.cookies.clear()


def test_login_sets_an_httponly_samesite_cookie_and_the_console_page(client: TestClient) -> None:
    login = new_login("anna")
    add_operator(client, login, OperatorRole.OPERATOR, display_name="Анна Смирнова")
    console = log_in(client, login)
    me = console.get("/console/api/me").json()
    assert me["operator"]["login"] == login
    assert me["operator"]["display_name"] == "Анна Смирнова"
    assert me["operator"]["role"] == "operator"
    assert me["csrf_token"] == console.csrf
    page = console.get("/console")
    assert 'id="console-app"' in page.text
    assert 'id="login-form"' not in page.text

    again = browser(client)
    done = try_login(again, login, PASSWORD)
    cookie = done.headers["set-cookie"]
    assert cookie.startswith("heatdesk_console=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Path=/console" in cookie


def test_login_needs_its_double_submit_token(client: TestClient) -> None:
    login = new_login("boris")
    add_operator(client, login, OperatorRole.OPERATOR)
    body = {"login": login, "password": PASSWORD}
    http = browser(client)
    assert http.post("/console/api/login", json=body).status_code == 403
    login_token(http)  # the cookie, but the header is another value
    refused = http.post("/console/api/login", json=body, headers={"X-CSRF-Token": "x"})
    assert refused.status_code == 403
    assert "heatdesk_console=" not in refused.headers.get("set-cookie", "")


def test_wrong_password_and_unknown_login_get_one_answer(client: TestClient) -> None:
    login = new_login("vera")
    add_operator(client, login, OperatorRole.OPERATOR)
    http = browser(client)
    wrong = try_login(http, login, "not-the-password")
    unknown = try_login(http, "nobody-here", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Неверный логин или пароль."}


def test_five_wrong_passwords_lock_the_account_for_a_while(client: TestClient) -> None:
    login = new_login("gleb")
    add_operator(client, login, OperatorRole.OPERATOR)
    http = browser(client)
    codes = [try_login(http, login, f"wrong-password-{i}").status_code for i in range(5)]
    assert codes == [401, 401, 401, 401, 429]
    # Locked: the right password is refused too, and says until when.
    locked = try_login(http, login, PASSWORD)
    assert locked.status_code == 429
    assert "заблокирована до" in locked.json()["detail"]
    assert int(locked.headers["retry-after"]) > 14 * 60
    # Someone else is not locked out by it.
    other = new_login("gleb")
    add_operator(client, other, OperatorRole.OPERATOR)
    assert try_login(http, other, PASSWORD).status_code == 200


def test_a_disabled_account_cannot_log_in_and_loses_its_sessions(client: TestClient) -> None:
    admin_login, victim = new_login("admin"), new_login("dina")
    add_operator(client, admin_login, OperatorRole.ADMIN)
    add_operator(client, victim, OperatorRole.OPERATOR)
    admin = log_in(client, admin_login)
    session = log_in(client, victim)
    assert session.get("/console/api/me").status_code == 200
    done = admin.post(f"/console/api/admin/operators/{victim}/disable")
    assert done.status_code == 200
    assert done.json()["operator"]["active"] is False
    assert session.get("/console/api/me").status_code == 401
    http = browser(client)
    assert try_login(http, victim, PASSWORD).status_code == 401


def test_wrong_role_gets_403(client: TestClient) -> None:
    op_login, sup_login = new_login("egor"), new_login("sveta")
    add_operator(client, op_login, OperatorRole.OPERATOR)
    add_operator(client, sup_login, OperatorRole.SUPERVISOR)
    operator, supervisor = log_in(client, op_login), log_in(client, sup_login)
    assert operator.get("/console/api/admin/operators").status_code == 403
    assert supervisor.get("/console/api/admin/operators").status_code == 403
    # The KPI dashboard is the supervisors'.
    assert operator.get("/console/api/kpi").status_code == 403
    assert operator.get("/console/kpi").status_code == 403
    assert supervisor.get("/console/api/kpi").status_code == 200
    assert client.get("/console/api/kpi").status_code == 401
    new = {"login": new_login("x"), "password": PASSWORD, "role": "admin"}
    assert operator.post("/console/api/admin/operators", new).status_code == 403
    canned = {"shortcut": "адрес", "text": "Наш адрес: ул. Ленина, 69."}
    assert operator.post("/console/api/canned", canned).status_code == 403
    # A supervisor may edit canned responses; every operator reads them.
    assert supervisor.post("/console/api/canned", canned).status_code == 200
    shortcuts = [c["shortcut"] for c in operator.get("/console/api/canned").json()["canned"]]
    assert "адрес" in shortcuts


def test_a_missing_or_wrong_csrf_token_gets_403_and_changes_nothing(client: TestClient) -> None:
    admin_login = new_login("admin")
    add_operator(client, admin_login, OperatorRole.ADMIN)
    admin = log_in(client, admin_login)
    new = {"login": new_login("zoya"), "password": PASSWORD, "role": "operator"}
    missing = admin.post("/console/api/admin/operators", new, csrf=False)
    assert missing.status_code == 403
    wrong = admin.http.post(
        "/console/api/admin/operators", json=new, headers={"X-CSRF-Token": "not-it"}
    )
    assert wrong.status_code == 403
    logins = [o["login"] for o in admin.get("/console/api/admin/operators").json()["operators"]]
    assert new["login"] not in logins
    assert admin.post("/console/api/logout", csrf=False).status_code == 403
    assert admin.get("/console/api/me").status_code == 200
    assert admin.post("/console/api/admin/operators", new).status_code == 201


def test_logout_ends_the_session(client: TestClient) -> None:
    login = new_login("ilya")
    add_operator(client, login, OperatorRole.OPERATOR)
    console = log_in(client, login)
    token = console.http.cookies.get("heatdesk_console")
    assert token
    done = console.post("/console/api/logout")
    assert done.status_code == 200
    assert console.get("/console/api/me").status_code == 401
    # The old cookie, replayed, is dead on the server too.
    replay = browser(client)
    replay.cookies.set("heatdesk_console", token, path="/console")
    assert replay.get("/console/api/me").status_code == 401


def test_static_files_are_served_only_from_the_list(client: TestClient) -> None:
    assert client.get("/console/static/console.js").status_code == 200
    assert (
        client.get("/console/static/login.js").headers["content-type"].startswith("text/javascript")
    )
    assert client.get("/console/static/..%2Fauth.py").status_code == 404
    assert client.get("/console/static/login.html").status_code == 404


def test_the_start_up_says_how_to_create_the_first_operator(
    tmp_path: Path, nlu_model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = app_settings_for(tmp_path, nlu_model_path)
    with caplog.at_level(logging.WARNING, logger="bot.app"), TestClient(create_app(settings)):
        pass
    hint = [r.getMessage() for r in caplog.records if "operators add" in r.getMessage()]
    assert hint, caplog.text
    assert "python -m bot operators add admin --role admin --password-stdin" in hint[0]
    assert "http://localhost:8000/console" in hint[0]
