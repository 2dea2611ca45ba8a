"""The ``chat`` fixture: a ChatClient on the real Pipeline, the real embedded
NLU (trained once per test session) and real storage with the demo data
loaded at a fixed moment (tests.harness.DEFAULT_NOW)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.base import InlineChannel
from bot.pipeline import Pipeline
from config import Settings, load_settings
from dialogs.engine import DialogEngine
from nlu.base import NluParser
from nlu.embedded import EmbeddedNluParser, train_model
from storage.crypto import PersonalDataVault
from storage.demo_data import load_demo_data
from storage.locks import LockStore, MemoryLockStore
from tests.harness import DEFAULT_NOW, ChatClient, Clock

PipelineFactory = Callable[..., Pipeline]


@pytest.fixture(scope="session")
def nlu_parser() -> EmbeddedNluParser:
    return EmbeddedNluParser(train_model(), load_settings().nlu_fallback_threshold)


@pytest.fixture
def clock() -> Clock:
    return Clock(DEFAULT_NOW)


@pytest.fixture
async def make_pipeline(
    db_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    vault: PersonalDataVault,
    nlu_parser: EmbeddedNluParser,
    clock: Clock,
) -> PipelineFactory:
    """Demo data loaded; builds Pipelines (a custom engine, NLU or locks if given)."""
    async with session_factory() as session:
        assert await load_demo_data(session, vault, db_settings, DEFAULT_NOW)

    def build(
        engine: DialogEngine | None = None,
        nlu: NluParser | None = None,
        locks: LockStore | None = None,
        **kwargs: object,
    ) -> Pipeline:
        return Pipeline(
            db_settings,
            session_factory,
            nlu or nlu_parser,
            locks or MemoryLockStore(),
            engine or DialogEngine(db_settings),
            vault,
            # The transcript client reads the replies handle() returns.
            channels={"test": InlineChannel("test")},
            clock=clock,
            **kwargs,  # type: ignore[arg-type]
        )

    return build


@pytest.fixture
def pipeline(make_pipeline: PipelineFactory) -> Pipeline:
    return make_pipeline()


@pytest.fixture
def chat(
    pipeline: Pipeline, session_factory: async_sessionmaker[AsyncSession], clock: Clock
) -> ChatClient:
    return ChatClient(pipeline, session_factory, clock)
