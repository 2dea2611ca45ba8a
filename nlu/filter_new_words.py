"""Drop training lines that use a word of the held-out new-words sets, or that
are a held-out message word for word.

``nlu/tests/test_nlu_new_words*.yml`` carry, per message, the words that must
appear nowhere in ``nlu/data`` (``metadata.new_words``; the check is
tests/nlu/test_test_sets.py). A line written from a scenario may hit one by
chance; this removes such lines from a block-string training file, matching
word forms and pymorphy3 lemmas the way the test does. It prints only how many
lines it dropped, never the words or the lines, so whoever writes training data
learns nothing about the held-out sets. A line equal to a message of any
``nlu/tests/*.yml`` (lower case, ё as е, spaces collapsed: the key of the
disjointness tests) is dropped too.

Run: ``.venv/bin/python -m nlu.filter_new_words [nlu/data/nlu_personas.yml ...]``
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from nlu.data_loader import load_training_data, parse_annotated
from nlu.features import Lemmatizer, normalise

ROOT = Path(__file__).resolve().parent.parent
HELD_OUT_FILES = sorted((ROOT / "nlu" / "tests").glob("*.yml"))
NEW_WORDS_FILES = sorted((ROOT / "nlu" / "tests").glob("test_nlu_new_words*.yml"))
DEFAULT_TARGET = ROOT / "nlu" / "data" / "nlu_personas.yml"
# The same word pattern as tests/nlu/test_test_sets.py.
_WORD = re.compile(r"[а-яa-z0-9+]+")
_EXAMPLE = re.compile(r"^\s+- (?P<line>.+)$")


def new_words(files: list[Path] = NEW_WORDS_FILES) -> tuple[set[str], set[str]]:
    """The listed new words (normalised) and their lemmas."""
    forms: set[str] = set()
    for path in files:
        for example in load_training_data(path).examples:
            for word in example.meta("new_words") or ():
                forms.add(normalise(str(word)))
    return forms, {Lemmatizer.lemma(w) for w in forms}


def held_out_keys(files: list[Path] = HELD_OUT_FILES) -> set[str]:
    return {key(ex.text) for path in files for ex in load_training_data(path).examples}


def key(text: str) -> str:
    return " ".join(text.lower().replace("ё", "е").split())


def uses_new_word(text: str, forms: set[str], lemmas: set[str]) -> bool:
    return any(w in forms or Lemmatizer.lemma(w) in lemmas for w in _WORD.findall(normalise(text)))


def filter_text(
    source: str,
    forms: set[str],
    lemmas: set[str],
    held_out: frozenset[str] | set[str] = frozenset(),
) -> tuple[str, int]:
    """The file's text without the example lines that use a new word or are a
    held-out message."""
    kept: list[str] = []
    dropped = 0
    intent = False
    for raw in source.splitlines(keepends=True):
        stripped = raw.strip()
        if stripped.startswith("- intent:"):
            intent = True
        elif stripped.startswith(("- synonym:", "- regex:", "- lookup:")):
            intent = False
        match = _EXAMPLE.match(raw.rstrip("\n"))
        if intent and match and raw.startswith("    "):
            text = parse_annotated(match.group("line"), "x").text
            if key(text) in held_out or uses_new_word(text, forms, lemmas):
                dropped += 1
                continue
        kept.append(raw)
    return "".join(kept), dropped


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("files", nargs="*", type=Path, default=[DEFAULT_TARGET])
    parsed = args.parse_args()
    forms, lemmas = new_words()
    held_out = held_out_keys()
    total = 0
    for path in parsed.files:
        text, dropped = filter_text(path.read_text(encoding="utf-8"), forms, lemmas, held_out)
        path.write_text(text, encoding="utf-8")
        total += dropped
    print(f"dropped {total} lines")


if __name__ == "__main__":
    main()
