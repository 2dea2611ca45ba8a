"""``python -m bot`` driven as a customer or an admin would: a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from config.settings import PROJECT_ROOT


def run_bot(
    tmp_path: Path, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in {"DATABASE_URL", "REDIS_URL", "ENVIRONMENT", "SECRET_KEY"}
    }
    base.update(
        PYTHONPATH=str(PROJECT_ROOT),
        ENVIRONMENT="test",
        SECRET_KEY="cli-test-secret",
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}",
        LOG_LEVEL="WARNING",
    )
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,  # no developer's .env
        env=base,
        check=False,
    )


def test_nlu_parse_prints_rasa_shaped_json(tmp_path: Path, nlu_model_path: Path) -> None:
    done = run_bot(
        tmp_path, "nlu", "parse", "хочу передать показания 1234,5",
        NLU_MODEL_PATH=str(nlu_model_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["intent"]["name"] == "submit_reading"
    assert {"entity": "reading_value", "value": "1234.5"}.items() <= result["entities"][0].items()
    assert result["intent_ranking"][0]["name"] == "submit_reading"


def test_chat_answers_in_the_terminal_and_buttons_are_numbers(
    tmp_path: Path, nlu_model_path: Path
) -> None:
    done = run_bot(tmp_path, "chat", stdin="здравствуйте\n1\n", NLU_MODEL_PATH=str(nlu_model_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    lines = out.splitlines()
    assert "Курская генерация" in lines[0]
    greeting = lines[1]
    assert greeting.startswith("Бот: ")
    assert "Здравствуйте" in greeting
    # The greeting offers numbered buttons; "1" presses the first one.
    first = next(line for line in lines if line.startswith("  [1] "))
    title = first.removeprefix("  [1] ")
    assert f"Вы: {title}" in lines
    after = lines[lines.index(f"Вы: {title}") + 1 :]
    assert after
    assert after[0].startswith("Бот: ")


def test_db_upgrade_and_demo_data_once(tmp_path: Path) -> None:
    up = run_bot(tmp_path, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    first = run_bot(tmp_path, "demo-data")
    assert (first.returncode, first.stdout.strip()) == (0, "demo data loaded")
    second = run_bot(tmp_path, "demo-data")
    assert (second.returncode, second.stdout.strip()) == (0, "demo data already present")


def test_unsafe_production_settings_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.upper() != "SECRET_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(PROJECT_ROOT), "ENVIRONMENT": "production"},
        check=False,
    )
    assert done.returncode == 2
    assert "configuration error" in done.stderr
    assert "SECRET_KEY" in done.stderr
    assert "Traceback" not in done.stderr
