"""Rasa-style button payloads."""

from __future__ import annotations

import pytest

from nlu.payload import parse_payload


def test_intent_only() -> None:
    result = parse_payload("/affirm")
    assert result is not None
    assert (result.intent.name, result.intent.confidence) == ("affirm", 1.0)
    assert result.entities == ()
    assert [i.name for i in result.intent_ranking] == ["affirm"]


def test_intent_with_entities() -> None:
    result = parse_payload('/link_account{"account_number": "1002003001", "snils": "11223344595"}')
    assert result is not None
    assert result.intent.name == "link_account"
    assert [(e.entity, e.value, e.start, e.end) for e in result.entities] == [
        ("account_number", "1002003001", 0, 0),
        ("snils", "11223344595", 0, 0),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "affirm",
        "да",
        "/start",
        "/unknown_intent",
        '/affirm{"broken": }',
        "/affirm[1]",
        "текст /affirm",
        "",
    ],
)
def test_anything_else_is_not_a_payload(text: str) -> None:
    assert parse_payload(text) is None
