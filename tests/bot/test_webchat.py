"""The widget's WebSocket protocol against the real pipeline, NLU and storage."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select
from starlette.testclient import TestClient

from bot.channels.webchat import WebchatAdapter, WebchatSessions
from config import Settings
from dialogs.messages import InboundMessage
from storage.models import DeliveryStatus, OutboxEntry
from tests.bot.conftest import Tab, bot_texts, container_of


def webchat(client: TestClient) -> WebchatAdapter:
    adapter = container_of(client).channels["webchat"]
    assert isinstance(adapter, WebchatAdapter)
    return adapter


def test_hello_without_token_opens_a_new_empty_session(client: TestClient) -> None:
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello(None)
    assert tab.token
    assert tab.history == []
    assert webchat(client).sessions.verify(tab.token)


def test_message_gets_a_reply_then_an_ack(client: TestClient) -> None:
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        frames, ack = tab.say("Добрый день!")
    assert ack == {"type": "ack", "client_id": ack["client_id"], "duplicate": False}
    replies = [f for f in frames if f["type"] == "message"]
    assert replies
    for r in replies:
        assert r["sender"] == "bot"
        assert r["text"].strip()
        assert isinstance(r["id"], int)
        assert isinstance(r["buttons"], list)
        assert datetime.fromisoformat(r["at"]).tzinfo is not None


def test_reconnect_with_the_token_shows_the_history(client: TestClient) -> None:
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        frames, _ = tab.say("здравствуйте")
        more, _ = tab.say("как оплатить?")
    pushed = [f for f in frames + more if f["type"] == "message"]
    with client.websocket_connect("/widget/ws") as ws:
        again = Tab(ws).hello(tab.token)
    assert again.token  # the same session, possibly a refreshed token
    assert webchat(client).sessions.verify(again.token) == webchat(client).sessions.verify(
        tab.token
    )
    history = again.history
    assert history[0]["sender"] == "customer"
    assert [m["text"] for m in history if m["sender"] == "customer"] == [
        "здравствуйте",
        "как оплатить?",
    ]
    # Exactly the messages pushed live, with the same ids and buttons.
    by_id = {m["id"]: m for m in history}
    for p in pushed:
        assert by_id[p["id"]]["text"] == p["text"]
        assert by_id[p["id"]]["buttons"] == p["buttons"]
    ids = [m["id"] for m in history]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_forged_token_gets_a_new_session(client: TestClient) -> None:
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        tab.say("привет")
    sid = webchat(client).sessions.verify(tab.token)
    forged = URLSafeTimedSerializer("another-secret", salt="webchat-session-v1").dumps({"sid": sid})
    for bad in (forged, tab.token[:-3] + "abc", "garbage", "x" * 2000):
        with client.websocket_connect("/widget/ws") as ws:
            other = Tab(ws).hello(bad)
        assert other.token != bad
        assert other.history == []
        assert webchat(client).sessions.verify(other.token) != sid


def test_expired_token_gets_a_new_session(client: TestClient, app_settings: Settings) -> None:
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        tab.say("привет")
    sid = webchat(client).sessions.verify(tab.token)

    def month_ago() -> float:
        return time.time() - (app_settings.widget_session_days + 1) * 86400

    assert sid is not None
    expired, _ = WebchatSessions(
        app_settings.secret_key.get_secret_value(), app_settings.widget_session_days, month_ago
    ).issue(sid)
    with client.websocket_connect("/widget/ws") as ws:
        other = Tab(ws).hello(expired)
    assert other.history == []
    assert webchat(client).sessions.verify(other.token) not in {None, sid}


def test_oversized_messages_get_an_error_and_the_socket_stays_usable(
    client: TestClient, app_settings: Settings
) -> None:
    limit = app_settings.max_message_chars
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        frames, err = tab.say("щ" * (limit + 1), client_id="too-long")
        assert frames == []
        assert err["type"] == "error"
        assert err["code"] == "too_long"
        assert str(limit) in err["text"]

        # A frame over 64 KiB is refused before it is even parsed.
        ws.send_text(json.dumps({"type": "message", "text": "ы" * 40_000, "client_id": "big"}))
        big = ws.receive_json()
        assert big["type"] == "error"
        assert big["code"] == "frame_too_big"
        assert "больш" in big["text"]

        ws.send_text("{not json")
        assert ws.receive_json()["code"] == "bad_frame"

        frames, err = tab.say("   ", client_id="empty")
        assert err["code"] == "empty"

        # Exactly at the limit is accepted, and the socket still answers.
        frames, ack = tab.say("а" * limit)
        assert ack["type"] == "ack"
        frames, ack = tab.say("привет")
        assert ack["type"] == "ack"
        assert bot_texts(frames)
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    with client.websocket_connect("/widget/ws") as ws:
        history = Tab(ws).hello(tab.token).history
    customer = [m["text"] for m in history if m["sender"] == "customer"]
    assert customer == ["а" * limit, "привет"]  # the refused ones were never accepted


def test_markup_is_text_not_html(client: TestClient) -> None:
    evil = "<img src=x onerror=alert(1)>'; DROP TABLE messages; -- 🔥"
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        frames, ack = tab.say(evil)
    assert ack["type"] == "ack"
    assert bot_texts(frames)
    with client.websocket_connect("/widget/ws") as ws:
        history = Tab(ws).hello(tab.token).history
    assert history[0]["text"] == evil


def test_duplicate_client_id_is_answered_once(client: TestClient) -> None:
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        first, ack = tab.say("здравствуйте", client_id="same-id")
        assert ack["duplicate"] is False
        assert bot_texts(first)
        # A resend after a reconnect, say: dropped by the inbox.
        again, ack = tab.say("здравствуйте", client_id="same-id")
        assert ack["duplicate"] is True
        assert again == []
    with client.websocket_connect("/widget/ws") as ws:
        resent = Tab(ws).hello(tab.token)
        later, ack = resent.say("здравствуйте", client_id="same-id")
        assert (later, ack["duplicate"]) == ([], True)
    with client.websocket_connect("/widget/ws") as ws:
        history = Tab(ws).hello(tab.token).history
    assert [m["text"] for m in history if m["sender"] == "customer"] == ["здравствуйте"]
    assert len([m for m in history if m["sender"] == "bot"]) == len(bot_texts(first))


def test_every_tab_of_a_session_gets_the_replies(client: TestClient) -> None:
    with client.websocket_connect("/widget/ws") as ws1:
        one = Tab(ws1).hello()
        with client.websocket_connect("/widget/ws") as ws2:
            Tab(ws2).hello(one.token)
            frames, _ = one.say("добрый вечер", client_id="tab-1")
            texts = bot_texts(frames)
            assert texts
            echo = ws2.receive_json()
            assert echo["sender"] == "customer"
            assert echo["text"] == "добрый вечер"
            got = [ws2.receive_json() for _ in texts]
            assert [g["text"] for g in got] == texts
            assert [g["id"] for g in got] == [f["id"] for f in frames if f["type"] == "message"]
            # The other direction too.
            ws2.send_json({"type": "ping"})
            assert ws2.receive_json() == {"type": "pong"}


def test_reply_without_an_open_tab_waits_for_the_history(client: TestClient) -> None:
    adapter = webchat(client)
    container = container_of(client)
    token, sid = adapter.sessions.issue()
    msg = InboundMessage(
        channel="webchat",
        chat_id=sid,
        user_id=sid,
        text="здравствуйте",
        platform_message_id=f"{sid}:offline-1",
        received_at=datetime.now(UTC),
    )
    result = client.portal.call(container.handle, msg)  # type: ignore[union-attr]
    assert result.replies
    assert result.conversation_id is not None
    conv_id: int = result.conversation_id

    async def statuses() -> list[DeliveryStatus]:
        async with container.session_factory() as s:
            rows = await s.scalars(
                select(OutboxEntry.status).where(OutboxEntry.conversation_id == conv_id)
            )
            return list(rows)

    assert client.portal.call(statuses) == [DeliveryStatus.PENDING] * len(result.replies)  # type: ignore[union-attr]
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello(token)
        assert [m["text"] for m in tab.history if m["sender"] == "bot"] == [
            r.text for r in result.replies
        ]
        # Shown with the history, so never pushed again on this socket.
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    assert client.portal.call(statuses) == [DeliveryStatus.SENT] * len(result.replies)  # type: ignore[union-attr]


def test_first_frame_must_be_hello(client: TestClient) -> None:
    with client.websocket_connect("/widget/ws") as ws:
        ws.send_json({"type": "message", "text": "привет", "client_id": "x"})
        err = ws.receive_json()
        assert err["type"] == "error"
        assert err["code"] == "bad_frame"
