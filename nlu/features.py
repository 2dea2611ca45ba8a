"""Text preparation for the intent classifier.

Entities are replaced by placeholder words first, so that "1002003001" and
"1002003999" look the same to the classifier (a bare account number means
``link_account``, a bare decimal means ``submit_reading``). Latin
transliteration ("pokazaniya", "zdravstvuyte") is mapped back to Cyrillic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

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
    ("a", "а"),
    ("b", "б"),
    ("c", "к"),
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


def prepare(text: str, entities: Sequence[Entity]) -> tuple[str, str]:
    """(normalised text for character n-grams, lemma string for word n-grams)."""
    norm = normalise(mask_entities(text, entities))
    return norm, Lemmatizer.lemmas(norm)
