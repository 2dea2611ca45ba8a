"""Reader of Rasa 3.x NLU training data (``version: "3.1"``, ``nlu:`` items).

Reads intents with their annotated examples, synonyms, regexes and lookups.
Annotations follow Rasa's own syntax::

    [1002003001](account_number)
    [горячей воды]{"entity": "meter_type", "value": "hot_water"}
    [горячей воды](meter_type:hot_water)

Examples are either one block string (``examples: |`` with ``- `` lines) or
Rasa's list form with per-example metadata::

    examples:
    - text: мерси
      metadata:
        new_words: [мерси]
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

# Rasa's own annotation pattern (rasa/shared/nlu/training_data/entities_parser.py).
_ANNOTATION = re.compile(
    r"\[(?P<text>[^\]]+?)\]"
    r"(?:\((?P<entity>[^:)]+?)(?::(?P<value>[^)]+))?\)|\{(?P<dict>[^}]+?)\})"
)


class TrainingDataError(ValueError):
    """The YAML is not valid Rasa NLU training data."""


@dataclass(frozen=True, slots=True)
class AnnotatedEntity:
    entity: str
    start: int
    end: int
    value: str


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    intent: str
    entities: tuple[AnnotatedEntity, ...] = ()
    metadata: tuple[tuple[str, Any], ...] = ()

    def meta(self, key: str) -> Any:
        return dict(self.metadata).get(key)


@dataclass(slots=True)
class TrainingData:
    examples: list[Example] = field(default_factory=list)
    # synonym value -> its spellings (lower-case)
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    regexes: dict[str, list[str]] = field(default_factory=dict)
    lookups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def intents(self) -> list[str]:
        return sorted({e.intent for e in self.examples})

    def merge(self, other: TrainingData) -> None:
        self.examples.extend(other.examples)
        for target, source in (
            (self.synonyms, other.synonyms),
            (self.regexes, other.regexes),
            (self.lookups, other.lookups),
        ):
            for key, values in source.items():
                target.setdefault(key, []).extend(values)


def parse_annotated(line: str, intent: str) -> Example:
    """Strip Rasa annotations from one example line, keeping entity offsets."""
    plain: list[str] = []
    entities: list[AnnotatedEntity] = []
    pos = 0
    length = 0
    for match in _ANNOTATION.finditer(line):
        before = line[pos : match.start()]
        plain.append(before)
        length += len(before)
        span_text = match.group("text")
        if match.group("dict") is not None:
            try:
                spec: Any = json.loads("{" + match.group("dict") + "}")
            except json.JSONDecodeError as exc:
                raise TrainingDataError(f"bad entity annotation in {line!r}") from exc
            if not isinstance(spec, dict) or "entity" not in spec:
                raise TrainingDataError(f"entity annotation without a name in {line!r}")
            name = str(spec["entity"])
            value = str(spec.get("value", span_text))
        else:
            name = match.group("entity").strip()
            value = (match.group("value") or span_text).strip()
        entities.append(AnnotatedEntity(name, length, length + len(span_text), value))
        plain.append(span_text)
        length += len(span_text)
        pos = match.end()
    plain.append(line[pos:])
    return Example("".join(plain).strip(), intent, tuple(entities))


def _example_items(block: Any, where: str) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    """(line, metadata) pairs from a block string or Rasa's list of ``text:`` items."""
    if not isinstance(block, list):
        return [(line, ()) for line in _example_lines(block, where)]
    items: list[tuple[str, tuple[tuple[str, Any], ...]]] = []
    for item in block:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise TrainingDataError(f"{where}: each listed example needs a 'text'")
        metadata = item.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise TrainingDataError(f"{where}: 'metadata' must be a mapping")
        frozen = {k: tuple(v) if isinstance(v, list) else v for k, v in metadata.items()}
        items.append((item["text"].strip(), tuple(sorted(frozen.items()))))
    return items


def _example_lines(block: Any, where: str) -> list[str]:
    if not isinstance(block, str):
        raise TrainingDataError(f"{where}: 'examples' must be a block string")
    lines: list[str] = []
    for raw in block.splitlines():
        stripped = raw.strip()
        if not stripped:
            continue
        if not stripped.startswith("- "):
            raise TrainingDataError(f"{where}: example lines start with '- ': {raw!r}")
        lines.append(stripped[2:].strip())
    return lines


def load_yaml_text(text: str, source: str = "<string>") -> TrainingData:
    doc = yaml.safe_load(text) or {}
    if not isinstance(doc, dict):
        raise TrainingDataError(f"{source}: top level must be a mapping")
    data = TrainingData()
    items = doc.get("nlu") or []
    if not isinstance(items, list):
        raise TrainingDataError(f"{source}: 'nlu' must be a list")
    for item in items:
        if not isinstance(item, dict):
            raise TrainingDataError(f"{source}: each nlu item must be a mapping")
        examples = item.get("examples", "")
        if "intent" in item:
            intent = str(item["intent"])
            for line, metadata in _example_items(examples, f"{source} intent {intent}"):
                example = parse_annotated(line, intent)
                if metadata:
                    example = replace(example, metadata=metadata)
                data.examples.append(example)
        elif "synonym" in item:
            name = str(item["synonym"])
            lines = _example_lines(examples, f"{source} synonym {name}")
            data.synonyms.setdefault(name, []).extend(s.lower() for s in lines)
        elif "regex" in item:
            name = str(item["regex"])
            data.regexes.setdefault(name, []).extend(
                _example_lines(examples, f"{source} regex {name}")
            )
        elif "lookup" in item:
            name = str(item["lookup"])
            data.lookups.setdefault(name, []).extend(
                _example_lines(examples, f"{source} lookup {name}")
            )
        else:
            raise TrainingDataError(f"{source}: unknown nlu item {sorted(item)}")
    return data


def load_file(path: Path) -> TrainingData:
    return load_yaml_text(path.read_text(encoding="utf-8"), str(path))


def data_files(path: Path) -> list[Path]:
    """The YAML files of a data directory (or the file itself), sorted."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in {".yml", ".yaml"} and p.is_file())


def load_training_data(paths: Path | Sequence[Path]) -> TrainingData:
    files: Iterable[Path]
    if isinstance(paths, Path):
        files = data_files(paths)
    else:
        files = [f for p in paths for f in data_files(p)]
    data = TrainingData()
    for file in files:
        data.merge(load_file(file))
    return data


def fingerprint_files(files: Iterable[Path], extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for file in sorted(files):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()
