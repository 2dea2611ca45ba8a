"""The Rasa environment's bookkeeping: where it lives, the model fingerprint, Python 3.10."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nlu.rasa import server


def copy_project(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    shutil.copytree(server.DATA_DIR, data)
    config = tmp_path / "config.yml"
    shutil.copyfile(server.CONFIG, config)
    return data, config


def test_cache_is_outside_the_tree_and_keyed_by_the_rasa_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HEATDESK_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    home = server.RasaHome.default()
    assert home.root == tmp_path / "heatdesk" / f"rasa-{server.RASA_VERSION}"
    assert server.RASA_VERSION == "3.6.21"
    assert not home.root.is_relative_to(server.PROJECT_DIR.parent.parent)
    monkeypatch.setenv("HEATDESK_CACHE", str(tmp_path / "ci"))
    assert server.RasaHome.default().venv == tmp_path / "ci" / "rasa-3.6.21" / "venv"


def test_fingerprint_follows_the_data_and_the_config(tmp_path: Path) -> None:
    data, config = copy_project(tmp_path)
    first = server.fingerprint(data, config)
    assert server.fingerprint(data, config) == first
    assert first == server.fingerprint(server.DATA_DIR, server.CONFIG)  # content, not place

    (data / "synonyms.yml").write_text(
        (data / "synonyms.yml").read_text(encoding="utf-8") + "    - гв.\n", encoding="utf-8"
    )
    second = server.fingerprint(data, config)
    assert second != first

    config.write_text(config.read_text(encoding="utf-8").replace("epochs: 40", "epochs: 41"))
    assert server.fingerprint(data, config) not in {first, second}


def test_training_is_skipped_while_a_model_matches(tmp_path: Path) -> None:
    data, config = copy_project(tmp_path)
    # No virtualenv at all: training would fail, so a skip is the only way through.
    home = server.RasaHome(tmp_path / "home")
    model = server.model_path(home, data, config)
    model.parent.mkdir(parents=True)
    model.write_bytes(b"a model")
    model.with_name(model.name.removesuffix(".tar.gz") + ".json").write_text(
        '{"train_seconds": 12.5}'
    )
    trained = server.train(home, data, config)
    assert (trained.path, trained.trained_now, trained.train_seconds) == (model, False, 12.5)


def test_without_python_310_the_message_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RASA_PYTHON", str(tmp_path / "no-python"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(server.RasaSetupError) as info:
        server.find_python310()
    message = str(info.value)
    assert "Python 3.10" in message
    assert "pyenv install 3.10" in message
    assert "RASA_PYTHON" in message
    home = server.RasaHome(tmp_path / "home")
    with pytest.raises(server.RasaSetupError, match=r"Python 3\.10"):
        server.setup(home)
    assert not home.root.exists()  # nothing half-made


def test_serve_needs_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RASA_TOKEN", raising=False)
    assert server.main(["serve"]) == 2
    assert "RASA_TOKEN" in capsys.readouterr().err
