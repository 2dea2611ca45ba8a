"""How fast the operators' Telegram desk follows a chat, through the real server.

Starts ``python -m bot run`` with the desk on, its bot pointed at a local Bot
API server (the tests' fake, in this process), and one operator whose Telegram
id is on their account. Each customer of the widget asks for an operator; it
measures the time from that turn's ack to the topic's summary arriving at the
Bot API, and from the operator's message reaching the server's ``getUpdates``
queue to the customer's widget showing it; then ``/resolve`` closes the chat.

    .venv/bin/python bench/desk.py [--chats 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import load_settings  # noqa: E402
from handlers.operators import telegram_user_hash  # noqa: E402
from storage.crypto import PersonalDataVault  # noqa: E402
from storage.db import create_engine, create_session_factory  # noqa: E402
from storage.models import Operator, OperatorRole, Presence  # noqa: E402
from tests.fakes.telegram_api import FakeBotApi, topic_message_update  # noqa: E402

DESK_TOKEN = "987654321:AAOperatorDeskBenchToken_00000000000"
GROUP = -1001234567890
OPERATOR_TELEGRAM_ID = 9_000_001
SECRET_KEY = "bench-desk-secret-key-0123456789abcdefghijklmnop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def add_operator(database_url: str) -> None:
    settings = load_settings(database_url=database_url, secret_key=SECRET_KEY)
    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            session.add(
                Operator(
                    login="anna",
                    display_name="Анна",
                    role=OperatorRole.OPERATOR,
                    password_hash="-",
                    active=True,
                    presence=Presence.AWAY,
                    telegram_user_hash=telegram_user_hash(
                        PersonalDataVault(SECRET_KEY), OPERATOR_TELEGRAM_ID
                    ),
                    created_at=datetime.now(UTC),
                )
            )
            await session.commit()
    finally:
        await engine.dispose()


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (the fake Bot API's record, kept by another thread)."""
    deadline = time.monotonic() + 30
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        await asyncio.sleep(0.002)


async def one_chat(url: str, api: FakeBotApi, n: int) -> tuple[float, float]:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "hello", "token": None}))
        await ws.recv()  # session
        await ws.recv()  # history

        async def say(text: str) -> None:
            cid = uuid.uuid4().hex
            await ws.send(json.dumps({"type": "message", "text": text, "client_id": cid}))
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("client_id") == cid:
                    return

        await say("у нас холодные батареи третий день")
        before = set(api.topics)
        await say("соедините с оператором")
        acked = time.perf_counter()

        def summary_shown() -> bool:
            new = set(api.topics) - before
            return bool(new) and bool(api.topic_texts(GROUP, next(iter(new))))

        await wait_for(summary_shown)
        opened = time.perf_counter() - acked
        (thread,) = set(api.topics) - before
        text = f"Здравствуйте, это Анна ({n})."
        pushed = time.perf_counter()
        api.push_update(topic_message_update(GROUP, thread, OPERATOR_TELEGRAM_ID, text))
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "message" and frame.get("text") == text:
                break
        replied = time.perf_counter() - pushed
        api.push_update(topic_message_update(GROUP, thread, OPERATOR_TELEGRAM_ID, "/resolve"))
        await wait_for(lambda: api.topics[thread].closed)
        return opened, replied


def quantiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=20) if len(values) > 1 else values * 19
    return f"p50={statistics.median(values) * 1000:6.1f} ms  p95={q[18] * 1000:6.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=20, help="escalated chats, one after another")
    args = parser.parse_args()
    port = free_port()
    api = FakeBotApi(token=DESK_TOKEN).start()
    with tempfile.TemporaryDirectory() as tmp:
        database_url = os.environ.get(
            "DATABASE_URL", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}"
        )
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url,
            PORT=str(port),
            HOST="127.0.0.1",
            LOG_LEVEL="WARNING",
            PYTHONPATH=str(ROOT),
            SECRET_KEY=SECRET_KEY,
            OPERATOR_BOT_TOKEN=DESK_TOKEN,
            OPERATOR_CHAT_ID=str(GROUP),
            OPERATOR_API_BASE=api.base_url,
            TELEGRAM_POLL_TIMEOUT_SECONDS="1",
            # Open around the clock, so that every escalation reaches the queue.
            CONTACT_CENTER_DAYS="[1,2,3,4,5,6,7]",
            CONTACT_CENTER_OPEN_HOUR="0",
            CONTACT_CENTER_CLOSE_HOUR="24",
        )
        server = subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=ROOT, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    print("the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            asyncio.run(add_operator(database_url))
            url = f"ws://127.0.0.1:{port}/widget/ws"
            opened: list[float] = []
            replied: list[float] = []
            for n in range(args.chats):
                a, b = asyncio.run(one_chat(url, api, n))
                opened.append(a)
                replied.append(b)
            backend = database_url.split(":", 1)[0]
            print(f"operators' desk, {backend}, load average {os.getloadavg()[0]:.2f}")
            print(f"chats={len(opened)}  escalation -> summary in the topic: {quantiles(opened)}")
            print(f"chats={len(replied)}  topic message -> customer's widget: {quantiles(replied)}")
        finally:
            server.terminate()
            server.wait(timeout=15)
            api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
