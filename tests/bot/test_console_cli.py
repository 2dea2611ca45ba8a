"""``python -m bot operators ...`` as an admin runs it."""

from __future__ import annotations

from pathlib import Path

from tests.bot.test_cli import run_bot


def test_add_list_disable_operators(tmp_path: Path) -> None:
    added = run_bot(
        tmp_path, "operators", "add", "admin", "--role", "admin", "--password-stdin",
        "--telegram-id", "123456", stdin="a-strong-password\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "operator admin added (admin)"
    again = run_bot(
        tmp_path, "operators", "add", "admin", "--password-stdin", stdin="a-strong-password\n"
    )
    assert again.returncode == 1
    assert "exists already" in again.stderr
    assert run_bot(
        tmp_path, "operators", "add", "olga", "--name", "Ольга", "--password-stdin",
        stdin="another-strong-one\n",
    ).returncode == 0  # fmt: skip

    listed = run_bot(tmp_path, "operators", "list")
    assert listed.returncode == 0, listed.stderr
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert lines == [
        ["admin", "admin", "offline", "admin", "telegram"],
        ["olga", "operator", "offline", "Ольга"],
    ]
    assert "123456" not in listed.stdout
    assert "a-strong-password" not in added.stdout + added.stderr

    disabled = run_bot(tmp_path, "operators", "disable", "olga")
    assert disabled.returncode == 0, disabled.stderr
    assert run_bot(tmp_path, "operators", "list").stdout.splitlines()[1].endswith("disabled")
