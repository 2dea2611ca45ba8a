"""Console test helpers: operator accounts and logged-in clients."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

from handlers import operators as accounts
from storage.models import OperatorRole
from tests.bot.conftest import container_of

PASSWORD = "correct-horse-battery"
_logins = itertools.count(1)


def new_login(prefix: str) -> str:
    return f"{prefix}{next(_logins)}"


def add_operator(client: TestClient, login: str, role: OperatorRole, **kw: Any) -> int:
    """An account made in the app's own database, in the app's event loop."""
    container = container_of(client)

    async def add() -> int:
        async with container.conversations.transaction() as session:
            info = await accounts.add_operator(
                session,
                container.vault,
                accounts.NewOperator(login=login, password=PASSWORD, role=role, **kw),
                datetime.now(UTC),
            )
            await session.commit()
        return info.id

    assert client.portal is not None
    return client.portal.call(add)


@dataclass
class Console:
    """One operator's browser: its cookies (a client of its own) and CSRF token."""

    http: TestClient
    csrf: str
    operator_id: int

    def get(self, path: str) -> Any:
        return self.http.get(path)

    def post(self, path: str, json: Any = None, *, csrf: bool = True) -> Any:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self.http.post(path, json=json or {}, headers=headers)

    def delete(self, path: str) -> Any:
        return self.http.delete(path, headers={"X-CSRF-Token": self.csrf})


def login_token(http: TestClient) -> str:
    got = http.get("/console/api/login")
    assert got.status_code == 200
    token = got.json()["csrf_token"]
    assert isinstance(token, str)
    return token


def try_login(http: TestClient, login: str, password: str) -> Any:
    return http.post(
        "/console/api/login",
        json={"login": login, "password": password},
        headers={"X-CSRF-Token": login_token(http)},
    )


def browser(client: TestClient) -> TestClient:
    """A cookie jar of its own on the app ``client`` runs (its event loop)."""
    http = TestClient(client.app, base_url="http://testserver", client=("127.0.0.1", 50001))
    http.portal = client.portal
    return http


def log_in(client: TestClient, login: str, password: str = PASSWORD) -> Console:
    """One operator's browser, logged in."""
    http = browser(client)
    done = try_login(http, login, password)
    assert done.status_code == 200, done.text
    body = done.json()
    return Console(http, body["csrf_token"], body["operator"]["id"])
