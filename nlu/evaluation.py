"""Intent evaluation on Rasa-format YAML, reported like Rasa's intent_report.json."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sklearn.metrics import accuracy_score, classification_report

from nlu.base import NluParser
from nlu.data_loader import Example
from nlu.types import ParseResult

CONFUSED_WITH_LENGTH = 2  # Rasa lists the two most frequent confusions


@dataclass(frozen=True, slots=True)
class Prediction:
    example: Example
    result: ParseResult

    @property
    def predicted(self) -> str:
        return self.result.intent.name


@dataclass(frozen=True, slots=True)
class EvalReport:
    predictions: tuple[Prediction, ...]
    report: dict[str, Any]

    @property
    def accuracy(self) -> float:
        return float(self.report["accuracy"])

    @property
    def macro_f1(self) -> float:
        return float(self.report["macro avg"]["f1-score"])

    @property
    def intents(self) -> list[str]:
        return [k for k in self.report if k not in {"accuracy", "macro avg", "weighted avg"}]

    def summary_line(self) -> str:
        return f"accuracy={self.accuracy:.3f} macro_f1={self.macro_f1:.3f}"

    def table(self) -> str:
        rows = [f"{'intent':<22}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>9}"]
        for name in [*self.intents, "macro avg", "weighted avg"]:
            r = self.report[name]
            rows.append(
                f"{name:<22}{r['precision']:>10.3f}{r['recall']:>10.3f}"
                f"{r['f1-score']:>10.3f}{int(r['support']):>9d}"
            )
        return "\n".join(rows)

    def errors(self) -> list[Prediction]:
        return [p for p in self.predictions if p.predicted != p.example.intent]


def build_report(predictions: Sequence[Prediction]) -> EvalReport:
    y_true = [p.example.intent for p in predictions]
    y_pred = [p.predicted for p in predictions]
    labels = sorted(set(y_true))
    raw: dict[str, Any] = classification_report(
        y_true, y_pred, labels=labels, output_dict=True, zero_division=0
    )
    confusions: dict[str, Counter[str]] = defaultdict(Counter)
    for true, pred in zip(y_true, y_pred, strict=True):
        if true != pred:
            confusions[true][pred] += 1
    report: dict[str, Any] = {}
    for label in labels:
        row = dict(raw[label])
        row["support"] = int(row["support"])
        row["confused_with"] = dict(confusions[label].most_common(CONFUSED_WITH_LENGTH))
        report[label] = row
    # With an explicit label list sklearn reports "micro avg"; Rasa has "accuracy".
    report["accuracy"] = float(accuracy_score(y_true, y_pred))
    for avg in ("macro avg", "weighted avg"):
        row = dict(raw[avg])
        row["support"] = int(row["support"])
        report[avg] = row
    return EvalReport(tuple(predictions), report)


async def evaluate(parser: NluParser, examples: Sequence[Example]) -> EvalReport:
    predictions = [Prediction(ex, await parser.parse(ex.text)) for ex in examples]
    return build_report(predictions)
