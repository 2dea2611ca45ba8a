"""RasaNluParser against a local HTTP server that answers like Rasa's /model/parse."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from config import load_settings
from nlu.base import NluUnavailable
from nlu.embedded import EmbeddedNluParser
from nlu.factory import build_parser
from nlu.rasa import EntityNormaliser, FallbackNluParser, RasaNluParser
from nlu.rasa.client import _with_text
from nlu.types import FALLBACK_INTENT, Entity, ParseResult


def rasa_answer(text: str, intent: str, confidence: float) -> dict[str, Any]:
    """The body Rasa 3.6 sends for POST /model/parse (extra keys included)."""
    return {
        "text": text,
        "intent": {"id": 123, "name": intent, "confidence": confidence},
        "entities": [
            {
                "entity": "account_number",
                "start": 3,
                "end": 13,
                "confidence_entity": 0.99,
                "value": "1002003001",
                "extractor": "DIETClassifier",
                "processors": [],
            }
        ]
        if "1002003001" in text
        else [],
        "text_tokens": [[0, 2]],
        "intent_ranking": [
            {"id": 123, "name": intent, "confidence": confidence},
            {"id": 7, "name": "greet", "confidence": round(1 - confidence, 3)},
        ],
        "response_selector": {"all_retrieval_intents": [], "default": {}},
    }


@dataclass
class FakeRasa:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeRasa

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.fake.requests.append({"path": parts.path, "query": parse_qs(parts.query), **body})
        text: str = body["text"]
        if parts.path != "/model/parse":
            self._send(404, b"{}")
        elif text == "slow":
            self.fake.release.wait(5)
            self._send(200, json.dumps(rasa_answer(text, "greet", 0.9)).encode())
        elif text == "boom":
            self._send(500, b'{"status": "failure"}')
        elif text == "garbage":
            self._send(200, b"<html>not json</html>")
        elif text == "":
            answer = {"text": "", "intent": {"name": None, "confidence": 0.0}, "entities": []}
            self._send(200, json.dumps(answer).encode())
        elif text == "мямля":
            self._send(200, json.dumps(rasa_answer(text, "greet", 0.2)).encode())
        else:
            self._send(200, json.dumps(rasa_answer(text, "link_account", 0.97)).encode())

    def _send(self, status: int, payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)


@pytest.fixture(scope="module")
def fake_rasa() -> Iterator[FakeRasa]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    fake = FakeRasa(url=f"http://127.0.0.1:{server.server_address[1]}")
    _Handler.fake = fake
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
async def rasa(fake_rasa: FakeRasa) -> AsyncIterator[RasaNluParser]:
    fake_rasa.requests.clear()
    parser = RasaNluParser(
        fake_rasa.url, token="s3cret", timeout_seconds=0.3, fallback_threshold=0.45
    )
    yield parser
    await parser.close()


async def test_answer_is_read_as_a_parse_result(rasa: RasaNluParser, fake_rasa: FakeRasa) -> None:
    result = await rasa.parse("лс 1002003001")
    assert (result.intent.name, result.intent.confidence) == ("link_account", 0.97)
    assert [(e.entity, e.start, e.end, e.value) for e in result.entities] == [
        ("account_number", 3, 13, "1002003001")
    ]
    assert [i.name for i in result.intent_ranking] == ["link_account", "greet"]
    (request,) = fake_rasa.requests
    assert request["path"] == "/model/parse"
    assert request["text"] == "лс 1002003001"
    assert request["query"] == {"token": ["s3cret"]}


async def test_no_token_no_query(fake_rasa: FakeRasa) -> None:
    fake_rasa.requests.clear()
    parser = RasaNluParser(fake_rasa.url + "/")
    try:
        await parser.parse("привет")
    finally:
        await parser.close()
    assert fake_rasa.requests[0]["query"] == {}


async def test_low_confidence_becomes_fallback_keeping_the_ranking(rasa: RasaNluParser) -> None:
    result = await rasa.parse("мямля")
    assert (result.intent.name, result.intent.confidence) == (FALLBACK_INTENT, 0.45)
    assert result.intent_ranking[0].name == "greet"


async def test_empty_intent_from_rasa_is_a_fallback(rasa: RasaNluParser) -> None:
    result = await rasa.parse("")
    assert result.intent.name == FALLBACK_INTENT


async def test_server_error_is_nlu_unavailable(rasa: RasaNluParser) -> None:
    with pytest.raises(NluUnavailable) as info:
        await rasa.parse("boom")
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)


async def test_timeout_is_nlu_unavailable(rasa: RasaNluParser) -> None:
    with pytest.raises(NluUnavailable) as info:
        await rasa.parse("slow")
    assert isinstance(info.value.__cause__, httpx.TimeoutException)


async def test_garbage_is_nlu_unavailable(rasa: RasaNluParser) -> None:
    with pytest.raises(NluUnavailable):
        await rasa.parse("garbage")


async def test_unreachable_server_is_nlu_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    parser = RasaNluParser(f"http://127.0.0.1:{port}", timeout_seconds=0.5)
    try:
        with pytest.raises(NluUnavailable) as info:
            await parser.parse("привет")
    finally:
        await parser.close()
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_factory_builds_the_rasa_parser_from_settings(
    fake_rasa: FakeRasa, tmp_path: Path
) -> None:
    fake_rasa.requests.clear()
    settings = load_settings(
        nlu_backend="rasa",
        rasa_url=fake_rasa.url,
        rasa_token="t0k",
        nlu_model_path=tmp_path / "nlu-model.pkl",
    )
    parser = build_parser(settings)
    try:
        # Rasa behind the breaker, the embedded parser ready to stand in.
        assert isinstance(parser, FallbackNluParser)
        assert isinstance(parser.primary, RasaNluParser)
        assert isinstance(parser.fallback, EmbeddedNluParser)
        assert (await parser.parse("привет")).intent.name == "link_account"
        assert not parser.degraded
    finally:
        await parser.close()
    assert fake_rasa.requests[0]["query"] == {"token": ["t0k"]}


def test_normaliser_gives_rule_values_to_rasa_spans() -> None:
    normaliser = EntityNormaliser.from_data()

    def dietary(text: str, entity: str, span: str, value: str | None = None) -> Entity:
        start = text.index(span)
        return Entity(entity=entity, start=start, end=start + len(span), value=value or span)

    text = "показания гвс 1 234,5 за март, снилс 112-233-445 95, тел 8 (4712) 39-55-55"
    entities = [
        dietary(text, "meter_type", "гвс"),
        dietary(text, "reading_value", "1 234,5"),
        dietary(text, "date", "март"),
        dietary(text, "snils", "112-233-445 95"),
        dietary(text, "phone", "8 (4712) 39-55-55"),
        dietary(text, "account_number", "показания"),  # DIET's mistake: no digits
    ]
    values = [(e.entity, e.value) for e in normaliser.normalise(text, entities)]
    assert values == [
        ("meter_type", "hot_water"),
        ("reading_value", "1234.5"),
        ("date", "--03"),
        ("snils", "11223344595"),
        ("phone", "74712395555"),
    ]
    # A span the rules did not see is normalised by its own entity's rule.
    assert (
        normaliser.normalise("123,40", [dietary("123,40", "reading_value", "123,40")])[0].value
        == "123.40"
    )


def test_rasa_ranking_has_no_fallback_entry() -> None:
    body = {
        "text": "ыыы",
        "intent": {"name": FALLBACK_INTENT, "confidence": 0.45},
        "intent_ranking": [
            {"name": FALLBACK_INTENT, "confidence": 0.45},
            {"name": "greet", "confidence": 0.3},
        ],
    }
    result = ParseResult.model_validate(_with_text(body, "ыыы"))
    assert result.intent.name == FALLBACK_INTENT
    assert [i.name for i in result.intent_ranking] == ["greet"]
