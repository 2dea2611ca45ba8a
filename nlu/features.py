"""Text preparation for the intent classifier.

Entities are replaced by placeholder words first, so that "1002003001" and
"1002003999" look the same to the classifier (a bare account number means
``link_account``, a bare decimal means ``submit_reading``). Latin
transliteration ("pokazaniya", "zdravstvuyte") is mapped back to Cyrillic.
Words the dictionary does not know are corrected to a close training word
(:class:`SpellingCorrector`: "щетчика", "задолжность", "пожаловатся"), and
the character n-grams see a spelling-folded text (:func:`fold_spelling`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pymorphy3

from nlu.types import Entity

PLACEHOLDERS: dict[str, str] = {
    "account_number": "числолс",
    "snils": "числоснилс",
    "reading_value": "числопоказ",
    "appeal_number": "номеробращ",
    "phone": "номертел",
    "address": "адресдома",
}
NUMERIC_DATE_PLACEHOLDER = "датачисл"
_PLACEHOLDER_WORDS = frozenset([*PLACEHOLDERS.values(), NUMERIC_DATE_PLACEHOLDER])
# Dates written as words keep their words ("за март" says a lot); numeric
# dates become a placeholder.
_NUMERIC_DATE = re.compile(r"^[\d./\-]+$")

_TRANSLIT: tuple[tuple[str, str], ...] = (
    ("shch", "щ"),
    ("sch", "щ"),
    ("zh", "ж"),
    ("kh", "х"),
    ("ch", "ч"),
    ("sh", "ш"),
    ("yu", "ю"),
    ("ya", "я"),
    ("yo", "ё"),
    ("ye", "е"),
    ("ju", "ю"),
    ("ja", "я"),
    ("ts", "ц"),
    ("a", "а"),
    ("b", "б"),
    ("c", "ц"),
    ("d", "д"),
    ("e", "е"),
    ("f", "ф"),
    ("g", "г"),
    ("h", "х"),
    ("i", "и"),
    ("j", "й"),
    ("k", "к"),
    ("l", "л"),
    ("m", "м"),
    ("n", "н"),
    ("o", "о"),
    ("p", "п"),
    ("q", "к"),
    ("r", "р"),
    ("s", "с"),
    ("t", "т"),
    ("u", "у"),
    ("v", "в"),
    ("w", "в"),
    ("x", "кс"),
    ("z", "з"),
    ("'", "ь"),
)
_VOWELS = set("aeiouy")
_LATIN_WORD = re.compile(r"[a-z']+")
_WORD = re.compile(r"[а-яa-z0-9]+")


@lru_cache(maxsize=4096)
def transliterate(word: str) -> str:
    """Latin transliteration of a Russian word back to Cyrillic (best effort)."""
    out: list[str] = []
    i = 0
    while i < len(word):
        if word[i] == "y":
            # "y" after a vowel is "й" (zdravstvuyte), otherwise "ы" (dobryy -> добры...)
            nxt = word[i : i + 2]
            if nxt in {"yu", "ya", "yo", "ye"}:
                out.append({"yu": "ю", "ya": "я", "yo": "ё", "ye": "е"}[nxt])
                i += 2
                continue
            out.append("й" if i > 0 and word[i - 1] in _VOWELS else "ы")
            i += 1
            continue
        for latin, cyr in _TRANSLIT:
            if word.startswith(latin, i):
                out.append(cyr)
                i += len(latin)
                break
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


def mask_entities(text: str, entities: Sequence[Entity]) -> str:
    """Replace entity spans by placeholder words (entities sorted by start)."""
    parts: list[str] = []
    pos = 0
    for ent in sorted(entities, key=lambda e: e.start):
        if ent.start < pos:
            continue
        placeholder = PLACEHOLDERS.get(ent.entity)
        if ent.entity == "date" and _NUMERIC_DATE.match(text[ent.start : ent.end]):
            placeholder = NUMERIC_DATE_PLACEHOLDER
        if placeholder is None:
            continue
        parts.append(text[pos : ent.start])
        parts.append(f" {placeholder} ")
        pos = ent.end
    parts.append(text[pos:])
    return "".join(parts)


def normalise(text: str) -> str:
    """Lower case, ё -> е, Latin words transliterated, spaces collapsed."""
    lowered = text.lower().replace("ё", "е")
    lowered = _LATIN_WORD.sub(lambda m: transliterate(m.group()), lowered)
    return " ".join(lowered.split())


class Lemmatizer:
    """pymorphy3 lemmas, cached; the analyzer is built once per process."""

    _analyzer: pymorphy3.MorphAnalyzer | None = None

    @classmethod
    def analyzer(cls) -> pymorphy3.MorphAnalyzer:
        if cls._analyzer is None:
            cls._analyzer = pymorphy3.MorphAnalyzer()
        return cls._analyzer

    @staticmethod
    @lru_cache(maxsize=65536)
    def lemma(word: str) -> str:
        if not word.isalpha() or word in _PLACEHOLDER_WORDS:
            return word
        return str(Lemmatizer.analyzer().parse(word)[0].normal_form).replace("ё", "е")

    @classmethod
    def lemmas(cls, normalised_text: str) -> str:
        return " ".join(cls.lemma(w) for w in _WORD.findall(normalised_text))


_REPEATS = re.compile(r"([а-я])\1+")
_LONG_REPEATS = re.compile(r"([а-я])\1{2,}")
# Spelling-insensitive folds for the character n-grams: щ/сч (щетчик),
# тся/ться, soft and hard signs, doubled letters. (Folding о/а as well was
# tried and did not help on cross-validation.)
_FOLDS: tuple[tuple[str, str], ...] = (
    ("сч", "щ"),
    ("зч", "щ"),
    ("ь", ""),
    ("ъ", ""),
    ("тс", "ц"),
)


def fold_spelling(text: str) -> str:
    """Collapse the spelling variants customers mix up (applied to both sides)."""
    folded = _REPEATS.sub(r"\1", text)
    for old, new in _FOLDS:
        folded = folded.replace(old, new)
    return folded


# Words shorter than this are never corrected (too many neighbours); long
# words may be two edits away (задолжность -> задолженность).
MIN_CORRECTED_LENGTH = 4
TWO_EDITS_FROM_LENGTH = 8
CORRECTION_CACHE_SIZE = 65536


class SpellingCorrector:
    """Maps an out-of-vocabulary word to a training word within a small edit distance.

    SymSpell-style: every training word form is indexed under its deletions
    (one, or two for long words); an unknown word is looked up under its own
    deletions. Only words pymorphy3 does not know are corrected, so a real
    word is never turned into another one.
    """

    def __init__(self, words: Sequence[str]) -> None:
        counts: dict[str, int] = {}
        for word in words:
            if word.isalpha() and len(word) >= MIN_CORRECTED_LENGTH:
                counts[word] = counts.get(word, 0) + 1
        self._known = frozenset(counts)
        index: dict[str, tuple[int, str]] = {}
        for word, count in counts.items():
            for key in (word, *_deletions(word)):
                best = index.get(key)
                if best is None or (count, word) > best:
                    index[key] = (count, word)
        self._index = {key: word for key, (_, word) in index.items()}
        self._cache: dict[str, str] = {}

    def __getstate__(self) -> dict[str, object]:
        return {"_known": self._known, "_index": self._index}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._cache = {}

    @property
    def known(self) -> frozenset[str]:
        """The training word forms (four letters or more)."""
        return self._known

    def correct(self, word: str) -> str:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        fixed = word
        if (
            len(word) >= MIN_CORRECTED_LENGTH
            and word.isalpha()
            and word not in self._known
            and word not in _PLACEHOLDER_WORDS
            and not Lemmatizer.analyzer().word_is_known(word)
        ):
            for key in (word, *_deletions(word)):
                candidate = self._index.get(key)
                # Customers rarely mistype a word's first letter; gibberish
                # rarely shares it with a close training word.
                if candidate is not None and candidate[0] == word[0]:
                    fixed = candidate
                    break
        if len(self._cache) < CORRECTION_CACHE_SIZE:
            self._cache[word] = fixed
        return fixed

    def correct_text(self, normalised_text: str) -> str:
        return _WORD.sub(lambda m: self.correct(m.group()), normalised_text)


def _deletions(word: str) -> list[str]:
    """Strings one deletion away, and two for long words, nearest first."""
    first = list(dict.fromkeys(word[:i] + word[i + 1 :] for i in range(len(word))))
    if len(word) < TWO_EDITS_FROM_LENGTH:
        return first
    second = dict.fromkeys(w[:i] + w[i + 1 :] for w in first for i in range(len(w)))
    return first + [w for w in second if w not in first]


def corrected(
    text: str, entities: Sequence[Entity], speller: SpellingCorrector | None = None
) -> str:
    """The normalised text, entities masked and unknown words corrected."""
    norm = _LONG_REPEATS.sub(r"\1", normalise(mask_entities(text, entities)))
    return speller.correct_text(norm) if speller is not None else norm


def prepare(
    text: str, entities: Sequence[Entity], speller: SpellingCorrector | None = None
) -> tuple[str, str]:
    """(folded text for character n-grams, lemma string for word n-grams)."""
    norm = corrected(text, entities, speller)
    return fold_spelling(norm), Lemmatizer.lemmas(norm)


def training_words(texts: Sequence[str]) -> list[str]:
    """The normalised word forms of the training texts (the corrector's vocabulary)."""
    return [w for text in texts for w in _WORD.findall(_LONG_REPEATS.sub(r"\1", normalise(text)))]


# --- pre-trained word vectors ------------------------------------------------

NAVEC_FILE = "navec_news_v1_1B_250K_300d_100q.tar"
_REACHABLE_WORD = re.compile(r"^[а-я]+$")
# SIF weighting (Arora et al. 2017): a frequent word counts for less.
SIF_A = 1e-4
# Function words carry no topic: their vectors would pull every mean together.
_NO_TOPIC_POS = frozenset({"PREP", "CONJ", "NPRO"})


def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


class WordVectors:
    """navec's news embeddings (250K words, 300 dimensions), shipped in natasha's wheel.

    Kept compact for the pickled model: the vocabulary as sorted 64-bit word
    hashes (no Python strings), the product-quantised vectors as navec stores
    them (100 one-byte codes per word, 23 MB) in the same order, and a SIF
    weight per word from navec's counts. Nothing is fetched at run time.
    """

    def __init__(self, hashes: Any, indexes: Any, codes: Any, weights: Any) -> None:
        self.hashes = hashes
        self.indexes = indexes
        self.codes = codes
        self.weights = weights
        self._qdim = np.arange(codes.shape[0])
        self._cache: dict[str, tuple[float, Any] | None] = {}
        # navec's words in row order: only while training (never pickled).
        self.words: list[str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("hashes", "indexes", "codes", "weights")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    @property
    def dim(self) -> int:
        return int(self.codes.shape[0] * self.codes.shape[2])

    @classmethod
    def from_natasha(cls) -> WordVectors:
        """Read navec's file out of the installed natasha package."""
        from navec import Navec

        # natasha's wheel carries navec's news embeddings; finding the file
        # does not import natasha (and its other models) at all.
        spec = importlib.util.find_spec("natasha")
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError("natasha is not installed")
        path = Path(spec.origin).resolve().parent / "data" / "emb" / NAVEC_FILE
        navec = Navec.load(path)
        every: list[str] = navec.vocab.words
        counts = np.asarray(navec.vocab.counts, dtype=np.float64)
        frequency = counts / max(1.0, counts.sum())
        # Only words a lookup can reach: normalise() transliterates Latin and
        # folds ё, and only letters are looked up (21K of navec's 250K are
        # Latin, digits or punctuation: 2.5 MB never read).
        keep = np.fromiter(
            (i for i, w in enumerate(every) if _REACHABLE_WORD.match(w)), dtype=np.int64
        )
        hashes = np.fromiter((_word_hash(every[i]) for i in keep), dtype=np.uint64, count=len(keep))
        # Rows sorted by hash: a word's position in the hash array is its row.
        order = keep[np.argsort(hashes, kind="stable")]
        vectors = cls(
            hashes=np.sort(hashes, kind="stable"),
            indexes=np.ascontiguousarray(navec.pq.indexes[order]),
            codes=np.ascontiguousarray(navec.pq.codes),
            weights=(SIF_A / (SIF_A + frequency[order])).astype(np.float32),
        )
        vectors.words = [every[i] for i in order]
        return vectors

    def decode(self, rows: Any) -> Any:
        """Unit vectors (float32) of navec rows."""
        decoded = self.codes[self._qdim[None, :], self.indexes[rows]].reshape(len(rows), -1)
        norms = np.sqrt(np.einsum("ij,ij->i", decoded, decoded))
        return decoded / np.maximum(norms, 1e-9)[:, None]

    def lookup(self, word: str) -> tuple[float, Any] | None:
        """(SIF weight, unit vector) of a word form, or None if navec lacks it."""
        if word in self._cache:
            return self._cache[word]
        h = np.uint64(_word_hash(word))
        i = int(np.searchsorted(self.hashes, h))
        found: tuple[float, Any] | None = None
        if i < len(self.hashes) and self.hashes[i] == h:
            vector = self.codes[self._qdim, self.indexes[i]].reshape(-1)
            norm = float(np.sqrt(vector @ vector))
            if norm > 0:
                found = (float(self.weights[i]), vector / norm)
        if len(self._cache) < CORRECTION_CACHE_SIZE:
            self._cache[word] = found
        return found

    def text_vector(self, normalised_text: str) -> Any:
        """SIF-weighted mean of the words' unit vectors, itself of unit length (or zeros)."""
        total = np.zeros(self.dim, dtype=np.float64)
        for word in _WORD.findall(normalised_text):
            if word in _PLACEHOLDER_WORDS or word.isdigit() or _is_function_word(word):
                continue
            hit = self.lookup(word) or self.lookup(Lemmatizer.lemma(word))
            if hit is not None:
                total += hit[0] * hit[1]
        norm = float(np.sqrt(total @ total))
        return total / norm if norm > 0 else total


@lru_cache(maxsize=65536)
def _is_function_word(word: str) -> bool:
    return Lemmatizer.analyzer().parse(word)[0].tag.POS in _NO_TOPIC_POS


# Cosine below which an unseen word is left alone (chosen on grouped
# cross-validation folds of the training data).
NEIGHBOUR_MIN_SIMILARITY = 0.4


class SemanticNeighbours:
    """Maps a word training never saw to its nearest training word by navec cosine.

    "кляуза" -> "жалоба", "колотун" -> "холод": the classifier then sees a word
    it has weights for. The training words' unit vectors are one float16
    matrix (a few MB); one lookup is a matrix-vector product.
    """

    def __init__(self, words: Sequence[str], vectors: WordVectors) -> None:
        self.vectors = vectors
        self._known = frozenset(words) | frozenset(Lemmatizer.lemma(w) for w in words)
        vocab: list[str] = []
        rows: list[Any] = []
        for word in sorted({Lemmatizer.lemma(w) for w in words if len(w) >= 3}):
            if word in _PLACEHOLDER_WORDS or _is_function_word(word):
                continue
            hit = vectors.lookup(word)
            if hit is not None:
                vocab.append(word)
                rows.append(hit[1])
        self.vocab = vocab
        self.matrix = np.vstack(rows).astype(np.float32) if rows else np.zeros((0, vectors.dim))
        self._cache: dict[str, str | None] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {
            "vectors": self.vectors,
            "_known": self._known,
            "vocab": self.vocab,
            "matrix": self.matrix,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = {}

    def neighbour(self, word: str) -> str | None:
        if word in self._cache:
            return self._cache[word]
        found: str | None = None
        if (
            len(word) >= 3
            and word.isalpha()
            and word not in self._known
            and word not in _PLACEHOLDER_WORDS
            and len(self.vocab)
        ):
            lemma = Lemmatizer.lemma(word)
            hit = (
                None
                if lemma in self._known
                else (self.vectors.lookup(word) or self.vectors.lookup(lemma))
            )
            if hit is not None:
                sims = self.matrix @ hit[1].astype(np.float32)
                best = int(np.argmax(sims))
                if sims[best] >= NEIGHBOUR_MIN_SIMILARITY:
                    found = self.vocab[best]
        if len(self._cache) < CORRECTION_CACHE_SIZE:
            self._cache[word] = found
        return found

    def expand(self, normalised_text: str) -> str:
        """The text with each unseen word's nearest training word appended."""
        extra = [n for w in _WORD.findall(normalised_text) if (n := self.neighbour(w))]
        return f"{normalised_text} {' '.join(extra)}" if extra else normalised_text


# --- training-time augmentation from the vectors ------------------------------

# A training word's navec neighbours at this cosine or more, of its part of
# speech and unknown to training, stand in for it in extra training lines, so
# the n-grams learn synonyms no training line shows ("тариф" -> "расценка").
AUGMENT_MIN_SIMILARITY = 0.6
AUGMENT_NEIGHBOURS = 5
_CANDIDATES = 20
_CHUNK = 8192
_CYRILLIC_WORD = re.compile(r"^[а-я]{3,}$")
_NEIGHBOUR_CACHE: dict[str, list[str]] = {}


def _pos(word: str) -> str | None:
    tag = Lemmatizer.analyzer().parse(word)[0].tag.POS
    if tag is None:
        return None
    # Short and full adjectives, verbs and their infinitives: one part of speech here.
    return {"ADJS": "ADJF", "INFN": "VERB", "PRTF": "ADJF"}.get(str(tag), str(tag))


def navec_neighbours(lemmas: Sequence[str], vectors: WordVectors) -> dict[str, list[str]]:
    """For each lemma, up to AUGMENT_NEIGHBOURS navec words near it (other lemmas,
    same part of speech), nearest first. Computed over navec's Cyrillic words in
    chunks (a few MB at a time) and cached per process: a lemma's neighbours
    depend on navec only, so cross-validation folds share them."""
    wanted = [w for w in dict.fromkeys(lemmas) if w not in _NEIGHBOUR_CACHE]
    words = vectors.words
    if wanted and words is not None:
        queries = [(w, hit[1]) for w in wanted if (hit := vectors.lookup(w)) is not None]
        for w in wanted:
            _NEIGHBOUR_CACHE[w] = []
        if queries:
            matrix = np.vstack([q[1] for q in queries]).astype(np.float32).T
            rows = np.fromiter(
                (i for i, w in enumerate(words) if _CYRILLIC_WORD.match(w)), dtype=np.int64
            )
            best_sims = np.full((_CANDIDATES, len(queries)), -1.0, dtype=np.float32)
            best_rows = np.zeros((_CANDIDATES, len(queries)), dtype=np.int64)
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start : start + _CHUNK]
                decoded = vectors.decode(chunk)
                sims = decoded @ matrix
                sims = np.vstack([best_sims, sims])
                ids = np.vstack(
                    [best_rows, np.broadcast_to(chunk[:, None], sims[-len(chunk) :].shape)]
                )
                top = np.argpartition(-sims, _CANDIDATES - 1, axis=0)[:_CANDIDATES]
                best_sims = np.take_along_axis(sims, top, axis=0)
                best_rows = np.take_along_axis(ids, top, axis=0)
            order = np.argsort(-best_sims, axis=0)
            for j, (lemma, _) in enumerate(queries):
                pos = _pos(lemma)
                found: list[str] = []
                seen = {lemma}
                for i in order[:, j]:
                    if best_sims[i, j] < AUGMENT_MIN_SIMILARITY or len(found) >= AUGMENT_NEIGHBOURS:
                        break
                    word = words[int(best_rows[i, j])]
                    other = Lemmatizer.lemma(word)
                    if other in seen or _pos(word) != pos:
                        continue
                    seen.add(other)
                    found.append(word)
                _NEIGHBOUR_CACHE[lemma] = found
    return {w: _NEIGHBOUR_CACHE.get(w, []) for w in lemmas}


AUGMENT_VARIANTS = 2
# Nouns, verbs, adjectives: adverbs and predicatives swap for their opposites
# too easily ("можно" -> "нельзя", "именно" -> "ведь").
_AUGMENTED_POS = frozenset({"NOUN", "VERB", "ADJF"})
AUGMENT_REPLACE_SHARE = 0.5
_TEXT_WORD = re.compile(r"[А-Яа-яЁё]+")


def augmented_texts(
    texts: Sequence[str], vectors: WordVectors, seed: int = 0
) -> list[tuple[int, str]]:
    """(index of the source text, variant) pairs: up to AUGMENT_VARIANTS per
    text, each with some of its content words swapped for navec neighbours
    that training never uses. Seeded, so training is reproducible."""
    import random

    rng = random.Random(seed)
    forms = [[m.group().lower().replace("ё", "е") for m in _TEXT_WORD.finditer(t)] for t in texts]
    known = {Lemmatizer.lemma(w) for ws in forms for w in ws} | {w for ws in forms for w in ws}
    content = sorted(
        {
            lemma
            for ws in forms
            for w in ws
            if len(w) >= 3
            and (lemma := Lemmatizer.lemma(w)) not in _PLACEHOLDER_WORDS
            and not _is_function_word(w)
            and _pos(w) in _AUGMENTED_POS
        }
    )
    table = {
        lemma: [n for n in found if n not in known and Lemmatizer.lemma(n) not in known]
        for lemma, found in navec_neighbours(content, vectors).items()
    }
    out: list[tuple[int, str]] = []
    for index, text in enumerate(texts):
        spans = [
            (m.start(), m.end(), options)
            for m in _TEXT_WORD.finditer(text)
            if (options := table.get(Lemmatizer.lemma(m.group().lower().replace("ё", "е"))))
        ]
        if not spans:
            continue
        seen: set[str] = set()
        for _ in range(AUGMENT_VARIANTS):
            chosen = [s for s in spans if rng.random() < AUGMENT_REPLACE_SHARE] or [
                rng.choice(spans)
            ]
            variant = text
            for start, end, options in sorted(chosen, reverse=True):
                variant = variant[:start] + rng.choice(options) + variant[end:]
            if variant not in seen:
                seen.add(variant)
                out.append((index, variant))
    return out
