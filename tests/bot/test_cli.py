"""``python -m bot`` as a customer or an admin uses it: the chat and nlu parse
as subprocesses, the admin commands through main() in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
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


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment ``python -m bot`` reads, for in-process runs of its main()."""
    monkeypatch.chdir(tmp_path)  # no developer's .env
    for name in ("REDIS_URL", "NLU_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("SECRET_KEY", "cli-test-secret")
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}")
    return tmp_path


def test_db_upgrade_and_demo_data_once(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == "database upgraded to head"
    assert main(["demo-data"]) == 0
    assert capsys.readouterr().out.strip() == "demo data loaded"
    assert main(["demo-data"]) == 0
    assert capsys.readouterr().out.strip() == "demo data already present"


def test_unsafe_production_settings_exit_2(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("SECRET_KEY")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err
    assert "SECRET_KEY" in err
