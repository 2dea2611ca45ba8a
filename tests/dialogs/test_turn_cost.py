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


@pytest.fixture
def statements(db_engine: AsyncEngine) -> Iterator[Statements]:
    spy = Statements()
    event.listen(db_engine.sync_engine, "before_cursor_execute", spy)
    yield spy
    event.remove(db_engine.sync_engine, "before_cursor_execute", spy)


async def test_a_turn_without_lookups_is_three_statements_on_postgresql(
    chat: ChatClient, statements: Statements, db_engine: AsyncEngine
) -> None:
    await chat.say("привет")  # creates the identity and the conversation
    statements.sent.clear()
    await chat.say("спасибо")
    assert chat.texts
    if db_engine.dialect.name == "postgresql":
        # The inbox insert; the claim with the load; messages, outbox and state.
        assert len(statements.sent) == 3, statements.sent
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
