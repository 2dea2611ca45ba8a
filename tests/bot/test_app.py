"""The HTTP surface: demo page, widget assets, health, readiness, metrics."""

from __future__ import annotations

import gc
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bot.app import create_app
from tests.bot.conftest import Tab, app_settings_for, bot_texts
from tests.conftest import make_settings


def sample(client: TestClient, name: str, **labels: str) -> float:
    body = client.get("/metrics").text
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_demo_page_embeds_the_widget_with_one_script_tag(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="ru">' in html
    assert "Курская генерация" in html
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/widget.js">']


def test_widget_assets_are_served(client: TestClient) -> None:
    js = client.get("/widget.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    # It finds its server from its own src, and speaks Russian.
    assert "/widget/ws" in js.text
    assert "document.currentScript" in js.text
    assert "Напишите сообщение…" in js.text
    assert "Отправить" in js.text
    assert ".innerHTML = " not in js.text.replace("launcher.innerHTML = ", "")
    css = client.get("/widget.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_not_ready_without_a_database() -> None:
    # Not started (no lifespan): the process is alive, its database is not there.
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere")
    c = TestClient(create_app(settings))
    assert c.get("/healthz").status_code == 200
    ready = c.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths)


def test_metrics_count_messages_replies_and_latency(client: TestClient) -> None:
    inbound = sample(client, "heatdesk_inbound_messages_total", channel="webchat")
    replies = sample(client, "heatdesk_replies_total", channel="webchat")
    turns = sample(client, "heatdesk_turn_seconds_count", channel="webchat")
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        frames, ack = tab.say("Здравствуйте")
    assert ack["type"] == "ack"
    assert bot_texts(frames)
    assert sample(client, "heatdesk_inbound_messages_total", channel="webchat") == inbound + 1
    assert sample(client, "heatdesk_replies_total", channel="webchat") >= replies + 1
    assert sample(client, "heatdesk_turn_seconds_count", channel="webchat") == turns + 1
    assert sample(client, "heatdesk_deliveries_total", channel="webchat", outcome="sent") >= 1
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_metrics_count_handoffs(client: TestClient) -> None:
    before = sample(client, "heatdesk_handoffs_total", channel="webchat")
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        frames, _ = tab.say("соедините с оператором")
    assert bot_texts(frames)
    assert sample(client, "heatdesk_handoffs_total", channel="webchat") == before + 1


def test_a_server_process_sets_aside_what_its_start_built(
    tmp_path: Path, nlu_model_path: Path
) -> None:
    # `python -m bot run` and its workers: what the start built is frozen, out
    # of every later full collection's walk. A test's app (the default) is not.
    settings = app_settings_for(tmp_path, nlu_model_path)
    assert gc.get_freeze_count() == 0
    try:
        with TestClient(create_app(settings, freeze_gc=True)) as server:
            # The NLU model, the mappers, the modules: far more than a handful.
            assert gc.get_freeze_count() > 10_000
            assert server.get("/readyz").status_code == 200
    finally:
        gc.unfreeze()
    with TestClient(create_app(settings)) as plain:
        assert plain.get("/readyz").status_code == 200
        assert gc.get_freeze_count() == 0
