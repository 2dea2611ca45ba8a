"""The ``chat`` fixture: a ChatClient on the real Pipeline, the real embedded
NLU (trained once per test session) and real storage with the demo data
loaded at a fixed moment (tests.harness.DEFAULT_NOW)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.pipeline import Pipeline
from config import Settings
from dialogs.engine import DialogEngine
from nlu.embedded import EmbeddedNluParser, train_model
from storage.crypto import PersonalDataVault
from storage.demo_data import load_demo_data
from storage.locks import MemoryLockStore
from tests.harness import DEFAULT_NOW, ChatClient, Clock


@pytest.fixture(scope="session")
def nlu_parser() -> EmbeddedNluParser:
    from config import load_settings

    return EmbeddedNluParser(train_model(), load_settings().nlu_fallback_threshold)


@pytest.fixture
def clock() -> Clock:
    return Clock(DEFAULT_NOW)


@pytest.fixture
async def pipeline(
    db_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    vault: PersonalDataVault,
    nlu_parser: EmbeddedNluParser,
    clock: Clock,
) -> AsyncIterator[Pipeline]:
    async with session_factory() as session:
        assert await load_demo_data(session, vault, db_settings, DEFAULT_NOW)
    locks = MemoryLockStore()
    yield Pipeline(
        db_settings,
        session_factory,
        nlu_parser,
        locks,
        DialogEngine(db_settings),
        vault,
        clock=clock,
    )
    await locks.close()


@pytest.fixture
def chat(
    pipeline: Pipeline, session_factory: async_sessionmaker[AsyncSession], clock: Clock
) -> ChatClient:
    return ChatClient(pipeline, session_factory, clock)
