"""A database that goes away under a running app: the widget answers with a
clear error, the socket stays usable, readiness says so, and a resend after
the database is back is processed once. An outage is one warning line, not a
traceback per message, whether the database refuses connections or its server
is down (a private PostgreSQL of the test's own, stopped and started)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from bot.app import create_app
from bot.container import Container
from bot.pipeline import StorageUnavailable
from config import Settings
from dialogs.messages import InboundMessage
from storage.migrate import upgrade
from tests.bot.conftest import Tab, bot_texts
from tests.conftest import (
    cut_pg_database,
    make_settings,
    own_pg_database,
    reopen_pg_database,
    run_in_thread,
)
from tests.servers import PrivatePostgres

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_app_settings(nlu_model_path: Path) -> Iterator[Settings]:
    with own_pg_database("outage") as url:
        yield make_settings(url, nlu_model_path=nlu_model_path)


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

            cut_pg_database(name)
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

            reopen_pg_database(name)
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


# --------------------------------------------------------------------------
# A private PostgreSQL, refused and stopped
# --------------------------------------------------------------------------

DATABASE = "heatdesk"


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        server_admin(server, f'CREATE DATABASE "{DATABASE}"')
        yield server
    finally:
        server.destroy()


def server_admin(server: PrivatePostgres, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(server.url().replace("+asyncpg", ""), timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_in_thread(lambda: asyncio.run(run()))


def private_settings(server: PrivatePostgres, nlu_model_path: Path) -> Settings:
    settings = make_settings(server.url(DATABASE), nlu_model_path=nlu_model_path)
    run_in_thread(lambda: upgrade(settings))
    return settings


def msg(n: int) -> InboundMessage:
    return InboundMessage(
        channel="test",
        chat_id="outage-1",
        user_id="outage-1",
        text="как оплатить?",
        platform_message_id=f"m-{n}",
        received_at=datetime.now(UTC),
    )


async def test_an_outage_is_one_warning_and_the_resends_are_answered(
    private_pg: PrivatePostgres, nlu_model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse() -> None:
        # What asyncpg reports while connecting ("not currently accepting
        # connections"): SQLAlchemy wraps it as a bare DBAPIError.
        server_admin(private_pg, f'ALTER DATABASE "{DATABASE}" ALLOW_CONNECTIONS false')
        server_admin(
            private_pg,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{DATABASE}'",
        )

    def allow() -> None:
        server_admin(private_pg, f'ALTER DATABASE "{DATABASE}" ALLOW_CONNECTIONS true')

    outages: list[tuple[Callable[[], None], Callable[[], None]]] = [
        (refuse, allow),
        (private_pg.stop, private_pg.start),  # the server is gone: connection refused
    ]
    container = Container(private_settings(private_pg, nlu_model_path))
    await container.start()
    try:
        assert (await container.handle(msg(0))).replies
        caplog.set_level(logging.INFO)
        caplog.clear()
        n = 0
        for cut, restore in outages:
            await asyncio.to_thread(cut)
            failed = []
            for _ in range(5):
                n += 1
                with pytest.raises(StorageUnavailable):
                    await container.handle(msg(n))
                failed.append(n)
            assert not await container.ping_database()
            await asyncio.to_thread(restore)
            # The customer's retries (the widget resends with the same id).
            for m in failed:
                result = await container.handle(msg(m))
                assert not result.duplicate
                assert result.replies
    finally:
        await container.close()

    assert [r for r in caplog.records if r.exc_info or r.exc_text] == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == len(outages), warnings
    assert all("storage unavailable" in w for w in warnings)
    back = [r for r in caplog.records if "storage is back" in r.getMessage()]
    assert len(back) == len(outages)
