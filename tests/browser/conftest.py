"""A real server for the browser tests: ``python -m bot run`` on a free port."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from config.settings import PROJECT_ROOT
from tests.bot.conftest import nlu_model_path  # noqa: F401 - the shared fixture


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base_url: str
    log: Path


PARTNER_HOST = "localhost"  # the test's partner site: the same server, another origin


@contextlib.contextmanager
def running_server(tmp: Path, model: Path, **env_overrides: str) -> Iterator[Server]:
    """``python -m bot run`` served by uvicorn (httptools, uvloop) on a free port."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in {"DATABASE_URL", "REDIS_URL", "ENVIRONMENT", "SECRET_KEY"}
    }
    env.update(
        PYTHONPATH=str(PROJECT_ROOT),
        ENVIRONMENT="test",
        SECRET_KEY="browser-test-secret",
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp / 'bot.sqlite3'}",
        NLU_MODEL_PATH=str(model),
        LOAD_DEMO_DATA="true",
        HOST="127.0.0.1",
        PORT=str(port),
        LOG_LEVEL="WARNING",
        # The partner site of the embedding test may open the widget's socket.
        WIDGET_ALLOWED_ORIGINS=json.dumps([f"http://{PARTNER_HOST}:{port}"]),
    )
    env.update(env_overrides)
    log = tmp / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=tmp,  # no developer's .env
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited ({proc.returncode}):\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not get ready:\n{log.read_text()}")
            time.sleep(0.2)
        yield Server(base, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, nlu_model_path: Path) -> Iterator[Server]:  # noqa: F811
    """Embedded mode on a temp SQLite file."""
    with running_server(tmp_path_factory.mktemp("server"), nlu_model_path) as running:
        yield running


@pytest.fixture
def flaky_server(tmp_path: Path, nlu_model_path: Path) -> Iterator[Server]:  # noqa: F811
    """On a private PostgreSQL database whose first tariff turn fails after the
    inbox took the message (tests/bot/test_webchat.py)."""
    from tests.bot.test_webchat import flaky_pg_database

    with (
        flaky_pg_database() as url,
        running_server(tmp_path, nlu_model_path, DATABASE_URL=url, LOAD_DEMO_DATA="false") as s,
    ):
        yield s
