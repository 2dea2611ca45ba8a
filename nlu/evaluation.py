"""Evaluation on Rasa-format YAML, reported like Rasa's report files.

Intents as Rasa's ``intent_report.json``; entities as its
``<Extractor>_report.json``: token-level labels (each token gets the entity
whose span covers it, else ``no_entity``), precision/recall/F1 per entity with
``no_entity`` left out, and micro, macro and weighted averages.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, classification_report

from nlu.base import NluParser
from nlu.data_loader import Example
from nlu.types import ParseResult

CONFUSED_WITH_LENGTH = 2  # Rasa lists the two most frequent confusions
NO_ENTITY = "no_entity"
AVERAGES = ("micro avg", "macro avg", "weighted avg")
# Close to Rasa's WhitespaceTokenizer: words and numbers, inner punctuation kept
# ("112-233-445", "1234,5", "A-2026-000123"), outer punctuation dropped.
_TOKEN = re.compile(r"\w(?:[\w.,:/\-]*\w)?")


@dataclass(frozen=True, slots=True)
class Prediction:
    example: Example
    result: ParseResult
    seconds: float = 0.0  # the parse's wall time

    @property
    def predicted(self) -> str:
        return self.result.intent.name


@dataclass(frozen=True, slots=True)
class EvalReport:
    predictions: tuple[Prediction, ...]
    report: dict[str, Any]
    entity_report: dict[str, Any] = field(default_factory=dict)

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

    @property
    def entities(self) -> list[str]:
        return [k for k in self.entity_report if k not in AVERAGES]

    @property
    def entity_f1(self) -> float:
        """Micro-averaged token-level F1 over the entities (0 without any)."""
        avg = self.entity_report.get("micro avg")
        return float(avg["f1-score"]) if avg else 0.0

    def entity_table(self) -> str:
        rows = [f"{'entity':<22}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>9}"]
        for name in [*self.entities, *AVERAGES]:
            r = self.entity_report.get(name)
            if r is None:
                continue
            rows.append(
                f"{name:<22}{r['precision']:>10.3f}{r['recall']:>10.3f}"
                f"{r['f1-score']:>10.3f}{int(r['support']):>9d}"
            )
        return "\n".join(rows)

    def entity_summary_line(self) -> str:
        macro = self.entity_report.get("macro avg", {}).get("f1-score", 0.0)
        return f"entities: micro_f1={self.entity_f1:.3f} macro_f1={float(macro):.3f}"

    def latency_percentiles(self) -> tuple[float, float]:
        """p50 and p95 of the parse time in milliseconds."""
        times = [p.seconds * 1000 for p in self.predictions]
        if not times:
            return 0.0, 0.0
        p50, p95 = np.percentile(times, [50, 95])
        return float(p50), float(p95)

    def confusion(self) -> tuple[list[str], list[list[int]]]:
        """Intent labels (true ones, then predicted-only ones) and the counts matrix."""
        true = [p.example.intent for p in self.predictions]
        pred = [p.predicted for p in self.predictions]
        labels = sorted(set(true)) + sorted(set(pred) - set(true))
        index = {label: i for i, label in enumerate(labels)}
        matrix = [[0] * len(labels) for _ in labels]
        for t, p in zip(true, pred, strict=True):
            matrix[index[t]][index[p]] += 1
        return labels, matrix


def token_labels(text: str, spans: Iterable[tuple[int, int, str]]) -> list[str]:
    """Each token's entity label, as Rasa's evaluation aligns entities to tokens."""
    spans = list(spans)
    labels: list[str] = []
    for token in _TOKEN.finditer(text):
        label = NO_ENTITY
        for start, end, name in spans:
            if start < token.end() and token.start() < end:
                label = name
                break
        labels.append(label)
    return labels


def build_entity_report(predictions: Sequence[Prediction]) -> dict[str, Any]:
    y_true: list[str] = []
    y_pred: list[str] = []
    for p in predictions:
        text = p.example.text
        y_true += token_labels(text, ((e.start, e.end, e.entity) for e in p.example.entities))
        y_pred += token_labels(text, ((e.start, e.end, e.entity) for e in p.result.entities))
    labels = sorted((set(y_true) | set(y_pred)) - {NO_ENTITY})
    if not labels:
        return {}
    raw: dict[str, Any] = classification_report(
        y_true, y_pred, labels=labels, output_dict=True, zero_division=0
    )
    confusions: dict[str, Counter[str]] = defaultdict(Counter)
    for true, pred in zip(y_true, y_pred, strict=True):
        if true != pred and true != NO_ENTITY:
            confusions[true][pred] += 1
    report: dict[str, Any] = {}
    for label in labels:
        row = dict(raw[label])
        row["support"] = int(row["support"])
        row["confused_with"] = dict(confusions[label].most_common(CONFUSED_WITH_LENGTH))
        report[label] = row
    for avg in AVERAGES:
        if avg in raw:
            row = dict(raw[avg])
            row["support"] = int(row["support"])
            report[avg] = row
    return report


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
    return EvalReport(tuple(predictions), report, build_entity_report(predictions))


async def evaluate(parser: NluParser, examples: Sequence[Example]) -> EvalReport:
    predictions: list[Prediction] = []
    for ex in examples:
        started = time.perf_counter()
        result = await parser.parse(ex.text)
        predictions.append(Prediction(ex, result, time.perf_counter() - started))
    return build_report(predictions)
