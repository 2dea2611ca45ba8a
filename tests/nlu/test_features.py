"""Text preparation: spelling correction, spelling folds, transliteration, and
the fallback for texts made of unseen character n-grams."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from nlu.embedded import EmbeddedNluParser, damp_unfamiliar
from nlu.features import Lemmatizer, SpellingCorrector, fold_spelling, normalise, prepare
from nlu.types import FALLBACK_INTENT

WORDS = ["задолженность", "показания", "пожаловаться", "лицевой", "счетчика", "тариф"]


@pytest.mark.parametrize(
    ("typo", "fixed"),
    [
        ("задолжность", "задолженность"),  # two letters missing in a long word
        ("пожаловатся", "пожаловаться"),
        ("покозания", "показания"),
        ("литсевой", "лицевой"),  # transliterated "litsevoy"
    ],
)
def test_unknown_words_are_corrected_to_a_close_training_word(typo: str, fixed: str) -> None:
    assert SpellingCorrector(WORDS).correct(typo) == fixed


@pytest.mark.parametrize(
    "word",
    [
        "тарифы",  # a real word the dictionary knows stays as written
        "тарр",  # too short to guess
        "хадолженность",  # a different first letter is not a typo we fix
        "ывапролджэ",  # nothing close
    ],
)
def test_other_words_are_left_alone(word: str) -> None:
    assert SpellingCorrector(WORDS).correct(word) == word


def test_the_corrector_survives_pickling_without_its_cache() -> None:
    speller = SpellingCorrector(WORDS)
    assert speller.correct("покозания") == "показания"
    copy = pickle.loads(pickle.dumps(speller))
    assert copy.correct("покозания") == "показания"
    assert copy._cache == {"покозания": "показания"}


def test_spelling_folds_merge_the_variants_customers_mix_up() -> None:
    assert fold_spelling("щетчик") == fold_spelling("счётчик".replace("ё", "е"))
    assert fold_spelling("пожаловаться") == fold_spelling("пожаловатся")
    assert fold_spelling("касса") == fold_spelling("каса")


def test_prepare_collapses_stretched_letters_and_transliteration() -> None:
    assert prepare("дааааа", [])[1] == "да"
    assert normalise("kvitanciyu") == "квитанцию"
    assert normalise("litsevoy") == "лицевой"


def test_damping_only_touches_texts_of_mostly_unseen_ngrams() -> None:
    probabilities = np.array([0.7, 0.2, 0.1])
    assert damp_unfamiliar(probabilities, 1.0) is probabilities
    damped = damp_unfamiliar(probabilities, 0.0)
    assert damped == pytest.approx([1 / 3] * 3)
    half = damp_unfamiliar(probabilities, 0.3)
    assert half.sum() == pytest.approx(1.0)
    assert list(np.argsort(-half)) == [0, 1, 2]


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("показания щетчика 1543", "submit_reading"),
        ("какая у меня задолжность", "check_balance"),
        ("хочу пожаловатся", "file_appeal"),
        ("skolko ya dolzhen", "check_balance"),
        ("ЗДРАВСТВУЙТЕ!!!", "greet"),
        ("нееет", "deny"),
    ],
)
async def test_field_spellings_are_understood(
    parser: EmbeddedNluParser, text: str, intent: str
) -> None:
    assert (await parser.parse(text)).intent.name == intent


@pytest.mark.parametrize("text", ["фывапролд", "ыыы ааа", "йцукенгш", "asdfgh", "ячсмить"])
async def test_keyboard_mashing_falls_back(parser: EmbeddedNluParser, text: str) -> None:
    assert (await parser.parse(text)).intent.name == FALLBACK_INTENT


def test_navec_vectors_from_natashas_wheel_know_related_words() -> None:
    from nlu.embedded import shared_vectors

    vectors = shared_vectors()
    hot = vectors.lookup("отопление")
    near = vectors.lookup("теплоснабжение")
    far = vectors.lookup("анекдот")
    assert hot is not None
    assert near is not None
    assert far is not None
    assert float(hot[1] @ near[1]) > float(hot[1] @ far[1]) + 0.2
    assert vectors.lookup("ывапролдж") is None


def test_an_unseen_word_borrows_the_nearest_training_word(parser: EmbeddedNluParser) -> None:
    neighbours = parser.model.neighbours
    assert neighbours is not None
    # A training word is left alone; an unseen one maps into the training
    # vocabulary (or nowhere, when nothing is close enough).
    assert neighbours.neighbour("отопление") is None
    mapped = neighbours.neighbour("теплоснабжением")
    assert mapped is None or mapped in neighbours.vocab
    assert neighbours.expand("ывапролдж") == "ывапролдж"


def test_augmented_lines_swap_words_for_unseen_navec_neighbours() -> None:
    from nlu.embedded import shared_vectors
    from nlu.features import augmented_texts, navec_neighbours

    vectors = shared_vectors()
    near = navec_neighbours(["жалоба"], vectors)["жалоба"]
    assert near, "navec knows words near жалоба"
    assert "жалоба" not in {Lemmatizer.lemma(w) for w in near}
    texts = ["хочу написать жалобу", "здравствуйте"]
    variants = augmented_texts(texts, vectors)
    assert variants
    assert {index for index, _ in variants} == {0}
    seen = {w for t in texts for w in t.split()} | {
        Lemmatizer.lemma(w) for t in texts for w in t.split()
    }
    for _, variant in variants:
        assert variant != texts[0]
        new = [w for w in variant.split() if w not in seen]
        assert new
        assert all(Lemmatizer.lemma(w) not in seen for w in new)
