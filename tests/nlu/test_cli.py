"""The nlu CLI: train, parse, eval with a Rasa-shaped report."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from config import Settings
from nlu.cli import main
from nlu.embedded import EmbeddedNluParser
from nlu.types import INTENTS
from tests.nlu.conftest import HELD_OUT


def run(argv: list[str], settings: Settings) -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, settings, out=out)
    return code, out.getvalue()


def test_parse_prints_the_result_json(parser: EmbeddedNluParser, nlu_settings: Settings) -> None:
    code, output = run(["parse", "лс 1002003001"], nlu_settings)
    assert code == 0
    result = json.loads(output)
    assert result["intent"]["name"] == "link_account"
    assert result["entities"][0]["value"] == "1002003001"
    assert '"text": "лс 1002003001"' in output  # not \u-escaped


def test_eval_prints_a_table_and_the_summary_last(
    parser: EmbeddedNluParser, nlu_settings: Settings, tmp_path: Path
) -> None:
    report_path = tmp_path / "intent_report.json"
    code, output = run(["eval", str(HELD_OUT), "--report", str(report_path)], nlu_settings)
    assert code == 0
    lines = output.rstrip("\n").split("\n")
    assert re.fullmatch(r"accuracy=\d\.\d{3} macro_f1=\d\.\d{3}", lines[-1])
    for intent in INTENTS:
        assert any(line.startswith(intent + " ") for line in lines), intent

    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert set(report) == {*INTENTS, "accuracy", "macro avg", "weighted avg"}
    for intent in INTENTS:
        assert set(report[intent]) == {
            "precision",
            "recall",
            "f1-score",
            "support",
            "confused_with",
        }
    assert set(report["macro avg"]) == {"precision", "recall", "f1-score", "support"}
    accuracy, macro = (float(v.split("=")[1]) for v in lines[-1].split())
    assert round(report["accuracy"], 3) == accuracy
    assert round(report["macro avg"]["f1-score"], 3) == macro


def test_eval_counts_errors_in_the_report(
    parser: EmbeddedNluParser, nlu_settings: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "mislabelled.yml"
    data.write_text(
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - здравствуйте\n'
        "    - сколько я должен\n- intent: thanks\n  examples: |\n    - спасибо\n",
        encoding="utf-8",
    )
    report_path = tmp_path / "r.json"
    code, output = run(["eval", str(data), "--report", str(report_path)], nlu_settings)
    assert code == 0
    assert output.rstrip().split("\n")[-1] == "accuracy=0.667 macro_f1=0.833"
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["greet"]["confused_with"] == {"check_balance": 1}
    assert report["greet"]["support"] == 2


def test_train_writes_the_model(nlu_settings: Settings, tmp_path: Path) -> None:
    settings = nlu_settings.model_copy(update={"nlu_model_path": tmp_path / "m.pkl"})
    code, output = run(["train"], settings)
    assert code == 0
    assert (tmp_path / "m.pkl").exists()
    assert "20 intents" in output


def test_eval_of_a_missing_file_fails_cleanly(nlu_settings: Settings, tmp_path: Path) -> None:
    code, _ = run(["eval", str(tmp_path / "absent.yml")], nlu_settings)
    assert code != 0


def test_eval_reports_entities_like_rasa(
    parser: EmbeddedNluParser, nlu_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "entity_report.json"
    code, output = run(
        ["eval", str(HELD_OUT), "--backend", "embedded", "--entity-report", str(path)],
        nlu_settings,
    )
    assert code == 0
    lines = output.rstrip("\n").split("\n")
    assert re.fullmatch(r"entities: micro_f1=\d\.\d{3} macro_f1=\d\.\d{3}", lines[-2])
    report = json.loads(path.read_text(encoding="utf-8"))
    assert {"micro avg", "macro avg", "weighted avg"} <= set(report)
    assert "no_entity" not in report
    row = report["account_number"]
    assert set(row) == {"precision", "recall", "f1-score", "support", "confused_with"}
    assert row["support"] > 0
    assert row["recall"] > 0.5
