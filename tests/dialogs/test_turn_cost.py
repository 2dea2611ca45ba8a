"""What a turn costs the database: statements counted as they are sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import ChatClient


class Statements:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, *args: object) -> None:
        statement = args[2]
        assert isinstance(statement, str)
        self.sent.append(" ".join(statement.split())[:60])


def lookups_of(spy: Statements) -> list[str]:
    """The turn's reads beyond the conversation's own load (SQLite loads it apart)."""
    return [s for s in spy.sent if s.startswith("SELECT") and "conversations" not in s]


@pytest.fixture
def statements(db_engine: AsyncEngine) -> Iterator[Statements]:
    spy = Statements()
    event.listen(db_engine.sync_engine, "before_cursor_execute", spy)
    yield spy
    event.remove(db_engine.sync_engine, "before_cursor_execute", spy)


async def test_a_turn_without_lookups_is_two_statements_on_postgresql(
    chat: ChatClient, statements: Statements, db_engine: AsyncEngine
) -> None:
    await chat.say("привет")  # creates the identity and the conversation
    statements.sent.clear()
    await chat.say("спасибо")
    assert chat.texts
    if db_engine.dialect.name == "postgresql":
        # The inbox insert with the load; the claim, messages, outbox and state.
        assert len(statements.sent) == 2, statements.sent
        assert statements.sent[0].startswith("WITH recorded AS (INSERT INTO inbox")
    else:
        # SQLite has no data-modifying CTEs: each is a statement of its own.
        assert len(statements.sent) <= 7, statements.sent


async def test_a_linked_account_is_loaded_with_the_conversation(
    chat: ChatClient, statements: Statements
) -> None:
    await chat.link()
    statements.sent.clear()
    await chat.say("спасибо")
    assert not [s for s in statements.sent if s.startswith("SELECT accounts")], statements.sent


async def test_a_balance_turn_reads_the_summary_in_one_statement_on_postgresql(
    chat: ChatClient, statements: Statements, db_engine: AsyncEngine
) -> None:
    await chat.link()
    for text in ("сколько я должен", "начисления за март"):
        statements.sent.clear()
        await chat.say(text)
        assert "3 456,78 ₽" in chat.last_text
        lookups = lookups_of(statements)
        # Balance, charges of the month and the last payment: one select.
        assert len(lookups) == 1, statements.sent
        if db_engine.dialect.name == "postgresql":
            assert len(statements.sent) == 3, statements.sent
    statements.sent.clear()
    await chat.say("как оплатить")
    assert len(lookups_of(statements)) == 1, statements.sent
    if db_engine.dialect.name == "postgresql":
        assert len(statements.sent) == 3, statements.sent


async def test_a_reading_turn_reads_the_meters_once_on_postgresql(
    chat: ChatClient, statements: Statements, db_engine: AsyncEngine
) -> None:
    await chat.link()
    await chat.say("передать показания")
    statements.sent.clear()
    await chat.press("Отопление")
    assert "Предыдущее показание: 148,620" in chat.last_text
    # The meters with their readings of the last year: one select for both.
    meter_reads = [s for s in statements.sent if s.startswith("SELECT meters")]
    assert len(meter_reads) == 1, statements.sent
    assert not [s for s in statements.sent if s.startswith("SELECT readings")], statements.sent
    if db_engine.dialect.name == "postgresql":
        assert len(statements.sent) == 3, statements.sent
    await chat.say("149,8")
    statements.sent.clear()
    await chat.press("Да")
    assert "принято" in chat.last_text
    # The confirmation re-checks against the same read, then inserts.
    assert len([s for s in statements.sent if s.startswith("SELECT meters")]) == 1
    assert not [s for s in statements.sent if s.startswith("SELECT readings")], statements.sent
    if db_engine.dialect.name == "postgresql":
        assert len(statements.sent) == 4, statements.sent
