"""The training data keeps the contract of shared/intents.md."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from nlu.data_loader import data_files, load_training_data, parse_annotated
from nlu.entities import EntityExtractor
from nlu.types import ENTITIES, INTENTS
from tests.nlu.conftest import DATA_DIR, HELD_OUT_FILES

MIN_TRAIN_EXAMPLES = 40
MIN_TEST_EXAMPLES = 10


def _key(text: str) -> str:
    return " ".join(text.lower().replace("ё", "е").split())


def test_every_file_is_rasa_3_1_yaml() -> None:
    for path in [*data_files(DATA_DIR), *HELD_OUT_FILES]:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["version"] == "3.1", path
        assert isinstance(doc["nlu"], list), path


def test_every_contract_intent_has_enough_examples_and_no_other_intent() -> None:
    counts = Counter(ex.intent for ex in load_training_data(DATA_DIR).examples)
    assert set(counts) == set(INTENTS)
    thin = {intent: n for intent, n in counts.items() if n < MIN_TRAIN_EXAMPLES}
    assert thin == {}


def test_training_examples_are_not_duplicated() -> None:
    texts = Counter(_key(ex.text) for ex in load_training_data(DATA_DIR).examples)
    assert [t for t, n in texts.items() if n > 1] == []


def test_every_contract_entity_is_annotated_and_no_other() -> None:
    data = load_training_data(DATA_DIR)
    annotated = {e.entity for ex in data.examples for e in ex.entities}
    assert annotated == set(ENTITIES)
    assert set(data.regexes) <= set(ENTITIES)
    assert set(data.lookups) <= set(ENTITIES)
    assert set(data.synonyms) <= {"heating", "hot_water"}


@pytest.mark.parametrize("held_out_file", HELD_OUT_FILES, ids=lambda p: p.name)
def test_held_out_file_covers_every_intent_and_is_disjoint_from_training(
    held_out_file: Path,
) -> None:
    held_out = load_training_data(held_out_file).examples
    counts = Counter(ex.intent for ex in held_out)
    assert set(counts) == set(INTENTS)
    assert min(counts.values()) >= MIN_TEST_EXAMPLES
    trained = {_key(ex.text) for ex in load_training_data(DATA_DIR).examples}
    assert [ex.text for ex in held_out if _key(ex.text) in trained] == []


def test_held_out_files_are_disjoint_from_each_other() -> None:
    first, second = (
        {_key(ex.text) for ex in load_training_data(p).examples} for p in HELD_OUT_FILES
    )
    assert first & second == set()


@pytest.mark.parametrize("held_out_file", HELD_OUT_FILES, ids=lambda p: p.name)
def test_annotated_entities_of_the_held_out_file_are_extracted(held_out_file: Path) -> None:
    data = load_training_data(DATA_DIR)
    extractor = EntityExtractor(data.lookups["address"], data.synonyms)
    missed = []
    for ex in load_training_data(held_out_file).examples:
        found = {(e.entity, e.start, e.end, e.value) for e in extractor.extract(ex.text)}
        for gold in ex.entities:
            if (gold.entity, gold.start, gold.end, gold.value) not in found:
                missed.append((ex.text, gold))
    assert missed == []


@pytest.mark.parametrize(
    ("line", "text", "entities"),
    [
        (
            "лс [1002003001](account_number)",
            "лс 1002003001",
            [("account_number", 3, 13, "1002003001")],
        ),
        (
            '[горячей воды]{"entity": "meter_type", "value": "hot_water"} 415',
            "горячей воды 415",
            [("meter_type", 0, 12, "hot_water")],
        ),
        ("[гвс](meter_type:hot_water)", "гвс", [("meter_type", 0, 3, "hot_water")]),
        ("без разметки", "без разметки", []),
    ],
)
def test_annotations_are_read_like_rasa(
    line: str, text: str, entities: list[tuple[str, int, int, str]]
) -> None:
    example = parse_annotated(line, "x")
    assert example.text == text
    assert [(e.entity, e.start, e.end, e.value) for e in example.entities] == entities


def test_loader_reads_synonyms_regexes_and_lookups(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - привет\n'
        "- synonym: hot_water\n  examples: |\n    - ГВС\n"
        "- regex: snils\n  examples: |\n    - \\d{11}\n"
        "- lookup: address\n  examples: |\n    - Ленина\n",
        encoding="utf-8",
    )
    data = load_training_data(tmp_path)
    assert [(e.text, e.intent) for e in data.examples] == [("привет", "greet")]
    assert data.synonyms == {"hot_water": ["гвс"]}
    assert data.regexes == {"snils": ["\\d{11}"]}
    assert data.lookups == {"address": ["Ленина"]}
