"""The console's conversation API with a widget customer on the real app:
the queue, taking a chat, replies both ways, ownership between operators,
canned responses, notes, appeals, resolving, and the live socket."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

from bot.app import create_app
from config import Settings
from dialogs.flows.nps import Texts as NpsTexts
from storage.models import OperatorRole
from tests.bot.conftest import Tab, app_settings_for, bot_texts
from tests.bot.console_support import Console, add_operator, log_in, new_login


@pytest.fixture(scope="module")
def open_settings(tmp_path_factory: pytest.TempPathFactory, nlu_model_path: Path) -> Settings:
    # The contact center open around the clock: the test runs at any hour.
    return app_settings_for(
        tmp_path_factory.mktemp("console"),
        nlu_model_path,
        contact_center_open_hour=0,
        contact_center_close_hour=24,
        contact_center_days=(1, 2, 3, 4, 5, 6, 7),
    )


@pytest.fixture(scope="module")
def app(open_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(open_settings), client=("127.0.0.1", 50000)) as c:
        yield c


def operator(app: TestClient, role: OperatorRole = OperatorRole.OPERATOR) -> Console:
    login = new_login("op")
    add_operator(app, login, role, display_name=f"Оператор {login}")
    return log_in(app, login)


def customer_history(app: TestClient, token: str) -> list[dict[str, Any]]:
    """What the customer's widget shows when it is opened again."""
    with app.websocket_connect("/widget/ws") as ws:
        return Tab(ws).hello(token).history


def queued_customer(app: TestClient, text: str = "позовите оператора") -> str:
    """A widget customer who asked for an operator; their session token."""
    with app.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        tab.say("Здравствуйте, у меня вопрос по начислениям")
        tab.say(text)
        return tab.token


def queue_ids(console: Console) -> list[int]:
    return [i["conversation_id"] for i in console.get("/console/api/queue").json()["queue"]]


def my_ids(console: Console) -> list[int]:
    return [c["conversation_id"] for c in console.get("/console/api/chats").json()["chats"]]


def find_in_queue(console: Console, needle: str) -> dict[str, Any]:
    items = console.get("/console/api/queue").json()["queue"]
    for item in items:
        if needle in item["summary"]:
            return dict(item)
    raise AssertionError(f"not in the queue: {needle!r} in {items}")


def test_queue_take_reply_both_ways_and_the_bot_stays_silent(app: TestClient) -> None:
    anna, boris = operator(app), operator(app)
    with app.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        tab.say("Почему такой большой счёт за отопление в ноябре")
        frames, ack = tab.say("позовите оператора")
        assert ack["type"] == "ack"
        token = tab.token

    item = find_in_queue(anna, "большой счёт за отопление")
    conv = item["conversation_id"]
    assert item["channel"] == "webchat"
    assert item["position"] >= 1

    assert anna.post(f"/console/api/chats/{conv}/take").status_code == 200
    assert conv in my_ids(anna)
    assert conv not in [
        i["conversation_id"] for i in anna.get("/console/api/queue").json()["queue"]
    ]

    # A second operator can neither take it nor reply in it.
    assert boris.post(f"/console/api/chats/{conv}/take").status_code == 409
    refused = boris.post(f"/console/api/chats/{conv}/reply", {"text": "Я тоже тут"})
    assert refused.status_code == 409
    assert refused.json()["detail"] == "Этот чат ведёт другой оператор."

    sent = anna.post(f"/console/api/chats/{conv}/reply", {"text": "Здравствуйте! Сейчас посмотрю."})
    assert sent.status_code == 200
    with app.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello(token)
        shown = [(m["sender"], m["text"]) for m in tab.history]
        assert ("operator", "Здравствуйте! Сейчас посмотрю.") in shown
        assert "Я тоже тут" not in [t for _, t in shown]
        # The customer answers: stored and shown to the operator, and the bot says nothing.
        frames, ack = tab.say("сколько я должен")
        assert ack["type"] == "ack"
        assert bot_texts(frames) == []

    view = anna.get(f"/console/api/chats/{conv}").json()
    assert view["mine"] is True
    chat = view["chat"]
    assert chat["owner"] == "operator"
    lines = [(m["sender"], m["text"]) for m in chat["messages"]]
    assert lines[-1] == ("customer", "сколько я должен")
    assert ("operator", "Здравствуйте! Сейчас посмотрю.") in lines
    assert ("bot", lines[1][1]) in lines  # the bot's part of the conversation is marked
    assert chat["entry"]["summary"]
    assert view["whatsapp"] is None
    assert view["card"]["conversations"][0]["id"] == conv

    # Boris may read the chat, but it is not his.
    assert boris.get(f"/console/api/chats/{conv}").json()["mine"] is False
    assert customer_history(app, token)[-1]["text"] != "Я тоже тут"


def test_csrf_roles_and_sessions_guard_the_chat_calls(app: TestClient) -> None:
    anna = operator(app)
    queued_customer(app, "мне нужен живой человек")
    conv = find_in_queue(anna, "начислениям")["conversation_id"]
    assert anna.post(f"/console/api/chats/{conv}/take", csrf=False).status_code == 403
    assert (
        anna.post(f"/console/api/chats/{conv}/reply", {"text": "x"}, csrf=False).status_code == 403
    )
    assert conv in queue_ids(anna)
    for path in ("/console/api/queue", "/console/api/chats", f"/console/api/chats/{conv}"):
        assert app.get(path).status_code == 401, path
    assert app.post(f"/console/api/chats/{conv}/take").status_code == 401
    assert anna.get("/console/api/chats/999999").status_code == 404


def test_canned_responses_notes_appeals_and_resolve(app: TestClient) -> None:
    anna = operator(app)
    with app.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        tab.say("1002003001")  # not linked: the operator sees an unlinked customer
        tab.say("позовите оператора")
        token = tab.token
    items = anna.get("/console/api/queue").json()["queue"]
    conv = items[-1]["conversation_id"]
    anna.post(f"/console/api/chats/{conv}/take")

    # A supervisor adds a canned response; "/минуту" in the reply box sends it.
    sup = operator(app, OperatorRole.SUPERVISOR)
    assert (
        sup.post(
            "/console/api/canned",
            {"shortcut": "минуту", "text": "{operator} уточняет информацию, минуту."},
        ).status_code
        == 200
    )
    done = anna.post(f"/console/api/chats/{conv}/reply", {"text": "/минуту"})
    assert done.status_code == 200
    me = anna.get("/console/api/me").json()["operator"]["display_name"]
    assert done.json()["text"] == f"{me} уточняет информацию, минуту."

    assert (
        anna.post(f"/console/api/chats/{conv}/notes", {"text": "Клиент звонил вчера"}).status_code
        == 200
    )
    view = anna.get(f"/console/api/chats/{conv}").json()
    assert [n["text"] for n in view["chat"]["notes"]] == ["Клиент звонил вчера"]
    shown = [m["text"] for m in customer_history(app, token)]
    assert f"{me} уточняет информацию, минуту." in shown
    assert "Клиент звонил вчера" not in shown

    registered = anna.post(
        f"/console/api/chats/{conv}/appeals",
        {"category": "charges", "description": "Проверить начисления за ноябрь"},
    )
    assert registered.status_code == 201, registered.text
    number = registered.json()["appeal"]["number"]
    shown = [m["text"] for m in customer_history(app, token)]
    assert any(number in text for text in shown)
    card = anna.get(f"/console/api/chats/{conv}").json()["card"]
    appeal = next(a for a in card["appeals"] if a["number"] == number)
    changed = anna.post(
        f"/console/api/appeals/{appeal['id']}/status",
        {"status": "in_review", "comment": "Передали в расчётный отдел"},
    )
    assert changed.status_code == 200
    assert changed.json()["appeal"]["status"] == "in_review"
    card = anna.get(f"/console/api/chats/{conv}").json()["card"]
    moved = next(a for a in card["appeals"] if a["number"] == number)
    assert moved["status"] == "in_review"
    assert "in_review" not in moved["next_statuses"]
    # The customer is told on their channel, once.
    notices = [
        m["text"] for m in customer_history(app, token) if "Передали в расчётный отдел" in m["text"]
    ]
    assert len(notices) == 1
    assert number in notices[0]
    again = anna.post(f"/console/api/appeals/{appeal['id']}/status", {"status": "in_review"})
    assert again.status_code == 409

    assert anna.post(f"/console/api/chats/{conv}/resolve").status_code == 200
    assert conv not in [
        c["conversation_id"] for c in anna.get("/console/api/chats").json()["chats"]
    ]
    assert customer_history(app, token)[-1]["text"] == NpsTexts.question


def test_the_live_socket_tells_the_console_what_changed(app: TestClient) -> None:
    anna = operator(app)
    with anna.http.websocket_connect("/console/ws") as live:
        hello = live.receive_json()
        assert hello == {"type": "hello", "operator_id": anna.operator_id}
        with app.websocket_connect("/widget/ws") as ws:
            Tab(ws).hello().say("позовите оператора")
        seen: list[dict[str, Any]] = []
        while not any(f["type"] == "queue" for f in seen):
            seen.append(live.receive_json())
        conv = next(f["conversation_id"] for f in seen if f["type"] == "queue")
        assert conv in [
            i["conversation_id"] for i in anna.get("/console/api/queue").json()["queue"]
        ]


def test_the_live_socket_needs_a_session_and_our_origin(app: TestClient) -> None:
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect), app.websocket_connect("/console/ws") as ws:
        ws.receive_json()
    anna = operator(app)
    with (
        pytest.raises(WebSocketDisconnect),
        anna.http.websocket_connect(
            "/console/ws", headers={"origin": "https://evil.example"}
        ) as ws,
    ):
        ws.receive_json()


@pytest.mark.redis
def test_with_redis_a_console_on_one_process_hears_what_another_did(
    tmp_path: Path, nlu_model_path: Path, redis_url: str
) -> None:
    """Two app processes (two containers) on one database and one Redis: the
    customer's turn in one reaches the console socket held by the other."""
    settings = app_settings_for(
        tmp_path,
        nlu_model_path,
        redis_url=redis_url,
        contact_center_open_hour=0,
        contact_center_close_hour=24,
        contact_center_days=(1, 2, 3, 4, 5, 6, 7),
    )
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        anna = operator(first)
        with anna.http.websocket_connect("/console/ws") as live:
            assert live.receive_json()["type"] == "hello"
            with second.websocket_connect("/widget/ws") as ws:
                Tab(ws).hello().say("позовите оператора")
            seen: list[dict[str, Any]] = []
            while not any(f["type"] == "queue" for f in seen):
                seen.append(live.receive_json())
            conv = next(f["conversation_id"] for f in seen if f["type"] == "queue")
            assert conv in queue_ids(anna)
            # And the other way round: the operator's reply, sent through the
            # first process, is an event there too.
            assert (
                anna.post(f"/console/api/chats/{conv}/reply", {"text": "Слушаю"}).status_code == 200
            )
            while not any(f["type"] == "message" and f["conversation_id"] == conv for f in seen):
                seen.append(live.receive_json())


def test_the_whatsapp_window_and_its_template(open_settings: Settings) -> None:
    from datetime import UTC, datetime, timedelta

    from bot.console.chats import whatsapp_window

    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert whatsapp_window(open_settings, "telegram", now, now) is None
    inside = whatsapp_window(open_settings, "whatsapp", now - timedelta(hours=23), now)
    assert inside == {
        "open": True,
        "closes_at": (now + timedelta(hours=1)).isoformat(),
        "template": False,
    }
    outside = whatsapp_window(open_settings, "whatsapp", now - timedelta(hours=25), now)
    assert outside is not None
    assert outside["open"] is False
    assert outside["template"] is False  # the console says the reply waits for the customer
    templated = open_settings.model_copy(update={"twilio_templates": {"reply": "HX0123"}})
    offered = whatsapp_window(templated, "whatsapp", now - timedelta(days=3), now)
    assert offered is not None
    assert offered["open"] is False
    assert offered["template"] is True  # the console offers the approved template
    never = whatsapp_window(open_settings, "whatsapp", None, now)
    assert never == {"open": False, "closes_at": None, "template": False}


def test_disabling_an_operator_puts_their_chats_back_in_the_queue(app: TestClient) -> None:
    anna, admin = operator(app), operator(app, OperatorRole.ADMIN)
    queued_customer(app)
    conv = find_in_queue(anna, "начислениям")["conversation_id"]
    assert anna.post(f"/console/api/chats/{conv}/take").status_code == 200
    assert conv not in queue_ids(admin)
    login = anna.get("/console/api/me").json()["operator"]["login"]
    assert admin.post(f"/console/api/admin/operators/{login}/disable").status_code == 200
    assert anna.get("/console/api/me").status_code == 401
    assert conv in queue_ids(admin)


def test_transfer_to_a_colleague_and_return_to_the_bot(app: TestClient) -> None:
    anna, boris = operator(app), operator(app)
    token = queued_customer(app, "соедините с оператором")
    conv = queue_ids(anna)[-1]
    assert anna.post(f"/console/api/chats/{conv}/take").status_code == 200
    # Boris is offline: nobody to hand it to yet.
    assert boris.operator_id not in [
        o["id"] for o in anna.get("/console/api/operators").json()["operators"]
    ]
    assert (
        anna.post(
            f"/console/api/chats/{conv}/transfer", {"to_operator_id": boris.operator_id}
        ).status_code
        == 409
    )
    assert boris.post("/console/api/presence", {"presence": "away"}).status_code == 200
    assert boris.operator_id in [
        o["id"] for o in anna.get("/console/api/operators").json()["operators"]
    ]
    assert (
        anna.post(
            f"/console/api/chats/{conv}/transfer", {"to_operator_id": boris.operator_id}
        ).status_code
        == 200
    )
    assert conv in my_ids(boris)
    assert conv not in my_ids(anna)
    assert anna.post(f"/console/api/chats/{conv}/reply", {"text": "Это я"}).status_code == 409
    assert boris.post(f"/console/api/chats/{conv}/return").status_code == 200
    assert conv not in my_ids(boris)
    assert anna.get(f"/console/api/chats/{conv}").json()["chat"]["owner"] == "bot"
    # The bot answers the customer again.
    with app.websocket_connect("/widget/ws") as ws:
        frames, _ = Tab(ws).hello(token).say("сколько стоит гигакалория")
    assert bot_texts(frames)


def test_an_operator_reply_reaches_the_open_widget_labelled_as_the_operators(
    app: TestClient,
) -> None:
    anna = operator(app)
    with app.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        tab.say("Вопрос по квитанции за декабрь")
        tab.say("позовите оператора")
        conv = find_in_queue(anna, "квитанции за декабрь")["conversation_id"]
        assert anna.post(f"/console/api/chats/{conv}/take").status_code == 200
        reply = anna.post(f"/console/api/chats/{conv}/reply", {"text": "Добрый день, смотрю."})
        assert reply.status_code == 200
        live: list[dict[str, Any]] = []
        while not any(f.get("text") == "Добрый день, смотрю." for f in live):
            live.append(ws.receive_json())
        said = [f for f in live if f["type"] == "message"]
        # The join notice is the system's (shown as the bot's); the reply is the operator's.
        assert said[-1]["sender"] == "operator"
        assert all(f["sender"] == "bot" for f in said[:-1])
