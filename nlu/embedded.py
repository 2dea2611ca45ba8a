"""The embedded intent classifier: scikit-learn over character n-grams and lemmas.

Trained from the Rasa-format data in ``nlu/data`` in a few seconds, saved with
a fingerprint of that data and of this code, and retrained by
:func:`load_or_train` whenever the fingerprint changes.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import pickle
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from config import Settings
from nlu.base import ModelNotTrained, NluParser
from nlu.data_loader import TrainingData, data_files, fingerprint_files, load_training_data
from nlu.entities import DEFAULT_STREETS, EntityExtractor
from nlu.features import (
    PLACEHOLDERS,
    Lemmatizer,
    SemanticNeighbours,
    SpellingCorrector,
    WordVectors,
    augmented_texts,
    corrected,
    fold_spelling,
    training_words,
)
from nlu.payload import parse_payload
from nlu.types import FALLBACK_INTENT, Entity, Intent, ParseResult

log = logging.getLogger(__name__)
_PLACEHOLDERS = frozenset(PLACEHOLDERS.values())
_ONE_LETTER_WORDS = frozenset("авиксуояжб")

DATA_DIR = Path(__file__).resolve().parent / "data"
# Bump whenever features, extraction or the classifier change: it is part of
# the model fingerprint, so a stale pickled model is retrained.
CODE_VERSION = "embedded-10"
RANKING_LENGTH = 10
WORD_FEATURE_WEIGHT = 0.8
# The weight of the 300 dense columns (the text's SIF-weighted mean navec
# vector, unit length) beside the sparse n-grams: they carry meaning to words
# training never saw. Chosen on grouped 5-fold CV of the training data:
# off 0.826, 0.3 -> 0.832, 0.5 -> 0.839, 0.8 -> 0.843, 2.0 -> 0.825 macro F1;
# 0.5 is within noise of the best and costs the long messages least.
VECTOR_FEATURE_WEIGHT = 0.5
USE_DENSE = True
USE_NEIGHBOURS = True
# Extra training lines with words swapped for navec neighbours
# (features.augmented_texts). Off: on grouped 5-fold CV it moved macro F1 by
# +0.004 at most (0.826 -> 0.830 at weight 0.3; 0.839 -> 0.844 beside the dense
# columns at 0.6) while training took 3x longer, and the new-words and sealed
# sets scored lower (0.651 -> 0.641..0.649, 0.700 -> 0.663..0.679).
AUGMENT = False
AUGMENT_WEIGHT = 0.6
# 1e-5 (was 2e-5): sharper probabilities, so fewer in-domain messages fall
# below the threshold; grouped CV macro F1 unchanged (0.862 -> 0.861), its
# in-domain fallback 2.0% -> 1.8%, out-of-scope accepted 23.9% -> 23.2%; on
# the open held-out files in-domain fallback 3.1% -> 2.6%.
SGD_ALPHA = 1e-5
SGD_MAX_ITER = 200
# Calibration of the fallback: a text whose character n-grams are mostly
# unseen in training (keyboard mashing, a foreign language) has its ranking
# pulled towards uniform, in proportion to the unseen share below this level,
# so gibberish falls below the threshold instead of landing on the intent
# with the largest bias (usually out_of_scope). Chosen on cross-validation
# folds of the training data against generated gibberish.
FAMILIAR_COVERAGE = 0.6
# Below this share of real words (known to some dictionary) a text is damped
# the same way, in proportion.
REAL_WORDS = 0.34
REAL_WORD_CACHE_SIZE = 65536


def damp_unfamiliar(probabilities: Any, coverage: float) -> Any:
    """Mix the ranking with uniform when few of the text's n-grams are known."""
    trust = min(1.0, coverage / FAMILIAR_COVERAGE) if FAMILIAR_COVERAGE > 0 else 1.0
    if trust >= 1.0:
        return probabilities
    return trust * probabilities + (1.0 - trust) / len(probabilities)


@dataclass
class EmbeddedModel:
    """Everything a parse needs; pickled as one object."""

    fingerprint: str
    labels: list[str]
    # sklearn's fitted objects: only in the process that trained the model
    # (never pickled, so loading and parsing never import sklearn or scipy).
    char_vectorizer: Any
    word_vectorizer: Any
    classifier: Any
    streets: list[str]
    synonyms: dict[str, list[str]]
    speller: SpellingCorrector | None = None
    vectors: WordVectors | None = None
    neighbours: SemanticNeighbours | None = None
    trained_seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    # What a parse needs of them: vocabularies, idf, coefficients (ScorerData).
    scoring: dict[str, Any] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(char_vectorizer=None, word_vectorizer=None, classifier=None)
        return state


def scorer_data(char_vectorizer: Any, word_vectorizer: Any, classifier: Any) -> dict[str, Any]:
    """Plain data (dicts and numpy arrays) out of the fitted sklearn objects."""
    return {
        "char_vocab": dict(char_vectorizer.vocabulary_),
        "char_idf": np.asarray(char_vectorizer.idf_),
        "char_ngrams": tuple(char_vectorizer.ngram_range),
        "word_vocab": dict(word_vectorizer.vocabulary_),
        "word_idf": np.asarray(word_vectorizer.idf_),
        "word_ngrams": tuple(word_vectorizer.ngram_range),
        "coef": np.asarray(classifier.coef_),
        "intercept": np.asarray(classifier.intercept_),
    }


def char_wb_ngrams(text: str, ngrams: tuple[int, int]) -> list[str]:
    """sklearn's ``analyzer="char_wb"`` (lowercase=False): n-grams inside
    space-padded words, a word shorter than n counted once."""
    min_n, max_n = ngrams
    out: list[str] = []
    for word in text.split():
        padded = f" {word} "
        length = len(padded)
        for n in range(min_n, max_n + 1):
            if length <= n:
                out.append(padded)
                break
            out += [padded[i : i + n] for i in range(length - n + 1)]
    return out


def word_ngrams(text: str, ngrams: tuple[int, int]) -> list[str]:
    """sklearn's word analyzer with a whitespace tokenizer and no stop words."""
    tokens = text.split()
    min_n, max_n = ngrams
    out = list(tokens) if min_n == 1 else []
    for n in range(max(2, min_n), max_n + 1):
        out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return out


def data_fingerprint(data_dir: Path = DATA_DIR) -> str:
    sklearn_version = importlib.metadata.version("scikit-learn")
    return fingerprint_files(
        data_files(data_dir), extra=f"{CODE_VERSION}|sklearn={sklearn_version}"
    )


_VECTORS: WordVectors | None = None


def shared_vectors() -> WordVectors:
    """navec's vectors, read once per process (training and cross-validation folds)."""
    global _VECTORS
    if _VECTORS is None:
        _VECTORS = WordVectors.from_natasha()
    return _VECTORS


def featurize(
    text: str,
    entities: Any,
    speller: SpellingCorrector | None,
    vectors: WordVectors | None,
    neighbours: SemanticNeighbours | None = None,
) -> tuple[str, str, Any]:
    """(folded text for char n-grams, lemmas for word n-grams, mean word vector)."""
    norm = corrected(text, entities, speller)
    if neighbours is not None:
        norm = neighbours.expand(norm)
    dense = vectors.text_vector(norm) if vectors is not None else None
    return fold_spelling(norm), Lemmatizer.lemmas(norm), dense


def _split_tokens(text: str) -> list[str]:
    return text.split()


def make_extractor(data: TrainingData) -> EntityExtractor:
    streets = data.lookups.get("address") or list(DEFAULT_STREETS)
    return EntityExtractor(streets=streets, synonyms=data.synonyms)


def train_model(data_dir: Path = DATA_DIR) -> EmbeddedModel:
    """Train on the Rasa-format data under ``data_dir``."""
    started = time.perf_counter()
    data = load_training_data(data_dir)
    if not data.examples:
        raise ModelNotTrained(f"no training examples under {data_dir}")
    model = fit_model(data, data_fingerprint(data_dir))
    model.trained_seconds = time.perf_counter() - started
    return model


def fit_model(
    data: TrainingData, fingerprint: str = "", vectors: WordVectors | None = None
) -> EmbeddedModel:
    """Train on already loaded data (cross-validation uses it on folds)."""
    import sklearn
    from scipy.sparse import csr_matrix, hstack  # type: ignore[import-untyped,unused-ignore]
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier

    started = time.perf_counter()
    if vectors is None:
        vectors = shared_vectors()
    extractor = make_extractor(data)
    train_words = training_words([ex.text for ex in data.examples])
    speller = SpellingCorrector(train_words)
    vectors_for_dense = vectors if USE_DENSE else None
    neighbours = None
    if vectors is not None and USE_NEIGHBOURS:
        neighbours = SemanticNeighbours(train_words, vectors)
    texts = [ex.text for ex in data.examples]
    labels = [ex.intent for ex in data.examples]
    weights = [1.0] * len(texts)
    if vectors is not None and AUGMENT:
        for index, variant in augmented_texts(texts, vectors):
            texts.append(variant)
            labels.append(labels[index])
            weights.append(AUGMENT_WEIGHT)
    prepared = [
        featurize(text, extractor.extract(text), speller, vectors_for_dense, neighbours)
        for text in texts
    ]
    chars = [p[0] for p in prepared]
    words = [p[1] for p in prepared]
    blocks = []
    if vectors_for_dense is not None:
        blocks.append(csr_matrix(np.vstack([p[2] for p in prepared]) * VECTOR_FEATURE_WEIGHT))

    char_vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, lowercase=False, min_df=1
    )
    word_vectorizer = TfidfVectorizer(
        analyzer="word",
        tokenizer=_split_tokens,
        token_pattern=None,
        lowercase=False,
        ngram_range=(1, 2),
        sublinear_tf=True,
    )
    features = hstack(
        [
            char_vectorizer.fit_transform(chars),
            word_vectorizer.fit_transform(words) * WORD_FEATURE_WEIGHT,
            *blocks,
        ]
    ).tocsr()
    # Log-loss SGD: a logistic regression that trains in a fraction of a second
    # with sharper probabilities than lbfgs at comparable regularisation (chosen
    # by 5-fold cross-validation on the training data, not on the held-out set).
    classifier = SGDClassifier(
        loss="log_loss", alpha=SGD_ALPHA, max_iter=SGD_MAX_ITER, tol=1e-4, random_state=0
    )
    classifier.fit(features, labels, sample_weight=np.asarray(weights))
    return EmbeddedModel(
        fingerprint=fingerprint,
        labels=[str(c) for c in classifier.classes_],
        char_vectorizer=char_vectorizer,
        word_vectorizer=word_vectorizer,
        classifier=classifier,
        streets=data.lookups.get("address") or list(DEFAULT_STREETS),
        synonyms=data.synonyms,
        speller=speller,
        vectors=vectors_for_dense,
        neighbours=neighbours,
        trained_seconds=time.perf_counter() - started,
        scoring=scorer_data(char_vectorizer, word_vectorizer, classifier),
        meta={
            "examples": len(data.examples),
            "augmented": len(labels) - len(data.examples),
            "sklearn": sklearn.__version__,
        },
    )


def save_model(model: EmbeddedModel, path: Path) -> None:
    """Write atomically: a reader never sees half a model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_model(path: Path) -> EmbeddedModel:
    if not path.exists():
        raise ModelNotTrained(f"no NLU model at {path}")
    try:
        with path.open("rb") as f:
            model = pickle.load(f)  # our own file under var/, written by save_model
    except Exception as exc:  # a truncated or foreign file
        raise ModelNotTrained(f"cannot read the NLU model at {path}: {exc}") from exc
    if not isinstance(model, EmbeddedModel):
        raise ModelNotTrained(f"{path} does not hold an embedded NLU model")
    return model


class _LinearScorer:
    """Scores one text straight from the vocabularies, idf and coefficients.

    Equivalent to ``classifier.predict_proba(hstack([tfidf_char, tfidf_word * w]))``
    (a test checks it) but without sklearn's per-call validation and sparse
    matrix building, which cost several milliseconds per message.
    """

    def __init__(self, model: EmbeddedModel) -> None:
        data = model.scoring
        char_ngrams, word_ngram_range = data["char_ngrams"], data["word_ngrams"]
        self._char_analyzer: Callable[[str], list[str]] = lambda text: char_wb_ngrams(
            text, char_ngrams
        )
        self._word_analyzer: Callable[[str], list[str]] = lambda text: word_ngrams(
            text, word_ngram_range
        )
        self._char_vocab: dict[str, int] = data["char_vocab"]
        self._word_vocab: dict[str, int] = data["word_vocab"]
        self._char_idf = data["char_idf"]
        self._word_idf = data["word_idf"]
        coef = data["coef"]
        n_char = len(self._char_idf)
        n_word = len(self._word_idf)
        self._char_coef = np.ascontiguousarray(coef[:, :n_char].T)
        self._word_coef = np.ascontiguousarray(coef[:, n_char : n_char + n_word].T)
        self._dense_coef = np.ascontiguousarray(coef[:, n_char + n_word :].T)
        self._intercept = data["intercept"]

    @staticmethod
    def _part(tokens: list[str], vocab: dict[str, int], idf: Any, coef: Any) -> Any:
        # Counter counts in C; only the distinct tokens meet the vocabulary.
        indices: list[int] = []
        counts: list[int] = []
        for token, n in Counter(tokens).items():
            index = vocab.get(token)
            if index is not None:
                indices.append(index)
                counts.append(n)
        if not indices:
            return 0.0, 0
        rows = np.array(indices, dtype=np.intp)
        weights = (1.0 + np.log(np.array(counts, dtype=np.float64))) * idf[rows]
        weights /= np.sqrt(weights @ weights)
        return weights @ coef[rows], sum(counts)

    def probabilities(self, char_text: str, word_text: str, dense: Any = None) -> Any:
        char_tokens = self._char_analyzer(char_text)
        char_score, known = self._part(
            char_tokens, self._char_vocab, self._char_idf, self._char_coef
        )
        word_score, _ = self._part(
            self._word_analyzer(word_text), self._word_vocab, self._word_idf, self._word_coef
        )
        decision = self._intercept + char_score + WORD_FEATURE_WEIGHT * word_score
        if dense is not None and self._dense_coef.shape[0]:
            decision = decision + VECTOR_FEATURE_WEIGHT * (dense @ self._dense_coef)
        # SGDClassifier(loss="log_loss") is one-vs-rest: sigmoid, then normalise.
        prob = 1.0 / (1.0 + np.exp(-decision))
        total = prob.sum()
        prob = prob / total if total > 0 else np.full_like(prob, 1.0 / len(prob))
        return damp_unfamiliar(prob, known / len(char_tokens) if char_tokens else 0.0)


# The entities each intent's flow reads. Elsewhere an entity is noise: "долг
# за отопление" is about money, not a meter. A message that is little more
# than its entities keeps them whatever the intent: it answers a form's
# question ("1234,5", "ул. Ленина 10", the SNILS).
USABLE_ENTITIES: dict[str, frozenset[str]] = {
    "link_account": frozenset({"account_number", "snils"}),
    "submit_reading": frozenset({"reading_value", "meter_type", "date", "account_number"}),
    # Money questions may name the service ("долг за отопление").
    "check_balance": frozenset({"date", "account_number", "meter_type"}),
    "pay_bill": frozenset({"account_number", "date", "meter_type"}),
    "file_appeal": frozenset(
        {"phone", "address", "account_number", "date", "appeal_number", "meter_type"}
    ),
    "appeal_status": frozenset({"appeal_number", "date"}),
    "report_outage": frozenset({"address", "meter_type", "phone"}),
    "connection_request": frozenset({"address", "phone", "meter_type"}),
    # Which office: "часы работы кассы на Сумской", "записаться в офис на Сумской".
    "contacts_hours": frozenset({"address"}),
    "office_appointment": frozenset({"date", "phone", "address"}),
    "tariff_info": frozenset({"meter_type", "date"}),
    "bonus_balance": frozenset({"account_number"}),
    "human_handoff": frozenset({"phone"}),
}
ANSWER_EXTRA_WORDS = 2
# Messages of this many sentences or more are also scored on their last one.
STORY_SENTENCES = 3
LAST_SENTENCE_WEIGHT = 0.5
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")


def last_sentence(text: str) -> str | None:
    """The closing sentence of a message that tells a story first, else None."""
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if _ANSWER_WORD.search(s)]
    if len(sentences) < STORY_SENTENCES:
        return None
    return sentences[-1]


_ANSWER_WORD = re.compile(r"[^\W\d_]{2,}")


def usable_entities(text: str, intent: str, entities: list[Entity]) -> list[Entity]:
    """The entities the intent can use, or all of them in a bare answer."""
    rest = text
    for entity in sorted(entities, key=lambda e: e.start, reverse=True):
        rest = rest[: entity.start] + " " + rest[entity.end :]
    if len(_ANSWER_WORD.findall(rest)) <= ANSWER_EXTRA_WORDS:
        return entities
    usable = USABLE_ENTITIES.get(intent, frozenset())
    return [e for e in entities if e.entity in usable]


class EmbeddedNluParser(NluParser):
    """In-process classifier plus rule-based entities; answers like Rasa's /model/parse."""

    def __init__(self, model: EmbeddedModel, fallback_threshold: float) -> None:
        self.model = model
        self.fallback_threshold = fallback_threshold
        self.extractor = EntityExtractor(streets=model.streets, synonyms=model.synonyms)
        self._scorer = _LinearScorer(model)
        self._real_words: dict[str, bool] = {}

    async def parse(self, text: str) -> ParseResult:
        return self.parse_sync(text)

    def parse_sync(self, text: str) -> ParseResult:
        payload = parse_payload(text)
        if payload is not None:
            return payload
        entities = self.extractor.extract(text)
        if not text.strip():
            return ParseResult(
                text=text, intent=Intent(name=FALLBACK_INTENT, confidence=0.0), entities=()
            )
        probabilities = self._probabilities(text, entities)
        last = last_sentence(text)
        if last is not None:
            # A story before the request ("Проснулись утром... Батареи ледяные.
            # Когда дадут тепло?"): the closing sentence says what is wanted.
            start = text.rindex(last)
            inside = [
                e.model_copy(update={"start": e.start - start, "end": e.end - start})
                for e in entities
                if e.start >= start
            ]
            probabilities = (1.0 - LAST_SENTENCE_WEIGHT) * probabilities + (
                LAST_SENTENCE_WEIGHT * self._probabilities(last, inside)
            )
        ranking = self._ranking(probabilities)
        top = ranking[0]
        intent = top
        if top.confidence < self.fallback_threshold:
            intent = Intent(name=FALLBACK_INTENT, confidence=self.fallback_threshold)
        return ParseResult(
            text=text,
            intent=intent,
            entities=tuple(usable_entities(text, intent.name, entities)),
            intent_ranking=tuple(ranking[:RANKING_LENGTH]),
        )

    def _probabilities(self, text: str, entities: list[Entity]) -> Any:
        char_text, word_text, dense = featurize(
            text, entities, self.model.speller, self.model.vectors, self.model.neighbours
        )
        probabilities = self._scorer.probabilities(char_text, word_text, dense)
        # Keyboard mashing ("фывапролд", "ыыы ааа") is made of words no
        # dictionary knows: pymorphy3's, the training data's, navec's 250K.
        real = self.real_word_share(word_text)
        if real < REAL_WORDS:
            probabilities = damp_unfamiliar(probabilities, FAMILIAR_COVERAGE * real / REAL_WORDS)
        return probabilities

    def real_word_share(self, lemmas: str) -> float:
        """The share of words some dictionary knows; one-letter words count
        only when there is nothing longer ("ы а" is mashing, "я в минусе" is not)."""
        words = [w for w in lemmas.split() if w.isalpha() and w not in _PLACEHOLDERS]
        longer = [w for w in words if len(w) > 1]
        if not words:
            return 1.0
        if not longer:
            return 1.0 if all(w in _ONE_LETTER_WORDS for w in words) else 0.0
        return sum(self._is_real(w) for w in longer) / len(longer)

    def _is_real(self, word: str) -> bool:
        # pymorphy3's word_is_known walks its DAWG (the dearest step of a
        # parse before this cache); customers repeat their words.
        cached = self._real_words.get(word)
        if cached is not None:
            return cached
        known = self.model.speller.known if self.model.speller is not None else frozenset()
        neighbours = self.model.neighbours
        real = (
            word in known
            or Lemmatizer.analyzer().word_is_known(word)
            or (neighbours is not None and neighbours.vectors.lookup(word) is not None)
        )
        if len(self._real_words) < REAL_WORD_CACHE_SIZE:
            self._real_words[word] = real
        return real

    def _ranking(self, probabilities: Any) -> list[Intent]:
        """The RANKING_LENGTH best intents, best first (only those become
        Intent objects: pydantic validation of all twenty cost a tenth of a parse)."""
        order = np.argsort(-probabilities, kind="stable")[:RANKING_LENGTH]
        labels = self.model.labels
        return [Intent(name=labels[i], confidence=float(probabilities[i])) for i in order]


def load_or_train(settings: Settings, data_dir: Path = DATA_DIR) -> EmbeddedNluParser:
    """The saved model if it matches the data and code, else a freshly trained one."""
    path = Path(settings.nlu_model_path)
    expected = data_fingerprint(data_dir)
    model: EmbeddedModel | None = None
    try:
        model = load_model(path)
    except ModelNotTrained as exc:
        log.info("NLU model will be trained: %s", exc)
    if model is None or model.fingerprint != expected:
        model = train_model(data_dir)
        save_model(model, path)
        log.info(
            "NLU model trained on %s examples in %.1f s",
            model.meta.get("examples"),
            model.trained_seconds,
        )
    return EmbeddedNluParser(model, settings.nlu_fallback_threshold)
