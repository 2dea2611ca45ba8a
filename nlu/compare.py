"""Both backends on one test file: a Markdown table and a confusion matrix each.

The embedded parser is timed in-process, Rasa over HTTP (``/model/parse`` on a
running server), so the latencies are what the bot would see from each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nlu.evaluation import EvalReport


@dataclass(frozen=True, slots=True)
class BackendRun:
    name: str
    report: EvalReport
    train_seconds: float  # NaN when unknown (a model trained elsewhere)
    latency_note: str  # "in-process" or "HTTP"


def _f(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(runs: list[BackendRun], source: str) -> str:
    header = "| metric | " + " | ".join(r.name for r in runs) + " |"
    rule = "|---|" + "---:|" * len(runs)
    rows = [f"Evaluated on `{source}` ({len(runs[0].report.predictions)} examples).", ""]
    rows += [header, rule]

    def row(label: str, values: list[str]) -> None:
        rows.append(f"| {label} | " + " | ".join(values) + " |")

    row("accuracy", [_f(r.report.accuracy) for r in runs])
    row("macro F1", [_f(r.report.macro_f1) for r in runs])
    row("entity F1 (token-level, micro)", [_f(r.report.entity_f1) for r in runs])
    p50s, p95s = zip(*(r.report.latency_percentiles() for r in runs), strict=True)
    row(
        "parse p50, ms",
        [f"{v:.1f} ({r.latency_note})" for v, r in zip(p50s, runs, strict=True)],
    )
    row("parse p95, ms", [f"{v:.1f}" for v in p95s])
    row("training time, s", [_f(r.train_seconds, 1) for r in runs])
    intents = runs[0].report.intents
    for intent in intents:
        row(
            f"F1 `{intent}`",
            [_f(float(r.report.report.get(intent, {}).get("f1-score", 0.0))) for r in runs],
        )
    entities = sorted({e for r in runs for e in r.report.entities})
    for entity in entities:
        values = []
        for r in runs:
            entry: Mapping[str, float] = r.report.entity_report.get(entity, {})
            values.append(_f(float(entry.get("f1-score", 0.0))))
        row(f"entity F1 `{entity}`", values)
    return "\n".join(rows)


def plot_confusion(report: EvalReport, title: str, path: Path) -> Path:
    """A PNG of the intent confusion matrix (rows: true intent; columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    labels, matrix = report.confusion()
    size = max(6.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        image = ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title}: accuracy {report.accuracy:.3f}")
        peak = max((max(r) for r in matrix), default=0)
        for i, line in enumerate(matrix):
            for j, count in enumerate(line):
                if count:
                    colour = "white" if count > peak / 2 else "black"
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=colour)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
