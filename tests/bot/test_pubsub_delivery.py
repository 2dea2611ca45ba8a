"""Messages written into a conversation from outside a turn (an operator's
reply, a notice) reach the customer's widget at once, also when the widget's
socket is held by another process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from bot.container import Container
from bot.conversations import UnknownConversation
from bot.delivery import DeliveryPolicy
from config import Settings
from dialogs.messages import Reply
from storage.models import DeliveryStatus, Message, OutboxEntry, Sender
from tests.bot.conftest import Tab, bot_texts, container_of, sid_of, two_app_processes
from tests.conftest import shared_app_settings

# No sweep and no re-try within a test: what arrives came through pub/sub.
NO_SWEEP = DeliveryPolicy(
    sweep_interval_seconds=3600, offline_park_seconds=3600, sweep_min_age_seconds=3600
)


def outbox_statuses(container: Container, client: TestClient, text: str) -> list[DeliveryStatus]:
    async def read() -> list[DeliveryStatus]:
        async with container.session_factory() as s:
            rows = await s.scalars(
                select(OutboxEntry.status)
                .join(Message, Message.id == OutboxEntry.message_id)
                .where(Message.text == text)
            )
            return list(rows)

    return client.portal.call(read)  # type: ignore[union-attr]


def test_an_operator_message_is_written_and_delivered(client: TestClient) -> None:
    container = container_of(client)
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        frames, _ = tab.say("здравствуйте")
        assert bot_texts(frames)
        posted = client.portal.call(  # type: ignore[union-attr]
            lambda: container.conversations.post(
                "webchat", sid_of(client, tab), [Reply("Добрый день, я оператор Анна.")]
            )
        )
        pushed = ws.receive_json()
        assert pushed["text"] == "Добрый день, я оператор Анна."
        assert pushed["id"] == posted.message_ids[0]
    assert outbox_statuses(container, client, "Добрый день, я оператор Анна.") == [
        DeliveryStatus.SENT
    ]
    with client.websocket_connect("/widget/ws") as ws:
        history = Tab(ws).hello(tab.token).history
    assert history[-1]["sender"] == "operator"
    assert history[-1]["text"] == "Добрый день, я оператор Анна."


def test_posting_into_an_unknown_chat_is_refused(client: TestClient) -> None:
    container = container_of(client)
    with pytest.raises(UnknownConversation):
        client.portal.call(  # type: ignore[union-attr]
            lambda: container.conversations.post("webchat", "nobody-ever-wrote", [Reply("?")])
        )


@pytest.fixture
def shared_settings(nlu_model_path: Path) -> Iterator[Settings]:
    """PostgreSQL and Redis shared by two app processes."""
    with shared_app_settings(
        "pubsub", nlu_model_path=nlu_model_path, load_demo_data=False
    ) as settings:
        yield settings


@pytest.mark.postgres
@pytest.mark.redis
def test_a_reply_made_in_one_process_reaches_a_socket_held_by_another(
    shared_settings: Settings,
) -> None:
    with (
        two_app_processes(shared_settings, NO_SWEEP) as ((app_a, _), (app_b, b)),
        app_a.websocket_connect("/widget/ws") as ws,
    ):
        tab = Tab(ws).hello()
        frames, _ = tab.say("здравствуйте")  # the conversation starts on A
        assert bot_texts(frames)
        sid = sid_of(app_a, tab)
        with app_b.websocket_connect("/widget/ws") as ws_b:
            # A second tab of the same session, served by B: A's replies reach it.
            Tab(ws_b).hello(tab.token)
            frames, _ = tab.say("как оплатить?")
            got = [ws_b.receive_json() for _ in bot_texts(frames)]
            assert [g["text"] for g in got] == bot_texts(frames)
        text = "Оператор Анна: счёт пересчитали, проверьте, пожалуйста."
        app_b.portal.call(  # type: ignore[union-attr]
            lambda: b.conversations.post("webchat", sid, [Reply(text)], sender=Sender.OPERATOR)
        )
        # Marked sent by A, the process that pushed it (no sweep runs here).
        deadline = time.monotonic() + 10
        while outbox_statuses(b, app_b, text) != [DeliveryStatus.SENT]:
            assert time.monotonic() < deadline, outbox_statuses(b, app_b, text)
            time.sleep(0.05)
        pushed = ws.receive_json()
        assert pushed["type"] == "message"
        assert pushed["text"] == text
