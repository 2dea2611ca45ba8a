"""Address benchmark: recall, precision and value accuracy of the address
entity on each test file, with the extractor alone and through the whole
parser (which drops entities an intent cannot use), and the extractor's
per-message time.

    .venv/bin/python bench/address.py [--no-parser] [--baseline REV]

A gold address counts as found when a predicted address overlaps it; its
value is right when the normalised value equals the gold value (gold values
are canonical in nlu/tests/test_address*.yml; the older files annotate the
span as written, so their value column is not meaningful). The sealed file
is scored only, never tuned on.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nlu.data_loader import Example, load_training_data  # noqa: E402
from nlu.embedded import DATA_DIR, make_extractor  # noqa: E402
from nlu.entities import EntityExtractor  # noqa: E402
from nlu.noise import TYPO_RATE, misspell, to_latin  # noqa: E402
from nlu.types import Entity  # noqa: E402

TESTS = ROOT / "nlu" / "tests"
FILES = (
    TESTS / "test_address.yml",
    TESTS / "test_address_sealed.yml",
    TESTS / "test_nlu.yml",
    TESTS / "test_nlu_field.yml",
    TESTS / "test_nlu_long.yml",
)


def score(examples: Sequence[Example], predicted: Sequence[Sequence[Entity]]) -> str:
    gold_total = found = right = pred_total = pred_ok = 0
    for ex, entities in zip(examples, predicted, strict=True):
        golds = [e for e in ex.entities if e.entity == "address"]
        preds = [e for e in entities if e.entity == "address"]
        gold_total += len(golds)
        pred_total += len(preds)
        for g in golds:
            hit = next((p for p in preds if p.start < g.end and g.start < p.end), None)
            if hit is not None:
                found += 1
                right += hit.value == g.value
        pred_ok += sum(any(p.start < g.end and g.start < p.end for g in golds) for p in preds)
    recall = found / gold_total if gold_total else 1.0
    precision = pred_ok / pred_total if pred_total else 1.0
    value = right / gold_total if gold_total else 1.0
    return (
        f"support {gold_total:3d}  recall {recall:.3f}  precision {precision:.3f}  "
        f"value exact {value:.3f}"
    )


def noisy_score(extractor: EntityExtractor, examples: Sequence[Example]) -> str:
    """Typos (one in a word, as nlu/noise.py makes them) or the whole message in
    Latin letters: spans move, so a gold value counts when any address has it."""
    out = []
    for kind in ("typos", "latin"):
        rng = random.Random(7)
        total = right = 0
        for ex in examples:
            text = to_latin(ex.text) if kind == "latin" else noisy_words(ex.text, rng)
            values = {e.value for e in extractor.extract(text) if e.entity == "address"}
            for gold in ex.entities:
                if gold.entity == "address":
                    total += 1
                    right += gold.value in values
        out.append(f"{kind} value right {right / max(total, 1):.3f}")
    return "  ".join(out)


def noisy_words(text: str, rng: random.Random) -> str:
    return " ".join(misspell(w, rng) if rng.random() < TYPO_RATE else w for w in text.split())


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--no-parser", action="store_true", help="the extractor alone only")
    opts = args.parse_args()
    data = load_training_data(DATA_DIR)
    extractor = make_extractor(data)
    sets = {path.name: load_training_data(path).examples for path in FILES if path.exists()}

    timings: list[float] = []
    for examples in sets.values():
        for ex in examples:
            for _ in range(5):
                t0 = time.perf_counter()
                extractor.extract(ex.text)
                timings.append((time.perf_counter() - t0) * 1000)
    timings.sort()
    p95 = timings[int(0.95 * (len(timings) - 1))]
    print(
        f"extractor per message: median {statistics.median(timings):.3f} ms, "
        f"p95 {p95:.3f} ms, max {timings[-1]:.3f} ms ({len(timings)} calls)"
    )
    print("extractor alone")
    for name, examples in sets.items():
        print(f"  {name:<28}{score(examples, [extractor.extract(e.text) for e in examples])}")
    print("extractor alone, the scenario sets made noisy by nlu/noise.py (value found anywhere)")
    for name, examples in sets.items():
        if name.startswith("test_address"):
            print(f"  {name:<28}{noisy_score(extractor, examples)}")
    if opts.no_parser:
        return
    from config import load_settings
    from nlu.embedded import EmbeddedNluParser, train_model

    parser = EmbeddedNluParser(train_model(DATA_DIR), load_settings().nlu_fallback_threshold)
    print("whole parser (entities the intent can use)")
    for name, examples in sets.items():
        parsed = [parser.parse_sync(e.text).entities for e in examples]
        print(f"  {name:<28}{score(examples, parsed)}")


if __name__ == "__main__":
    main()
