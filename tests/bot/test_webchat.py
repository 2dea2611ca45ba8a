"""The widget's WebSocket protocol against the real pipeline, NLU and storage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import asyncpg
import pytest
from fastapi import WebSocket
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from bot.app import create_app
from bot.channels.webchat import LiveSocket, WebchatAdapter, WebchatHub, WebchatSessions
from config import Settings
from dialogs.messages import InboundMessage
from storage.models import DeliveryStatus, OutboxEntry
from storage.ratelimit import RedisRateLimiter
from tests.bot.conftest import Frame, Tab, app_settings_for, bot_texts, container_of
from tests.conftest import (
    PG_ADMIN_DSN,
    make_settings,
    own_pg_database,
    run_in_thread,
)


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


# --------------------------------------------------------------------------
# The edge: bad text, deep JSON, origins, rate limits, pending acks
# --------------------------------------------------------------------------

DEEP = "[" * 5000 + "]" * 5000


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r for r in caplog.records if "Exception in ASGI" in r.getMessage()]


def test_lone_surrogates_are_refused_and_other_tabs_keep_getting_messages(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with client.websocket_connect("/widget/ws") as ws1:
        one = Tab(ws1).hello()
        with client.websocket_connect("/widget/ws") as ws2:
            Tab(ws2).hello(one.token)
            # json.dumps writes the lone surrogate as the \ud800 escape, valid JSON.
            frames, err = one.say("счёт \ud800 за март", client_id="surrogate")
            assert frames == []
            assert err["code"] == "bad_text"
            assert err["client_id"] == "surrogate"
            assert "символы" in err["text"]
            _, err = one.press("\udfff", "/menu")
            assert err["code"] == "bad_text"
            _, err = one.press("Меню", "/link_account\ud800")
            assert err["code"] == "bad_text"
            ws1.send_json({"type": "message", "text": "привет", "client_id": "id\ud800"})
            err = ws1.receive_json()
            assert (err["code"], err["client_id"]) == ("bad_text", None)

            # The other tab is still live: it gets the echo and every reply.
            frames, ack = one.say("добрый день", client_id="after")
            assert ack["type"] == "ack"
            texts = bot_texts(frames)
            assert texts
            echo = ws2.receive_json()
            assert (echo["sender"], echo["text"]) == ("customer", "добрый день")
            assert [ws2.receive_json()["text"] for _ in texts] == texts
    with client.websocket_connect("/widget/ws") as ws:
        history = Tab(ws).hello(one.token).history
    assert [m["text"] for m in history if m["sender"] == "customer"] == ["добрый день"]
    no_tracebacks(caplog)


class _FakeSocket:
    """What LiveSocket needs of a WebSocket: UTF-8 on the wire, like the real one."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.got: list[Frame] = []

    async def send_text(self, data: str) -> None:
        if self.broken:
            raise RuntimeError("the tab went away")
        data.encode("utf-8")
        self.got.append(json.loads(data))


async def test_a_failing_send_drops_only_its_own_socket() -> None:
    hub = WebchatHub()
    good, gone = _FakeSocket(), _FakeSocket(broken=True)
    await hub.add("chat", LiveSocket(cast(WebSocket, good)))
    await hub.add("chat", LiveSocket(cast(WebSocket, gone)))
    bad_text: Frame = {"type": "message", "sender": "bot", "text": "a\ud800b", "id": 1}
    assert await hub.publish("chat", bad_text, 1) == 1
    assert hub.count("chat") == 1
    assert await hub.publish("chat", {"type": "message", "text": "ещё", "id": 2}, 2) == 1
    assert [f["text"] for f in good.got] == ["a\ud800b", "ещё"]


def test_deep_json_and_bad_tokens_get_an_error_frame_not_a_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for first in (DEEP, '{"type": "hello", "token": ' + DEEP + "}"):
        with client.websocket_connect("/widget/ws") as ws:
            ws.send_text(first)
            assert ws.receive_json()["code"] == "bad_frame"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1008
    with client.websocket_connect("/widget/ws") as ws:
        ws.send_text(json.dumps({"type": "hello", "token": "abc\ud800"}))
        assert ws.receive_json()["code"] == "bad_text"
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()
    with client.websocket_connect("/widget/ws") as ws:
        Tab(ws).hello()
        for deep in (DEEP, '{"type": "ping", "extra": ' + DEEP + "}"):
            ws.send_text(deep)
            err = ws.receive_json()
            assert (err["type"], err["code"]) == ("error", "bad_frame")
        deep_text = '{"type": "message", "client_id": "d", "text": ' + "[" * 500 + "]" * 500 + "}"
        ws.send_text(deep_text)
        assert ws.receive_json()["code"] == "bad_frame"
        ws.send_json({"type": "ping"})  # still usable
        assert ws.receive_json() == {"type": "pong"}
    no_tracebacks(caplog)
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) >= 6


def handshake(client: TestClient, headers: dict[str, str]) -> int | None:
    """The close code if the socket is refused at the handshake; None if accepted."""
    try:
        with client.websocket_connect("/widget/ws", headers=headers):
            return None
    except WebSocketDisconnect as exc:
        return exc.code


def test_only_allowed_origins_may_open_the_socket(client: TestClient) -> None:
    for evil in ("https://evil.example", "null", "http://testserver.evil.example"):
        assert handshake(client, {"origin": evil}) == 1008
    # The server's own page (the demo page) and a client without any Origin.
    for own in ({"origin": "http://testserver"}, {}):
        with client.websocket_connect("/widget/ws", headers=own) as ws:
            assert Tab(ws).hello().token


def test_allowed_origins_come_from_the_settings(app_settings: Settings) -> None:
    settings = app_settings.model_copy(
        update={
            "widget_allowed_origins": (
                "https://Kursk-Gen.example:443/",
                "http://shop.example:8080",
            ),
            "public_base_url": "https://bot.kursk-gen.example/widget",
            "host": "127.0.0.1",
            "port": 8000,
        }
    )
    adapter = WebchatAdapter(settings)
    for ok in (
        "https://kursk-gen.example",
        "http://shop.example:8080",
        "https://bot.kursk-gen.example",
        "http://127.0.0.1:8000",
    ):
        assert adapter.origin_allowed(ok, "bot.kursk-gen.example"), ok
    for bad in ("http://kursk-gen.example", "http://shop.example", "https://evil.example", "null"):
        assert not adapter.origin_allowed(bad, "bot.kursk-gen.example"), bad
    assert adapter.origin_allowed(None, None)
    # The server's own page, under the name it was reached by (default port or not).
    assert adapter.origin_allowed("https://chat.example", "chat.example:443")
    assert adapter.origin_allowed("http://10.0.0.5:8080", "10.0.0.5:8080")
    assert not adapter.origin_allowed("http://10.0.0.5:8081", "10.0.0.5:8080")
    anywhere = WebchatAdapter(app_settings.model_copy(update={"widget_allowed_origins": ("*",)}))
    assert anywhere.origin_allowed("https://evil.example", None)


@pytest.fixture(scope="module")
def limited_settings(tmp_path_factory: pytest.TempPathFactory, nlu_model_path: Path) -> Settings:
    # Units come back once in 1,000 s: what is refused here does not depend on speed.
    return app_settings_for(
        tmp_path_factory.mktemp("limited"),
        nlu_model_path,
        widget_message_rate_per_second=0.001,
        widget_message_burst=2,
        widget_ip_message_rate_per_second=0.001,
        widget_ip_message_burst=3,
        widget_frame_rate_per_second=0.001,
        widget_frame_burst=3,
    )


def test_messages_over_the_limits_are_refused_politely_and_not_stored(
    limited_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(limited_settings)) as limited:
        with limited.websocket_connect("/widget/ws") as ws:
            a = Tab(ws).hello()
            for text in ("здравствуйте", "как оплатить?"):
                _, ack = a.say(text)
                assert ack["type"] == "ack"
            frames, err = a.say("телефон горячей линии", client_id="third")
            assert frames == []
            assert err["code"] == "rate_limited"
            assert err["client_id"] == "third"
            assert "слишком часто" in err["text"]
            assert err["retry_after"] >= 1
            # Pings have their own, separate bucket.
            for _ in range(3):
                ws.send_json({"type": "ping"})
                assert ws.receive_json() == {"type": "pong"}
            for _ in range(30):
                ws.send_json({"type": "ping"})
                assert ws.receive_json()["code"] == "rate_limited"
        # A new session from the same address shares the per-IP bucket (3).
        with limited.websocket_connect("/widget/ws") as ws:
            b = Tab(ws).hello()
            _, ack = b.say("здравствуйте")
            assert ack["type"] == "ack"
            _, err = b.say("спасибо", client_id="over-ip")
            assert (err["code"], err["client_id"]) == ("rate_limited", "over-ip")
        with limited.websocket_connect("/widget/ws") as ws:
            history = Tab(ws).hello(a.token).history
    assert [m["text"] for m in history if m["sender"] == "customer"] == [
        "здравствуйте",
        "как оплатить?",
    ]
    # A flood is not a line per frame: the first refusal and a count at close.
    refusals = [r.getMessage() for r in caplog.records if "rate limited" in r.getMessage()]
    assert len(refusals) == 3, refusals  # socket a: first + "31 frames"; socket b: first
    assert any("31 frames" in line for line in refusals)
    no_tracebacks(caplog)


@pytest.mark.redis
def test_limits_on_redis_are_shared_by_every_process(
    limited_settings: Settings, redis_url: str
) -> None:
    on_redis = limited_settings.model_copy(update={"redis_url": redis_url})
    with TestClient(create_app(on_redis)) as one, TestClient(create_app(on_redis)) as two:
        assert isinstance(webchat(one).pacer.limiter, RedisRateLimiter)
        with one.websocket_connect("/widget/ws") as ws:
            tab = Tab(ws).hello()
            for text in ("здравствуйте", "как оплатить?"):
                assert tab.say(text)[1]["type"] == "ack"
        with two.websocket_connect("/widget/ws") as ws:
            _, err = Tab(ws).hello(tab.token).say("спасибо")
        assert err["code"] == "rate_limited"


# The first turn that stores a message about a tariff loses its connection
# mid-transaction, after the inbox committed it (a sequence is not rolled back).
KILL_FIRST_TARIFF_TURN = """
CREATE SEQUENCE webedge_turn_killer;
CREATE FUNCTION webedge_kill_first_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF position('тариф' in NEW.text) > 0 THEN
    IF nextval('webedge_turn_killer') = 1 THEN
      PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER webedge_kill_first_turn BEFORE INSERT ON messages
  FOR EACH ROW EXECUTE FUNCTION webedge_kill_first_turn();
"""


@contextlib.contextmanager
def flaky_pg_database() -> Iterator[str]:
    """A migrated private PostgreSQL database (its SQLAlchemy URL) whose first
    tariff turn loses its connection after the inbox took the message."""
    with own_pg_database("webedge") as url:
        name = url.rsplit("/", 1)[1]

        async def install() -> None:
            conn = await asyncpg.connect(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
            try:
                await conn.execute(KILL_FIRST_TARIFF_TURN)
            finally:
                await conn.close()

        run_in_thread(lambda: asyncio.run(install()))
        yield url


@pytest.fixture
def pg_flaky_settings(nlu_model_path: Path) -> Iterator[Settings]:
    with flaky_pg_database() as url:
        yield make_settings(url, nlu_model_path=nlu_model_path)


@pytest.mark.postgres
def test_a_stored_message_whose_turn_failed_is_acked_as_pending_and_answered_once(
    pg_flaky_settings: Settings,
) -> None:
    with TestClient(create_app(pg_flaky_settings)) as flaky:
        with flaky.websocket_connect("/widget/ws") as ws:
            tab = Tab(ws).hello()
            frames, ack = tab.say("какой тариф на отопление", client_id="stored")
            assert frames == []
            # Not "unavailable": the customer must not type it again.
            assert ack["type"] == "ack"
            assert ack["pending"] is True
            assert ack["duplicate"] is False
            assert "позже" in ack["text"]
            # The container's replay answers it on this socket.
            reply = ws.receive_json()
            assert reply["type"] == "message"
            assert reply["sender"] == "bot"
            assert "тариф" in reply["text"].lower()
            # A resend with the same client_id (the widget's retry) is a duplicate.
            rest, ack = tab.say("какой тариф на отопление", client_id="stored")
            assert ack["duplicate"] is True
            assert all(f["sender"] == "bot" for f in rest)  # the rest of the answer, if any
        with flaky.websocket_connect("/widget/ws") as ws:
            history = Tab(ws).hello(tab.token).history
    said = [m["text"] for m in history if m["sender"] == "customer"]
    assert said == ["какой тариф на отопление"]
    assert [m for m in history if m["sender"] == "bot"]
