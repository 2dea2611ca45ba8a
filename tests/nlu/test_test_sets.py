"""The held-out sets stay honest: new words really are new, the typo set is
what its script makes, long messages are long, nothing is trained on."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from nlu.data_loader import load_training_data
from nlu.features import Lemmatizer, normalise
from nlu.noise import TARGET, build
from nlu.types import INTENTS
from tests.nlu.conftest import DATA_DIR, ROOT

TESTS = ROOT / "nlu" / "tests"
NEW_WORDS_FILES = (TESTS / "test_nlu_new_words.yml", TESTS / "test_nlu_new_words_sealed.yml")
LONG = TESTS / "test_nlu_long.yml"
NEW_SETS = (*NEW_WORDS_FILES, LONG, TARGET)
_WORD = re.compile(r"[а-яa-z0-9+]+")


def _training_vocabulary() -> tuple[set[str], set[str]]:
    data = load_training_data(DATA_DIR)
    texts = [ex.text for ex in data.examples]
    for values in [*data.synonyms.values(), *data.lookups.values()]:
        texts.extend(values)
    forms = {w for t in texts for w in _WORD.findall(normalise(t))}
    return forms, {Lemmatizer.lemma(w) for w in forms}


@pytest.mark.parametrize("path", NEW_WORDS_FILES, ids=lambda p: p.name)
def test_new_words_appear_nowhere_in_the_training_data(path: Path) -> None:
    forms, lemmas = _training_vocabulary()
    examples = load_training_data(path).examples
    assert {ex.intent for ex in examples} == set(INTENTS)
    seen = []
    for ex in examples:
        words = ex.meta("new_words")
        assert words, f"{ex.text!r} names no new word"
        text_words = _WORD.findall(normalise(ex.text))
        for word in words:
            word = normalise(word)
            assert word in text_words, f"{word!r} is not in {ex.text!r}"
            if word in forms or Lemmatizer.lemma(word) in lemmas:
                seen.append((word, ex.text))
    assert seen == []


def test_the_typo_set_is_what_its_script_makes() -> None:
    assert TARGET.read_text(encoding="utf-8") == build()


def test_long_messages_tell_a_story_first() -> None:
    for ex in load_training_data(LONG).examples:
        sentences = [s for s in re.split(r"[.!?]+", ex.text) if s.strip()]
        assert len(sentences) >= 3, ex.text


@pytest.mark.parametrize("path", NEW_SETS, ids=lambda p: p.name)
def test_new_sets_cover_every_intent_and_are_not_trained_on(path: Path) -> None:
    def key(text: str) -> str:
        return " ".join(text.lower().replace("ё", "е").split())

    examples = load_training_data(path).examples
    counts = Counter(ex.intent for ex in examples)
    assert set(counts) == set(INTENTS)
    trained = {key(ex.text) for ex in load_training_data(DATA_DIR).examples}
    assert [ex.text for ex in examples if key(ex.text) in trained] == []
