"""The queue summary an operator reads first."""

from __future__ import annotations

from handlers.handoff import build_summary


def test_the_summary_names_topics_in_the_operators_words() -> None:
    summary = build_summary(
        ["greet", "check_balance", "nlu_fallback", "check_balance", "file_appeal", "human_handoff"],
        "1002003001",
        ["где мой перерасчёт"],
    )
    assert "Темы: баланс и начисления, обращение, жалоба" in summary
    assert "nlu_fallback" not in summary
    assert "human_handoff" not in summary
    assert build_summary(["human_handoff"], None, []).splitlines()[1] == "Темы: —"
