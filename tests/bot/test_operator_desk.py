"""The operators' Telegram desk, end to end: the app with its lifespan, the
real python-telegram-bot client polling a local Bot API server (the desk's
group, its topics), and the customer on the widget or on Telegram."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from bot.app import create_app
from bot.operators.telegram_desk import TelegramDesk, Texts
from config import Settings
from config.settings import ConfigError
from handlers.operators import telegram_user_hash
from storage.models import Conversation, Operator, OperatorRole, Owner, Presence
from tests.bot.conftest import Tab, app_settings_for, bot_texts, container_of, two_app_processes
from tests.bot.telegram_support import SECRET, TelegramChat, telegram_settings
from tests.conftest import shared_app_settings
from tests.fakes.telegram_api import TOKEN, FakeBotApi, topic_message_update

DESK_TOKEN = "987654321:AAOperatorDeskTestToken_0000000000000"
GROUP = -1001234567890
ANNA, BORIS, STRANGER = 9_000_001, 9_000_002, 9_000_099
# The contact center is open whenever the tests run (the hours have tests of their own).
ALWAYS_OPEN: dict[str, Any] = {
    "contact_center_days": (1, 2, 3, 4, 5, 6, 7),
    "contact_center_open_hour": 0,
    "contact_center_close_hour": 24,
}


def desk_settings(tmp: Path, nlu_model_path: Path, desk_api: FakeBotApi, **more: Any) -> Settings:
    values: dict[str, Any] = {
        "operator_bot_token": DESK_TOKEN,
        "operator_chat_id": GROUP,
        "operator_api_base": desk_api.base_url,
        "telegram_poll_timeout_seconds": 1,
        **ALWAYS_OPEN,
        **more,
    }
    return app_settings_for(tmp, nlu_model_path, **values)


@pytest.fixture
def desk_api() -> Iterator[FakeBotApi]:
    api = FakeBotApi(token=DESK_TOKEN).start()
    yield api
    api.stop()


@pytest.fixture
def client(tmp_path: Path, nlu_model_path: Path, desk_api: FakeBotApi) -> Iterator[TestClient]:
    with TestClient(create_app(desk_settings(tmp_path, nlu_model_path, desk_api))) as c:
        add_operators(c)
        yield c


def portal_call(client: TestClient, fn: Callable[[], Any]) -> Any:
    assert client.portal is not None
    return client.portal.call(fn)


def desk_of(client: TestClient) -> TelegramDesk:
    desk = container_of(client).desk
    assert desk is not None
    return desk


def add_operators(client: TestClient) -> None:
    """Anna and Boris, with their Telegram ids, online in the console."""
    container = container_of(client)

    async def add() -> None:
        async with container.session_factory() as session:
            for login, name, telegram_id in (("anna", "Анна", ANNA), ("boris", "Борис", BORIS)):
                session.add(
                    Operator(
                        login=login,
                        display_name=name,
                        role=OperatorRole.OPERATOR,
                        password_hash="-",  # never logs in here
                        active=True,
                        presence=Presence.AWAY,  # keeps the queue for the test to assign
                        telegram_user_hash=telegram_user_hash(container.vault, telegram_id),
                        created_at=datetime.now(UTC),
                    )
                )
            await session.commit()

    portal_call(client, add)


def operator_id(client: TestClient, login: str) -> int:
    async def read() -> int:
        async with container_of(client).session_factory() as session:
            found = await session.scalar(select(Operator.id).where(Operator.login == login))
        assert found is not None
        return int(found)

    return int(portal_call(client, read))


def conversation(client: TestClient, conversation_id: int) -> Conversation:
    async def read() -> Conversation:
        async with container_of(client).session_factory() as session:
            conv = await session.get(Conversation, conversation_id)
        assert conv is not None
        return conv

    result = portal_call(client, read)
    assert isinstance(result, Conversation)
    return result


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def only_topic(api: FakeBotApi) -> int:
    api.wait_for(lambda: bool(api.topics), what="a forum topic")
    (thread,) = api.topics
    return thread


def topic_conversation(client: TestClient, thread: int) -> int:
    async def read() -> int | None:
        async with container_of(client).session_factory() as session:
            return await session.scalar(
                select(Conversation.id).where(Conversation.desk_topic_id == thread)
            )

    found: list[int] = []

    def ready() -> bool:
        got = portal_call(client, read)
        if got is not None:
            found.append(int(got))
        return bool(found)

    wait_until(ready, "the topic stored on its conversation")
    return found[0]


def write_in_topic(api: FakeBotApi, thread: int, user_id: int, text: str) -> None:
    names = {ANNA: "Анна", BORIS: "Борис"}
    api.push_update(topic_message_update(GROUP, thread, user_id, text, names.get(user_id, "Гость")))


def widget_history(client: TestClient, token: str) -> list[dict[str, Any]]:
    with client.websocket_connect("/widget/ws") as ws:
        return Tab(ws).hello(token).history


def wait_widget_text(client: TestClient, token: str, text: str) -> list[dict[str, Any]]:
    seen: list[list[dict[str, Any]]] = []

    def arrived() -> bool:
        seen.append(widget_history(client, token))
        return any(m["text"] == text for m in seen[-1])

    wait_until(arrived, "the message in the widget")
    return seen[-1]


def escalate_on_widget(client: TestClient) -> tuple[str, list[str]]:
    """A widget customer asks for an operator; their token and the bot's answers."""
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        tab.say("у нас в квартире холодные батареи уже третий день")
        frames, _ = tab.say("соедините с оператором")
        return tab.token, bot_texts(frames)


def test_an_escalated_widget_chat_opens_a_topic_with_the_summary(
    client: TestClient, desk_api: FakeBotApi
) -> None:
    _token, answers = escalate_on_widget(client)
    assert any("оператор" in a.lower() for a in answers)
    thread = only_topic(desk_api)
    topic = desk_api.topics[thread]
    assert topic.chat_id == GROUP
    conversation_id = topic_conversation(client, thread)
    assert topic.name.startswith(f"№{conversation_id} · сайт")
    (opening,) = desk_api.wait_topic_texts(GROUP, thread, 1)
    assert opening.startswith(f"Новый чат №{conversation_id} (сайт).")
    assert "Клиент: у нас в квартире холодные батареи уже третий день" in opening
    assert "/resolve" in opening
    # One topic however many events the escalation raised.
    portal_call(client, desk_of(client).drain)
    assert len(desk_api.calls("createForumTopic")) == 1


def test_an_operator_reply_in_the_topic_reaches_the_customer_and_takes_the_chat(
    client: TestClient, desk_api: FakeBotApi
) -> None:
    token, _ = escalate_on_widget(client)
    thread = only_topic(desk_api)
    conversation_id = topic_conversation(client, thread)
    desk_api.wait_topic_texts(GROUP, thread, 1)

    write_in_topic(desk_api, thread, ANNA, "Здравствуйте, я Анна. Проверю ваш дом.")
    history = wait_widget_text(client, token, "Здравствуйте, я Анна. Проверю ваш дом.")
    (reply,) = [m for m in history if m["text"] == "Здравствуйте, я Анна. Проверю ваш дом."]
    assert reply["sender"] == "operator"
    conv = conversation(client, conversation_id)
    assert conv.owner is Owner.OPERATOR
    assert conv.owner_operator_id == operator_id(client, "anna")
    texts = desk_api.wait_topic_texts(GROUP, thread, 2)
    assert texts[1] == "Чат взял Анна"

    # The bot stays silent now; the customer's words go to the topic.
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello(token)
        frames, ack = tab.say("спасибо, жду")
    assert ack["type"] == "ack"
    assert bot_texts(frames) == []
    assert desk_api.wait_topic_texts(GROUP, thread, 3)[2] == "Клиент: спасибо, жду"
    # Anna's own words are not echoed into the topic she wrote them in.
    portal_call(client, desk_of(client).drain)
    assert len(desk_api.topic_texts(GROUP, thread)) == 3


def test_another_operator_and_a_stranger_are_refused_in_the_topic(
    client: TestClient, desk_api: FakeBotApi
) -> None:
    token, _ = escalate_on_widget(client)
    thread = only_topic(desk_api)
    desk_api.wait_topic_texts(GROUP, thread, 1)
    write_in_topic(desk_api, thread, ANNA, "Добрый день, это Анна.")
    desk_api.wait_topic_texts(GROUP, thread, 2)

    write_in_topic(desk_api, thread, BORIS, "А это Борис.")
    refusal = desk_api.wait_topic_texts(GROUP, thread, 3)[2]
    assert refusal == Texts.not_owner.format(name="Анна")
    write_in_topic(desk_api, thread, STRANGER, "Я тут случайно")
    assert desk_api.wait_topic_texts(GROUP, thread, 4)[3] == Texts.unknown_operator

    texts = [m["text"] for m in widget_history(client, token)]
    assert "Добрый день, это Анна." in texts
    assert "А это Борис." not in texts
    assert "Я тут случайно" not in texts


def test_resolve_in_the_topic_resolves_and_asks_the_customer_for_a_score(
    client: TestClient, desk_api: FakeBotApi
) -> None:
    token, _ = escalate_on_widget(client)
    thread = only_topic(desk_api)
    conversation_id = topic_conversation(client, thread)
    desk_api.wait_topic_texts(GROUP, thread, 1)
    write_in_topic(desk_api, thread, ANNA, "Бригада выехала, отопление дадут к вечеру.")
    desk_api.wait_topic_texts(GROUP, thread, 2)

    write_in_topic(desk_api, thread, ANNA, "/resolve")
    assert desk_api.wait_topic_texts(GROUP, thread, 3)[2] == "Чат решён"
    desk_api.wait_for(lambda: desk_api.topics[thread].closed, what="the topic closed")

    def asked_score() -> bool:
        last = widget_history(client, token)[-1]
        return last["sender"] == "bot" and "0 до 10" in last["text"]

    wait_until(asked_score, "the NPS question")
    conv = conversation(client, conversation_id)
    assert conv.owner is Owner.BOT
    assert conv.desk_topic_id is None
    # The closed topic maps to no chat any more.
    write_in_topic(desk_api, thread, ANNA, "ещё кое-что")
    desk_api.wait_for(
        lambda: any(c.params.get("text") == Texts.no_chat for c in desk_api.calls("sendMessage")),
        what="the refusal",
    )


def test_a_chat_taken_in_the_console_is_announced_in_the_topic(
    client: TestClient, desk_api: FakeBotApi
) -> None:
    escalate_on_widget(client)
    thread = only_topic(desk_api)
    conversation_id = topic_conversation(client, thread)
    desk_api.wait_topic_texts(GROUP, thread, 1)
    boris = operator_id(client, "boris")
    container = container_of(client)

    portal_call(client, lambda: container.operators.take(boris, conversation_id))
    assert desk_api.wait_topic_texts(GROUP, thread, 2)[1] == "Чат взял Борис"
    # What Boris writes in the console shows in the topic.
    portal_call(
        client,
        lambda: container.operators.reply(boris, conversation_id, "Проверяю ваш адрес."),
    )
    assert desk_api.wait_topic_texts(GROUP, thread, 3)[2] == "Борис: Проверяю ваш адрес."
    # Anna in the topic now meets the console's owner.
    write_in_topic(desk_api, thread, ANNA, "Я отвечу?")
    assert desk_api.wait_topic_texts(GROUP, thread, 4)[3] == Texts.not_owner.format(name="Борис")


def test_a_transfer_in_the_console_and_bot_in_the_topic_are_shown(
    client: TestClient, desk_api: FakeBotApi
) -> None:
    token, _ = escalate_on_widget(client)
    thread = only_topic(desk_api)
    conversation_id = topic_conversation(client, thread)
    desk_api.wait_topic_texts(GROUP, thread, 1)
    write_in_topic(desk_api, thread, BORIS, "Борис на связи.")
    desk_api.wait_topic_texts(GROUP, thread, 2)
    container = container_of(client)
    anna, boris = operator_id(client, "anna"), operator_id(client, "boris")

    portal_call(client, lambda: container.operators.transfer(boris, conversation_id, anna))
    assert desk_api.wait_topic_texts(GROUP, thread, 3)[2] == "Чат передан: Анна"
    write_in_topic(desk_api, thread, ANNA, "/bot")
    assert desk_api.wait_topic_texts(GROUP, thread, 4)[3] == "Чат возвращён боту"
    desk_api.wait_for(lambda: desk_api.topics[thread].closed, what="the topic closed")
    assert conversation(client, conversation_id).owner is Owner.BOT
    # The bot answers the customer again.
    with client.websocket_connect("/widget/ws") as ws:
        frames, _ = Tab(ws).hello(token).say("какой у меня баланс?")
    assert bot_texts(frames)


def test_a_chat_an_online_operator_gets_at_once_shows_the_summary_then_the_owner(
    client: TestClient, desk_api: FakeBotApi
) -> None:
    container = container_of(client)
    boris = operator_id(client, "boris")
    portal_call(client, lambda: container.operators.set_presence(boris, Presence.ONLINE))
    escalate_on_widget(client)
    thread = only_topic(desk_api)
    opening, owner = desk_api.wait_topic_texts(GROUP, thread, 2)
    assert opening.startswith("Новый чат №")
    assert owner == "Чат взял Борис"


def test_a_telegram_customer_gets_the_operator_reply_in_telegram(
    tmp_path: Path, nlu_model_path: Path, desk_api: FakeBotApi
) -> None:
    customer_api = FakeBotApi(token=TOKEN).start()
    try:
        settings = telegram_settings(
            tmp_path,
            nlu_model_path,
            customer_api,
            operator_bot_token=DESK_TOKEN,
            operator_chat_id=GROUP,
            operator_api_base=desk_api.base_url,
            telegram_poll_timeout_seconds=1,
            **ALWAYS_OPEN,
        )
        assert settings.telegram_webhook_secret is not None
        assert settings.telegram_webhook_secret.get_secret_value() == SECRET
        with TestClient(create_app(settings)) as client:
            add_operators(client)
            chat = TelegramChat(client, customer_api)
            chat.say("позовите оператора")
            thread = only_topic(desk_api)
            assert desk_api.topics[thread].name.split(" · ")[1] == "Telegram"
            desk_api.wait_topic_texts(GROUP, thread, 1)
            write_in_topic(desk_api, thread, ANNA, "Здравствуйте! Чем помочь?")
            customer_api.wait_for(
                lambda: "Здравствуйте! Чем помочь?" in customer_api.texts(chat.chat_id),
                what="the operator's reply in Telegram",
            )
            assert desk_api.wait_topic_texts(GROUP, thread, 2)[1] == "Чат взял Анна"
    finally:
        customer_api.stop()


def test_a_topic_opens_once_the_bot_api_is_back(client: TestClient, desk_api: FakeBotApi) -> None:
    desk_api.wait_for(lambda: desk_api.arrived("getUpdates") > 0, what="the desk polling")
    desk_api.go_down()
    try:
        escalate_on_widget(client)
        time.sleep(1.5)  # its first attempts fail
        assert not desk_api.topics
    finally:
        desk_api.come_back()
    thread = only_topic(desk_api)
    (opening,) = desk_api.wait_topic_texts(GROUP, thread, 1)
    assert "холодные батареи" in opening


def test_a_chat_escalated_while_no_desk_ran_gets_its_topic_at_start_up(
    tmp_path: Path, nlu_model_path: Path, desk_api: FakeBotApi
) -> None:
    without_desk = app_settings_for(tmp_path, nlu_model_path, **ALWAYS_OPEN)
    with TestClient(create_app(without_desk)) as client:
        escalate_on_widget(client)
    assert not desk_api.calls()
    with TestClient(create_app(desk_settings(tmp_path, nlu_model_path, desk_api))) as client:
        thread = only_topic(desk_api)
        topic_conversation(client, thread)
        (opening,) = desk_api.wait_topic_texts(GROUP, thread, 1)
        assert "холодные батареи" in opening


def test_a_desk_token_without_the_group_is_refused(tmp_path: Path, nlu_model_path: Path) -> None:
    settings = app_settings_for(tmp_path, nlu_model_path, operator_bot_token=DESK_TOKEN)
    with pytest.raises(ConfigError, match="OPERATOR_CHAT_ID"):
        create_app(settings)


@pytest.fixture
def shared_settings(nlu_model_path: Path, desk_api: FakeBotApi) -> Iterator[Settings]:
    """PostgreSQL and Redis shared by two app processes, the desk on in both."""
    with shared_app_settings(
        "desk",
        nlu_model_path=nlu_model_path,
        operator_bot_token=DESK_TOKEN,
        operator_chat_id=GROUP,
        operator_api_base=desk_api.base_url,
        telegram_poll_timeout_seconds=1,
        **ALWAYS_OPEN,
    ) as settings:
        yield settings


@pytest.mark.postgres
@pytest.mark.redis
def test_two_processes_open_one_topic_and_relay_each_message_once(
    shared_settings: Settings, desk_api: FakeBotApi
) -> None:
    """Both processes hear every event; the topic shows each thing once, and
    only one of them polls the group."""
    with two_app_processes(shared_settings) as ((app_a, _), (app_b, _)):
        add_operators(app_a)
        token, _ = escalate_on_widget(app_a)
        thread = only_topic(desk_api)
        desk_api.wait_topic_texts(GROUP, thread, 1)
        write_in_topic(desk_api, thread, ANNA, "Анна на связи.")
        wait_widget_text(app_b, token, "Анна на связи.")
        desk_api.wait_topic_texts(GROUP, thread, 2)
        with app_b.websocket_connect("/widget/ws") as ws:
            Tab(ws).hello(token).say("а когда дадут тепло?")
        desk_api.wait_topic_texts(GROUP, thread, 3)
        for app in (app_a, app_b):
            portal_call(app, desk_of(app).drain)
        time.sleep(0.5)  # a duplicate would be on its way by now
        assert len(desk_api.calls("createForumTopic")) == 1
        assert desk_api.topic_texts(GROUP, thread)[1:] == [
            "Чат взял Анна",
            "Клиент: а когда дадут тепло?",
        ]
    # Never two getUpdates at once (Telegram answers 409 Conflict to that).
    assert all(c.ok for c in desk_api.calls("getUpdates"))
