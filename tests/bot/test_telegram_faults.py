"""Telegram faults that need PostgreSQL: the database going away while
webhooks arrive, and the app killed between acknowledging and replying."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from starlette.testclient import TestClient

from bot.app import create_app
from bot.channels.telegram import SECRET_HEADER, WEBHOOK_PATH
from bot.container import Container
from config import Settings
from config.settings import PROJECT_ROOT
from storage.crypto import PersonalDataVault
from tests.bot.telegram_support import FAST_DELIVERY, PUBLIC_URL, SECRET, TelegramChat, drain
from tests.conftest import (
    cut_pg_database,
    make_settings,
    own_pg_database,
    pg_url,
    reopen_pg_database,
    run_in_thread,
)
from tests.fakes.telegram_api import TOKEN, FakeBotApi, free_port, message_update

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_name(nlu_model_path: Path) -> Iterator[str]:
    """A migrated database of the test's own (it is cut off or shared with a subprocess)."""
    with own_pg_database("tg") as url:
        yield url.rsplit("/", 1)[1]


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    server = FakeBotApi().start()
    yield server
    server.stop()


def pg_settings(name: str, nlu_model_path: Path, api: FakeBotApi) -> Settings:
    return make_settings(
        pg_url(name),
        nlu_model_path=nlu_model_path,
        telegram_bot_token=TOKEN,
        telegram_webhook_secret=SECRET,
        telegram_api_base=api.base_url,
        public_base_url=PUBLIC_URL,
        telegram_request_timeout_seconds=5.0,
    )


async def _inbound_texts(name: str, chat_id: str) -> list[str]:
    conn = await asyncpg.connect(pg_url(name).replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await conn.fetch(
            "SELECT m.text FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            "WHERE c.chat_id = $1 AND m.direction = 'in' ORDER BY m.id",
            chat_id,
        )
        return [r[0] for r in rows]
    finally:
        await conn.close()


async def _outbox(name: str, chat_id: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(pg_url(name).replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await conn.fetch(
            "SELECT status, body->>'text' FROM outbox WHERE chat_id = $1 ORDER BY id",
            chat_id,
        )
        return [(r[0], r[1]) for r in rows]
    finally:
        await conn.close()


def inbound_texts(name: str, chat_id: str) -> list[str]:
    """The customer's messages in the chat stored as ``chat_id`` (its keyed hash)."""
    return run_in_thread(lambda: asyncio.run(_inbound_texts(name, chat_id)))


def outbox(name: str, chat_id: str) -> list[tuple[str, str]]:
    return run_in_thread(lambda: asyncio.run(_outbox(name, chat_id)))


def test_postgres_unavailable_the_webhook_answers_503_and_nothing_accepted_is_lost(
    pg_name: str, nlu_model_path: Path, api: FakeBotApi
) -> None:
    settings = pg_settings(pg_name, nlu_model_path, api)
    app = create_app(settings, Container(settings, delivery_policy=FAST_DELIVERY))
    with TestClient(app) as client:
        chat = TelegramChat(client, api)
        stored = chat.stored_id
        assert chat.say("привет")

        cut_pg_database(pg_name)
        during = message_update(chat.chat_id, "как оплатить")
        # Not recorded: Telegram is told to deliver it again.
        for _ in range(2):
            response = chat.post(during)
            assert response.status_code == 503
            assert response.headers["Retry-After"]
        drain(client)
        sent_during_outage = len(api.sent(chat.chat_id))

        reopen_pg_database(pg_name)
        # Telegram's redeliveries: answered once.
        before = len(api.sent(chat.chat_id))
        for _ in range(2):
            assert chat.post(during).status_code == 200
        drain(client)
        api.wait_for(lambda: len(api.sent(chat.chat_id)) > before, what="the reply")
        api.wait_for(
            lambda: all(status == "sent" for status, _ in outbox(pg_name, stored)),
            what="every reply sent",
        )
    assert sent_during_outage == 1  # only the greeting
    assert inbound_texts(pg_name, stored) == ["привет", "как оплатить"]
    assert api.texts(chat.chat_id) == [text for _, text in outbox(pg_name, stored)]


class AppProcess:
    """``tests.fakes.serve_app`` in a process of its own, on PostgreSQL."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.fakes.serve_app", "--lease", "3"],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the app did not start: " + self.log.read_text()[-3000:])
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def test_killed_after_acknowledging_the_reply_is_sent_after_a_restart(
    pg_name: str, nlu_model_path: Path, api: FakeBotApi, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "REDIS_"))}
    env.update(
        ENVIRONMENT="test",
        HOST="127.0.0.1",
        PORT=str(port),
        DATABASE_URL=pg_url(pg_name),
        SECRET_KEY="test-secret-key",
        NLU_MODEL_PATH=str(nlu_model_path),
        LOAD_DEMO_DATA="false",
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        TELEGRAM_API_BASE=api.base_url,
        PUBLIC_BASE_URL=PUBLIC_URL,
        # Longer than the hang: the send is still in flight when the process dies.
        TELEGRAM_REQUEST_TIMEOUT_SECONDS="60",
    )
    log = tmp_path / "app.log"
    chat_id = 733_000_001
    stored = PersonalDataVault(env["SECRET_KEY"]).hash_address("telegram", str(chat_id))
    update = message_update(chat_id, "здравствуйте")
    with api.hanging("sendMessage"):
        first = AppProcess(env, port, log).start()
        try:
            api.wait_for(lambda: bool(api.calls("setWebhook")), what="setWebhook")
            response = httpx.post(
                f"{first.url}{WEBHOOK_PATH}",
                json=update,
                headers={SECRET_HEADER: SECRET},
                timeout=30,
            )
            assert response.status_code == 200  # acknowledged...
            api.wait_for(lambda: api.arrived("sendMessage") >= 1, what="the reply on its way")
        finally:
            first.kill()  # ...and killed before the reply got out
    assert api.sent(chat_id) == []
    assert [status for status, _ in outbox(pg_name, stored)] == ["pending"]

    second = AppProcess(env, port, log).start()
    try:
        api.wait_for(lambda: len(api.sent(chat_id)) >= 1, timeout=60, what="the reply")
        api.wait_for(
            lambda: all(status == "sent" for status, _ in outbox(pg_name, stored)),
            what="every reply sent",
        )
        # Telegram, not having seen... nothing: a redelivery now is a duplicate.
        response = httpx.post(
            f"{second.url}{WEBHOOK_PATH}", json=update, headers={SECRET_HEADER: SECRET}, timeout=30
        )
        assert response.status_code == 200
    finally:
        second.stop()
    texts = api.texts(chat_id)
    assert texts == [text for _, text in outbox(pg_name, stored)]
    assert texts[0].startswith("Здравствуйте")
    assert inbound_texts(pg_name, stored) == ["здравствуйте"]
