"""One trained embedded parser for the whole NLU test session (model in a tmp dir)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import Settings, load_settings
from nlu.embedded import EmbeddedNluParser, load_or_train

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = ROOT / "nlu" / "tests" / "test_nlu.yml"
# Second held-out set, written by another hand for other writers (typos,
# slang, transliteration, caps, long polite messages).
HELD_OUT_FIELD = ROOT / "nlu" / "tests" / "test_nlu_field.yml"
HELD_OUT_FILES = (HELD_OUT, HELD_OUT_FIELD)
DATA_DIR = ROOT / "nlu" / "data"


@pytest.fixture(scope="session")
def nlu_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    model_path = tmp_path_factory.mktemp("nlu-model") / "nlu-model.pkl"
    return load_settings(nlu_backend="embedded", nlu_model_path=model_path)


@pytest.fixture(scope="session")
def parser(nlu_settings: Settings) -> EmbeddedNluParser:
    return load_or_train(nlu_settings)
