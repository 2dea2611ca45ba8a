"""SECRET_KEY: generated once and kept when unset, the published default refused."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from config import ConfigError, Settings, load_settings
from config.settings import DEFAULT_SECRET_KEY, read_or_create_secret_key
from storage.crypto import PersonalDataVault


def unset_key(key_file: Path, environment: str = "development") -> Settings:
    # secret_key="" stands for "not configured" even if the shell exports one.
    return load_settings(environment=environment, secret_key="", secret_key_file=key_file)


def key_of(settings: Settings) -> str:
    return settings.secret_key.get_secret_value()


def test_an_unset_key_is_generated_once_and_read_on_later_starts(tmp_path: Path) -> None:
    key_file = tmp_path / "var" / "secret_key"
    first = unset_key(key_file)
    second = unset_key(key_file)
    assert key_of(first) == key_of(second)
    assert key_of(first) != DEFAULT_SECRET_KEY
    assert len(key_of(first)) >= 32
    assert key_file.read_text().strip() == key_of(first)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Nothing but the key is left in the directory (no temporary files).
    assert [p.name for p in key_file.parent.iterdir()] == ["secret_key"]


def test_production_without_a_key_refuses_to_start_and_says_how_to_fix_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY is not set") as refused:
        unset_key(tmp_path / "secret_key", environment="production")
    assert "token_urlsafe" in str(refused.value)
    # Nothing is generated that a redeploy would silently lose.
    assert not (tmp_path / "secret_key").exists()


def test_separate_installations_get_different_keys(tmp_path: Path) -> None:
    assert key_of(unset_key(tmp_path / "a" / "secret_key")) != key_of(
        unset_key(tmp_path / "b" / "secret_key")
    )


def test_personal_data_encrypted_before_a_restart_reads_after_it(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    before = PersonalDataVault(key_of(unset_key(key_file)))
    stored = before.encrypt("+7 903 123-45-67")
    after = PersonalDataVault(key_of(unset_key(key_file)))
    assert after.decrypt(stored) == "+7 903 123-45-67"
    assert after.hash_snils("112-233-445 95") == before.hash_snils("112-233-445 95")


def test_processes_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    keys: list[str] = []
    start = threading.Barrier(8)

    def boot() -> None:
        start.wait()
        keys.append(read_or_create_secret_key(key_file))

    threads = [threading.Thread(target=boot) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8
    assert set(keys) == {key_file.read_text().strip()}


@pytest.mark.parametrize("environment", ["development", "production"])
def test_the_published_default_key_is_refused(tmp_path: Path, environment: str) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY") as refused:
        load_settings(
            environment=environment,
            secret_key=DEFAULT_SECRET_KEY,
            secret_key_file=tmp_path / "secret_key",
        )
    # The message says what to do about it.
    assert "set it to a long random value" in str(refused.value)
    assert not (tmp_path / "secret_key").exists()


def test_tests_may_use_the_published_default(tmp_path: Path) -> None:
    settings = unset_key(tmp_path / "secret_key", environment="test")
    assert key_of(settings) == DEFAULT_SECRET_KEY
    assert not (tmp_path / "secret_key").exists()


def test_a_configured_key_wins_over_the_kept_one(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    generated = key_of(unset_key(key_file))
    configured = load_settings(
        environment="production", secret_key="configured-" + "k" * 40, secret_key_file=key_file
    )
    assert key_of(configured) == "configured-" + "k" * 40
    assert key_of(configured) != generated


def test_a_configured_key_writes_no_file(tmp_path: Path) -> None:
    load_settings(environment="development", secret_key="x" * 40, secret_key_file=tmp_path / "k")
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_key_file_is_a_clear_error_not_a_new_key(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text("\n")
    with pytest.raises(ConfigError, match="does not hold a usable SECRET_KEY"):
        unset_key(key_file)
    # Replacing it silently would make stored personal data unreadable.
    assert key_file.read_text() == "\n"


def test_a_key_file_path_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(ConfigError, match="SECRET_KEY_FILE elsewhere, or set SECRET_KEY"):
        unset_key(blocker / "secret_key")
