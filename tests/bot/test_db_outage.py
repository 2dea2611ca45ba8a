"""A database that goes away under a running app: the widget answers with a
clear error, the socket stays usable, readiness says so, and a resend after
the database is back is processed once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from bot.app import create_app
from config import Settings
from storage.migrate import upgrade
from tests.bot.conftest import Tab, bot_texts
from tests.conftest import PG_ADMIN_DSN, make_settings, pg_admin, pg_url, run_in_thread

pytestmark = pytest.mark.postgres


def admin(sql: str) -> None:
    run_in_thread(lambda: asyncio.run(pg_admin(sql)))


@pytest.fixture(scope="module")
def pg_app_settings(nlu_model_path: Path) -> Iterator[Settings]:
    name = f"heatdesk_outage_{uuid.uuid4().hex[:8]}"
    try:
        admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        from tests.conftest import service_missing

        service_missing(f"PostgreSQL at {PG_ADMIN_DSN}", exc)
    settings = make_settings(pg_url(name), nlu_model_path=nlu_model_path)
    run_in_thread(lambda: upgrade(settings))
    try:
        yield settings
    finally:
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cut(name: str) -> None:
    admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")


def test_database_outage_is_answered_and_nothing_accepted_is_lost(
    pg_app_settings: Settings,
) -> None:
    name = pg_app_settings.database_url.rsplit("/", 1)[1]
    with TestClient(create_app(pg_app_settings)) as client:
        with client.websocket_connect("/widget/ws") as ws:
            tab = Tab(ws).hello()
            frames, ack = tab.say("здравствуйте")
            assert ack["type"] == "ack"
            assert bot_texts(frames)

            cut(name)
            assert client.get("/readyz").status_code == 503
            frames, err = tab.say("как оплатить?", client_id="during-outage")
            assert frames == []
            assert err["type"] == "error"
            assert err["code"] == "unavailable"
            assert "попробуйте" in err["text"].lower()
            ws.send_json({"type": "ping"})  # the socket is still there
            assert ws.receive_json() == {"type": "pong"}
            # A tab opened now cannot read its history: told so, asked to come back.
            with client.websocket_connect("/widget/ws") as late:
                late.send_json({"type": "hello", "token": tab.token})
                assert late.receive_json()["code"] == "unavailable"
                with pytest.raises(WebSocketDisconnect) as closed:
                    late.receive_json()
                assert closed.value.code == 1013

            admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert client.get("/readyz").status_code == 200
            # The widget resends with the same client_id: processed once now.
            frames, ack = tab.say("как оплатить?", client_id="during-outage")
            assert ack == {"type": "ack", "client_id": "during-outage", "duplicate": False}
            assert bot_texts(frames)
            again, ack = tab.say("как оплатить?", client_id="during-outage")
            assert (again, ack["duplicate"]) == ([], True)
        with client.websocket_connect("/widget/ws") as ws:
            history = Tab(ws).hello(tab.token).history
    said = [m["text"] for m in history if m["sender"] == "customer"]
    assert said == ["здравствуйте", "как оплатить?"]
