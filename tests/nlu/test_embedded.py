"""The embedded parser: intents, fallback, Rasa shape, persistence."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config import Settings, load_settings
from nlu.base import ModelNotTrained
from nlu.embedded import (
    FAMILIAR_COVERAGE,
    REAL_WORDS,
    VECTOR_FEATURE_WEIGHT,
    WORD_FEATURE_WEIGHT,
    EmbeddedNluParser,
    damp_unfamiliar,
    data_fingerprint,
    featurize,
    load_model,
    load_or_train,
)
from nlu.factory import build_parser
from nlu.types import FALLBACK_INTENT, INTENTS
from tests.nlu.conftest import DATA_DIR


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("здравствуйте", "greet"),
        ("до свидания", "goodbye"),
        ("спасибо большое", "thanks"),
        ("да", "affirm"),
        ("ага", "affirm"),
        ("нет", "deny"),
        ("не", "deny"),
        ("отмена", "deny"),
        ("хочу привязать лицевой счёт", "link_account"),
        ("1002003001", "link_account"),
        ("112-233-445 95", "link_account"),
        ("передать показания", "submit_reading"),
        ("1234,5", "submit_reading"),
        ("сколько я должен", "check_balance"),
        ("как оплатить", "pay_bill"),
        ("хочу пожаловаться что плохо греют", "file_appeal"),
        ("неправильно начислили, нужен перерасчёт", "file_appeal"),
        ("что с моим обращением A-2026-000002", "appeal_status"),
        ("батареи холодные", "report_outage"),
        ("нет горячей воды", "report_outage"),
        ("подключить дом к теплосети", "connection_request"),
        ("телефон горячей линии", "contacts_hours"),
        ("часы работы офиса", "contacts_hours"),
        ("записаться на приём в офис", "office_appointment"),
        ("какой тариф на отопление", "tariff_info"),
        ("сколько баллов ЭнергоБонус", "bonus_balance"),
        ("подписаться на рассылку", "subscribe_news"),
        ("позовите оператора", "human_handoff"),
        ("расскажи анекдот", "out_of_scope"),
        ("zdravstvuyte", "greet"),
        ("peredat pokazaniya", "submit_reading"),
    ],
)
async def test_clear_phrases(parser: EmbeddedNluParser, text: str, intent: str) -> None:
    result = await parser.parse(text)
    assert result.intent.name == intent
    assert result.intent.confidence >= parser.fallback_threshold


async def test_gibberish_falls_back_but_keeps_the_real_ranking(
    parser: EmbeddedNluParser,
) -> None:
    result = await parser.parse("ывапролд")
    assert result.intent.name == FALLBACK_INTENT
    assert result.intent.confidence == parser.fallback_threshold
    assert len(result.intent_ranking) == 10
    assert {i.name for i in result.intent_ranking} <= set(INTENTS)
    confidences = [i.confidence for i in result.intent_ranking]
    assert confidences == sorted(confidences, reverse=True)
    assert confidences[0] < parser.fallback_threshold


async def test_result_has_the_shape_of_rasa_model_parse(parser: EmbeddedNluParser) -> None:
    result = await parser.parse("показания гвс 1 234,5")
    dumped = result.model_dump(mode="json")
    assert set(dumped) == {"text", "intent", "entities", "intent_ranking"}
    assert dumped["text"] == "показания гвс 1 234,5"
    assert set(dumped["intent"]) == {"name", "confidence"}
    assert [(e["entity"], e["start"], e["end"], e["value"]) for e in dumped["entities"]] == [
        ("meter_type", 10, 13, "hot_water"),
        ("reading_value", 14, 21, "1234.5"),
    ]
    assert dumped["intent_ranking"][0] == dumped["intent"]


async def test_button_payload_bypasses_the_classifier(parser: EmbeddedNluParser) -> None:
    result = await parser.parse('/submit_reading{"meter_type": "heating"}')
    assert (result.intent.name, result.intent.confidence) == ("submit_reading", 1.0)
    assert [(e.entity, e.value) for e in result.entities] == [("meter_type", "heating")]


async def test_empty_text_is_a_fallback(parser: EmbeddedNluParser) -> None:
    result = await parser.parse("   ")
    assert result.intent.name == FALLBACK_INTENT
    assert result.entities == ()


def test_load_or_train_saves_the_model_with_its_fingerprint(
    parser: EmbeddedNluParser, nlu_settings: Settings
) -> None:
    saved = load_model(Path(nlu_settings.nlu_model_path))
    assert saved.fingerprint == data_fingerprint(DATA_DIR)
    assert saved.labels == sorted(INTENTS)


def test_load_or_train_reuses_a_matching_model(
    parser: EmbeddedNluParser, nlu_settings: Settings
) -> None:
    path = Path(nlu_settings.nlu_model_path)
    before = path.stat().st_mtime_ns
    again = load_or_train(nlu_settings)
    assert path.stat().st_mtime_ns == before
    assert again.model.fingerprint == parser.model.fingerprint


_LOAD_AND_PARSE = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from nlu.embedded import EmbeddedNluParser, load_model
parser = EmbeddedNluParser(load_model(Path({model!r})), 0.25)
print(parser.parse_sync(sys.argv[1]).intent.name)
print(sorted({{m.split(".")[0] for m in sys.modules}} & {{"sklearn", "scipy", "navec"}}))
"""


def test_a_saved_model_parses_without_sklearn(
    parser: EmbeddedNluParser, nlu_settings: Settings
) -> None:
    # sklearn and scipy cost the bot process about 80 MB resident: a loaded
    # model scores from plain arrays, and answers like the trained one.
    root = str(Path(__file__).resolve().parents[2])
    code = _LOAD_AND_PARSE.format(root=root, model=str(nlu_settings.nlu_model_path))
    text = "нет отопления с утра, батареи холодные"
    out = subprocess.run(
        [sys.executable, "-c", code, text], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == parser.parse_sync(text).intent.name == "report_outage"
    assert out[1] == "[]"


def _tiny_data(directory: Path) -> None:
    lines = ['version: "3.1"', "nlu:"]
    for intent, words in {
        "greet": ["привет", "здравствуйте", "добрый день"],
        "goodbye": ["пока", "до свидания", "всего доброго"],
    }.items():
        lines += [f"- intent: {intent}", "  examples: |", *[f"    - {w}" for w in words]]
    (directory / "nlu.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")


async def test_load_or_train_retrains_when_the_data_changes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _tiny_data(data_dir)
    settings = load_settings(nlu_model_path=tmp_path / "model.pkl")
    first = load_or_train(settings, data_dir)
    with (data_dir / "nlu.yml").open("a", encoding="utf-8") as f:
        f.write("- intent: thanks\n  examples: |\n    - спасибо\n    - благодарю\n")
    second = load_or_train(settings, data_dir)
    assert first.model.fingerprint != second.model.fingerprint
    assert "thanks" in second.model.labels
    assert load_model(tmp_path / "model.pkl").fingerprint == second.model.fingerprint


def test_a_corrupt_model_file_is_retrained(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _tiny_data(data_dir)
    (tmp_path / "model.pkl").write_bytes(b"not a model")
    with pytest.raises(ModelNotTrained):
        load_model(tmp_path / "model.pkl")
    parser = load_or_train(load_settings(nlu_model_path=tmp_path / "model.pkl"), data_dir)
    assert parser.model.labels == ["goodbye", "greet"]


def test_missing_model_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelNotTrained):
        load_model(tmp_path / "absent.pkl")


async def test_factory_builds_the_embedded_parser_by_default(
    parser: EmbeddedNluParser, nlu_settings: Settings, tmp_path: Path
) -> None:
    copy = tmp_path / "model.pkl"
    shutil.copy(nlu_settings.nlu_model_path, copy)
    built = build_parser(load_settings(nlu_model_path=copy))
    assert isinstance(built, EmbeddedNluParser)
    assert (await built.parse("спасибо")).intent.name == "thanks"


def _sklearn_probabilities(parser: EmbeddedNluParser, texts: list[str]) -> list[Any]:
    """The reference: sklearn's own vectorizers and predict_proba, batched."""
    from scipy.sparse import (  # type: ignore[import-untyped,unused-ignore]
        csr_matrix,
        hstack,
    )

    model = parser.model
    prepared = [
        featurize(t, parser.extractor.extract(t), model.speller, model.vectors, model.neighbours)
        for t in texts
    ]
    analyzer = model.char_vectorizer.build_analyzer()
    vocab = model.char_vectorizer.vocabulary_
    blocks = [
        model.char_vectorizer.transform([p[0] for p in prepared]),
        model.word_vectorizer.transform([p[1] for p in prepared]) * WORD_FEATURE_WEIGHT,
    ]
    if model.vectors is not None:
        blocks.append(csr_matrix(np.vstack([p[2] for p in prepared])) * VECTOR_FEATURE_WEIGHT)
    features = hstack(blocks).tocsr()
    rankings = []
    probabilities = model.classifier.predict_proba(features)
    for (char_text, word_text, _), row in zip(prepared, probabilities, strict=True):
        tokens = analyzer(char_text)
        coverage = sum(t in vocab for t in tokens) / len(tokens) if tokens else 0.0
        ranked = damp_unfamiliar(row, coverage)
        real = parser.real_word_share(word_text)
        if real < REAL_WORDS:
            ranked = damp_unfamiliar(ranked, FAMILIAR_COVERAGE * real / REAL_WORDS)
        rankings.append(ranked)
    return rankings


def test_fast_scorer_matches_sklearn(parser: EmbeddedNluParser) -> None:
    from nlu.data_loader import load_training_data
    from tests.nlu.conftest import HELD_OUT

    texts = [ex.text for ex in load_training_data(HELD_OUT).examples] + ["ывапролд", "?"]
    for text, reference in zip(texts, _sklearn_probabilities(parser, texts), strict=True):
        fast = parser.parse_sync(text).intent_ranking
        order = np.argsort(-reference, kind="stable")[: len(fast)]
        assert [i.name for i in fast] == [parser.model.labels[i] for i in order], text
        assert [i.confidence for i in fast] == pytest.approx([reference[i] for i in order])


async def test_entities_are_kept_only_where_the_intent_reads_them(
    parser: EmbeddedNluParser,
) -> None:
    greeting = await parser.parse("здравствуйте, пишу вам насчёт отопления")
    assert greeting.intent.name == "greet"
    assert greeting.entities == ()
    reading = await parser.parse("передаю показания отопления 1234,5")
    assert reading.intent.name == "submit_reading"
    assert {e.entity for e in reading.entities} == {"meter_type", "reading_value"}


async def test_a_bare_answer_keeps_its_entities_whatever_the_intent(
    parser: EmbeddedNluParser,
) -> None:
    # A form's question answered with the value alone: the form reads it.
    answer = await parser.parse("1234,5")
    assert [e.entity for e in answer.entities] == ["reading_value"]
    address = await parser.parse("ул. Ленина, д. 10")
    assert [e.entity for e in address.entities] == ["address"]


async def test_a_story_is_classified_by_its_request(parser: EmbeddedNluParser) -> None:
    text = (
        "Мы переехали в Курск весной. Соседи у нас хорошие, дом тёплый. "
        "Подскажите, как оплатить квитанцию картой?"
    )
    assert (await parser.parse(text)).intent.name == "pay_bill"
