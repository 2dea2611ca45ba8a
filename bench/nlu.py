"""NLU benchmark: training time, parse latency, held-out accuracy and macro F1.

Run: ``.venv/bin/python bench/nlu.py [--parses N] [--folds K]``. Targets (issue 2):
training < 10 s, parse p95 < 5 ms, macro F1 >= 0.92 on each held-out file
(nlu/tests/test_nlu.yml and the field set nlu/tests/test_nlu_field.yml).
5-fold cross-validation on the training data is printed too (about 3 s;
``--folds 0`` skips it); ``--typo-cv`` adds one on misspelt held-out folds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nlu.data_loader import Example, TrainingData, load_training_data  # noqa: E402
from nlu.embedded import (  # noqa: E402
    DATA_DIR,
    EmbeddedNluParser,
    fit_model,
    load_model,
    save_model,
    train_model,
)
from nlu.evaluation import Prediction, build_report, evaluate  # noqa: E402
from nlu.features import Lemmatizer  # noqa: E402

HELD_OUT = ROOT / "nlu" / "tests" / "test_nlu.yml"
HELD_OUT_FIELD = ROOT / "nlu" / "tests" / "test_nlu_field.yml"
THRESHOLD = 0.45
TYPO_RATE = 0.6


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def entity_scores(parser: EmbeddedNluParser, examples: list[Example]) -> tuple[float, float, int]:
    gold: set[tuple[int, str, int, int, str]] = set()
    found: set[tuple[int, str, int, int, str]] = set()
    for i, ex in enumerate(examples):
        gold |= {(i, e.entity, e.start, e.end, str(e.value)) for e in ex.entities}
        found |= {
            (i, e.entity, e.start, e.end, str(e.value)) for e in parser.extractor.extract(ex.text)
        }
    hits = len(gold & found)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(gold) if gold else 1.0
    return precision, recall, len(gold)


def add_typos(text: str, rng: random.Random) -> str:
    """Customer-like typos: in most words of 5+ letters one letter is dropped,
    replaced by a vowel or swapped with its neighbour (never the first one)."""
    words = []
    for word in text.split():
        if len(word) >= 5 and word.isalpha() and rng.random() < TYPO_RATE:
            i = rng.randrange(1, len(word))
            kind = rng.random()
            if kind < 0.4:
                word = word[:i] + word[i + 1 :]
            elif kind < 0.7:
                word = word[:i] + rng.choice("аоеиуя") + word[i + 1 :]
            else:
                word = word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
        words.append(word)
    return " ".join(words)


def cross_validate(folds: int, typos: bool = False) -> str:
    """Stratified k-fold on the training data: a harsher estimate than the held-out
    file, since every training example is a distinct phrasing. With ``typos``
    the held-out fold is misspelt first (seeded), a robustness estimate."""
    from sklearn.model_selection import StratifiedKFold

    rng = random.Random(7)

    data = load_training_data(DATA_DIR)
    labels = [ex.intent for ex in data.examples]
    predictions: list[Prediction] = []
    splitter = StratifiedKFold(folds, shuffle=True, random_state=0)
    for train_idx, test_idx in splitter.split(labels, labels):
        fold = TrainingData(
            examples=[data.examples[i] for i in train_idx],
            synonyms=data.synonyms,
            regexes=data.regexes,
            lookups=data.lookups,
        )
        parser = EmbeddedNluParser(fit_model(fold), THRESHOLD)
        for i in test_idx:
            ex = data.examples[i]
            text = add_typos(ex.text, rng) if typos else ex.text
            predictions.append(Prediction(ex, parser.parse_sync(text)))
    return build_report(predictions).summary_line()


async def run(parses: int, folds: int, typo_cv: bool) -> None:
    started = time.perf_counter()
    Lemmatizer.analyzer()
    morph_seconds = time.perf_counter() - started
    model = train_model(DATA_DIR)
    train_seconds = time.perf_counter() - started
    print(f"training examples        {model.meta['examples']} ({len(model.labels)} intents)")
    print(f"pymorphy3 analyzer build {morph_seconds:8.2f} s")
    print(f"training (incl. analyzer){train_seconds:8.2f} s   target < 10 s")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nlu-model.pkl"
        save_model(model, path)
        t0 = time.perf_counter()
        parser = EmbeddedNluParser(load_model(path), THRESHOLD)
        print(
            f"model load               {time.perf_counter() - t0:8.3f} s "
            f"({path.stat().st_size / 1e6:.1f} MB)"
        )

    held_out = {path: load_training_data(path).examples for path in (HELD_OUT, HELD_OUT_FIELD)}
    texts = [ex.text for examples in held_out.values() for ex in examples]
    timings: list[float] = []
    for i in range(parses):
        text = texts[i % len(texts)]
        t0 = time.perf_counter_ns()
        await parser.parse(text)
        timings.append((time.perf_counter_ns() - t0) / 1e6)
    timings.sort()
    print(
        f"parse latency over {parses} parses: p50 {percentile(timings, 50):.2f} ms, "
        f"p95 {percentile(timings, 95):.2f} ms, p99 {percentile(timings, 99):.2f} ms, "
        f"max {timings[-1]:.2f} ms, mean {statistics.fmean(timings):.2f} ms   target p95 < 5 ms"
    )

    summaries: list[str] = []
    for path, examples in held_out.items():
        name = path.relative_to(ROOT)
        report = await evaluate(parser, examples)
        precision, recall, gold = entity_scores(parser, examples)
        print(f"held-out {name}: {len(examples)} examples")
        print(
            f"  entities (exact span and value): precision {precision:.3f} recall {recall:.3f} "
            f"over {gold} annotated"
        )
        fallbacks = sum(p.predicted == "nlu_fallback" for p in report.predictions)
        print(f"  fallbacks at threshold {THRESHOLD}: {fallbacks}")
        for p in report.errors():
            print(
                f"  miss: {p.example.intent:>18} -> {p.predicted:<18} "
                f"{p.result.intent_ranking[0].confidence:.2f} {p.example.text}"
            )
        summaries.append(f"held-out {name}: {report.summary_line()}   target macro_f1 >= 0.92")
    if folds > 1:
        print(f"{folds}-fold cross-validation on the training data: {cross_validate(folds)}")
        if typo_cv:
            print(
                f"{folds}-fold cross-validation, held-out folds misspelt: "
                f"{cross_validate(folds, typos=True)}"
            )
    for line in summaries:
        print(line)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--parses", type=int, default=3000)
    args.add_argument("--folds", type=int, default=5, help="0 skips cross-validation")
    args.add_argument(
        "--typo-cv", action="store_true", help="also cross-validate on misspelt folds (+3 s)"
    )
    parsed = args.parse_args()
    asyncio.run(run(parsed.parses, parsed.folds, parsed.typo_cv))


if __name__ == "__main__":
    main()
