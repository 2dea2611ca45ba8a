"""NLU_BACKEND=rasa with no Rasa server: the embedded parser answers, and says so.

The Rasa address is a port nobody listens on (a real refused connection):
the customer still gets understood, /readyz and /metrics tell the operator
that the fall-back is answering.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bot.app import create_app
from bot.pipeline import Texts
from tests.bot.conftest import Tab, app_settings_for, bot_texts
from tests.bot.test_app import sample


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_rasa_down_the_embedded_parser_answers_and_it_shows(
    tmp_path: Path, nlu_model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = app_settings_for(
        tmp_path,
        nlu_model_path,
        nlu_backend="rasa",
        rasa_url=f"http://127.0.0.1:{closed_port()}",
        rasa_token="t0k",
        rasa_timeout_seconds=0.5,
    )
    caplog.set_level(logging.INFO, logger="nlu.rasa.breaker")
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        ready = client.get("/readyz").json()
        assert ready["nlu"] == {"backend": "rasa", "answering": "rasa", "degraded": False}
        assert sample(client, "heatdesk_nlu_degraded") == 0.0

        with client.websocket_connect("/widget/ws") as ws:
            tab = Tab(ws).hello()
            frames, _ = tab.say("хочу передать показания")
            more, _ = tab.say("какой у вас график работы")
        replies = bot_texts(frames) + bot_texts(more)
        # Understood by the embedded parser: a reading needs the account first,
        # the hours come with the phone; no "the assistant is unavailable" notice.
        assert "лицевой счёт" in bot_texts(frames)[0], replies
        assert any("пн–пт 9:00–18:00" in r for r in bot_texts(more)), replies
        assert Texts.nlu_unavailable not in replies

        ready = client.get("/readyz")
        assert ready.status_code == 200  # still ready: every message is understood
        nlu = ready.json()["nlu"]
        assert (nlu["answering"], nlu["degraded"]) == ("embedded", True)
        assert sample(client, "heatdesk_nlu_degraded") == 1.0
        assert sample(client, "heatdesk_nlu_fallback_parses") == 2.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("NLU backend rasa unavailable" in w for w in warnings) == 1
