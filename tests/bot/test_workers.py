"""``python -m bot run --workers N``: N uvicorn worker processes on PostgreSQL
and Redis; refused where one process is all the storage allows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.cli import main
from config.settings import PROJECT_ROOT
from tests.conftest import own_pg_database
from tests.servers import free_port

START_TIMEOUT_SECONDS = 120.0  # two processes load the NLU model on two busy cores
STARTED = "Application startup complete."


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes that are uvicorn workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:  # multiprocessing's spawned worker
            found.append(int(entry.name))
    return found


@pytest.fixture
def worker_database() -> Iterator[str]:
    with own_pg_database("workers") as url:
        yield url


@pytest.mark.postgres
@pytest.mark.redis
def test_two_workers_serve_on_postgres_and_redis(
    tmp_path: Path, nlu_model_path: Path, worker_database: str, redis_url: str
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k.upper() != "WEB_CONCURRENCY"},
        "PYTHONPATH": str(PROJECT_ROOT),
        "ENVIRONMENT": "test",
        "SECRET_KEY": "workers-test-secret",
        "DATABASE_URL": worker_database,
        "REDIS_URL": redis_url,
        "NLU_MODEL_PATH": str(nlu_model_path),
        "LOAD_DEMO_DATA": "false",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--workers", "2"],
            cwd=tmp_path,  # no developer's .env
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while log_path.read_text(errors="replace").count(STARTED) < 2:
            assert server.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.2)
        workers = children(server.pid)
        assert len(workers) == 2, (workers, log_path.read_text(errors="replace"))
        for _ in range(4):  # connections are spread over the workers by the kernel
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            assert response.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@pytest.mark.parametrize(
    ("env", "needed"),
    [
        ({"DATABASE_URL": "sqlite+aiosqlite:///x.sqlite3"}, "PostgreSQL"),
        ({"DATABASE_URL": "postgresql+asyncpg://u@127.0.0.1/x"}, "REDIS_URL"),
        (
            {"DATABASE_URL": "sqlite+aiosqlite:///x.sqlite3", "WEB_CONCURRENCY": "3"},
            "PostgreSQL",
        ),
    ],
)
def test_several_workers_without_shared_storage_are_refused(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    env: dict[str, str],
    needed: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("SECRET_KEY", "workers-test-secret")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = ["run"] if "WEB_CONCURRENCY" in env else ["run", "--workers", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "workers" in err
    assert needed in err
