"""Fixtures of the outer shell: a trained NLU model and a started app;
helpers for a widget tab and for two app processes on one database."""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

with warnings.catch_warnings():
    # Starlette asks for httpx2 (a dev dependency); with only httpx it still works.
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient
    from starlette.testclient import WebSocketTestSession as WS

from bot.app import create_app
from bot.channels.webchat import WebchatAdapter
from bot.container import Container
from bot.delivery import DeliveryPolicy
from config import Settings
from config.settings import PROJECT_ROOT
from tests.conftest import make_settings, run_in_thread

Frame = dict[str, Any]


_trained: list[Path] = []  # shared by the directories that import the fixture


@pytest.fixture(scope="session")
def nlu_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained embedded model, once per session (the developer's copy in var/
    is reused when it is current; load_or_train retrains a stale one)."""
    from nlu.embedded import load_or_train

    if _trained:
        return _trained[0]
    path = tmp_path_factory.mktemp("nlu") / "nlu-model.pkl"
    local = PROJECT_ROOT / "var" / "nlu-model.pkl"
    if local.exists():
        shutil.copyfile(local, path)
    settings = make_settings("sqlite+aiosqlite:///:memory:", nlu_model_path=path)
    run_in_thread(lambda: load_or_train(settings))
    _trained.append(path)
    return path


def app_settings_for(tmp: Path, nlu_model_path: Path, **overrides: object) -> Settings:
    """Embedded mode on a fresh SQLite file: the lifespan migrates and loads demo data."""
    return make_settings(
        f"sqlite+aiosqlite:///{tmp / 'bot.sqlite3'}",
        load_demo_data=True,
        nlu_model_path=nlu_model_path,
        **overrides,
    )


@pytest.fixture(scope="module")
def app_settings(tmp_path_factory: pytest.TempPathFactory, nlu_model_path: Path) -> Settings:
    return app_settings_for(tmp_path_factory.mktemp("app"), nlu_model_path)


@pytest.fixture(scope="module")
def client(app_settings: Settings) -> Iterator[TestClient]:
    """The app with its lifespan run (migrations, demo data, NLU, worker)."""
    # A client on this machine, as an operator scraping /metrics would be.
    with TestClient(create_app(app_settings), client=("127.0.0.1", 50000)) as c:
        yield c


def container_of(client: TestClient) -> Container:
    container = client.app.state.container  # type: ignore[attr-defined]
    assert isinstance(container, Container)
    return container


class AppProcess(NamedTuple):
    """One started app, as one of several processes would run it."""

    client: TestClient
    container: Container


@contextlib.contextmanager
def two_app_processes(
    settings: Settings, delivery_policy: DeliveryPolicy | None = None
) -> Iterator[tuple[AppProcess, AppProcess]]:
    """Two app containers with their lifespans run, on the same settings (one
    PostgreSQL and Redis: see tests.conftest.shared_app_settings)."""
    a = Container(settings, delivery_policy=delivery_policy)
    b = Container(settings, delivery_policy=delivery_policy)
    with (
        TestClient(create_app(settings, a)) as app_a,
        TestClient(create_app(settings, b)) as app_b,
    ):
        yield AppProcess(app_a, a), AppProcess(app_b, b)


class Tab:
    """One browser tab speaking the widget protocol."""

    def __init__(self, ws: WS) -> None:
        self.ws = ws
        self.token: str = ""
        self.history: list[Frame] = []
        self._n = 0

    def hello(self, token: str | None = None) -> Tab:
        self.ws.send_json({"type": "hello", "token": token})
        session = self.ws.receive_json()
        assert session["type"] == "session", session
        history = self.ws.receive_json()
        assert history["type"] == "history", history
        self.token, self.history = session["token"], history["messages"]
        return self

    def next_id(self) -> str:
        self._n += 1
        return f"cid-{id(self)}-{self._n}"

    def send(self, frame: Frame) -> tuple[list[Frame], Frame]:
        """Send a frame with a client_id; the frames up to its ack or error."""
        self.ws.send_json(frame)
        return self.until(frame["client_id"])

    def until(self, client_id: str) -> tuple[list[Frame], Frame]:
        before: list[Frame] = []
        while True:
            got = self.ws.receive_json()
            if got["type"] in {"ack", "error"} and got.get("client_id") == client_id:
                return before, got
            before.append(got)

    def say(self, text: str, client_id: str | None = None) -> tuple[list[Frame], Frame]:
        return self.send(
            {"type": "message", "text": text, "client_id": client_id or self.next_id()}
        )

    def press(self, title: str, payload: str) -> tuple[list[Frame], Frame]:
        return self.send(
            {"type": "button", "title": title, "payload": payload, "client_id": self.next_id()}
        )


def bot_texts(frames: list[Frame]) -> list[str]:
    return [f["text"] for f in frames if f["type"] == "message" and f["sender"] == "bot"]


def sid_of(client: TestClient, tab: Tab) -> str:
    """The widget session id behind ``tab``'s token."""
    adapter = container_of(client).channels["webchat"]
    assert isinstance(adapter, WebchatAdapter)
    sid = adapter.sessions.verify(tab.token)
    assert sid is not None
    return sid
