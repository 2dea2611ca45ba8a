"""The real Rasa 3.6 server behind RasaNluParser and the circuit breaker.

A session fixture trains once on a small slice of nlu/data (a few examples
per intent, the synonyms, regexes and lookups as they are) with the project's
own pipeline at fewer epochs; the model is cached by fingerprint outside the
tree, so a later run only starts the server. Outside CI the tests skip when
the Rasa virtualenv is missing (``make rasa-setup``); in CI they run.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from config import Settings, load_settings
from nlu.base import NluUnavailable
from nlu.cli import main as cli_main
from nlu.embedded import EmbeddedNluParser
from nlu.rasa import FallbackNluParser, RasaNluParser
from nlu.rasa import server as rasa_server
from nlu.rasa.client import EntityNormaliser
from tests.nlu.conftest import HELD_OUT

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
EXAMPLES_PER_INTENT = 10
ANNOTATED_PER_INTENT = 6
TEST_EPOCHS = 40
# Loading TensorFlow and the model: half a minute on a quiet machine.
READY_TIMEOUT = 300.0
# Examples of the slice, so a short training certainly learned them.
GREETING = "привет"
ACCOUNT = "лс 1002003001"


@dataclass
class RasaServer:
    home: rasa_server.RasaHome
    model: Path
    port: int
    token: str
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.process = rasa_server.start_server(
            self.home, self.model, port=self.port, token=self.token, log_file=self.log
        )
        try:
            rasa_server.wait_ready(self.url, self.process, timeout=READY_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            # Sanic's graceful shutdown takes up to 15 s; a test needs it down, not polite.
            rasa_server.stop_server(self.process, grace=3.0)
            self.process = None

    def parser(self, timeout: float = 5.0, token: str | None = "") -> RasaNluParser:
        return RasaNluParser(
            self.url,
            token=self.token if token == "" else token,
            timeout_seconds=timeout,
            fallback_threshold=0.45,
            normaliser=EntityNormaliser.from_data(),
        )


def example_lines(examples: object) -> list[str]:
    """Annotated example lines of Rasa's block form or of its list of ``text:`` items."""
    if isinstance(examples, list):
        return [str(item["text"]).strip() for item in examples]
    assert isinstance(examples, str)
    return [ln.strip()[2:] for ln in examples.splitlines() if ln.strip()]


def write_slice(data_dir: Path, out: Path) -> None:
    """A few examples per intent of the one copy under nlu/data, written for Rasa."""
    out.mkdir(parents=True, exist_ok=True)
    kept: dict[str, list[str]] = {}
    for file in sorted(data_dir.glob("*.yml")):
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
        items = doc.get("nlu") or []
        if not any("intent" in item for item in items):
            # synonyms, regexes, lookups: as they are
            (out / file.name).write_text(file.read_text(encoding="utf-8"), encoding="utf-8")
            continue
        for item in items:
            if "intent" not in item:
                continue
            lines = example_lines(item["examples"])
            annotated = [ln for ln in lines if "](" in ln or "]{" in ln][:ANNOTATED_PER_INTENT]
            plain = [ln for ln in lines if ln not in annotated][:EXAMPLES_PER_INTENT]
            have = kept.setdefault(str(item["intent"]), [])
            have += [ln for ln in annotated + plain if ln not in have]
    body = ['version: "3.1"', "nlu:"]
    for intent, lines in kept.items():
        body.append(f"- intent: {intent}")
        body.append("  examples: |")
        body += [f"    - {ln}" for ln in lines[: EXAMPLES_PER_INTENT + ANNOTATED_PER_INTENT]]
    (out / "nlu.yml").write_text("\n".join(body) + "\n", encoding="utf-8")


def write_test_config(out: Path) -> Path:
    """The project's pipeline, trained for fewer epochs."""
    config = yaml.safe_load(rasa_server.CONFIG.read_text(encoding="utf-8"))
    for component in config["pipeline"]:
        if component["name"] == "DIETClassifier":
            component["epochs"] = TEST_EPOCHS
    path = out / "config.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def rasa_home() -> rasa_server.RasaHome:
    home = rasa_server.RasaHome.default()
    if not home.installed():
        if not IN_CI:
            pytest.skip(f"no Rasa virtualenv in {home.venv}: make rasa-setup")
        rasa_server.setup(home)
    return home


@pytest.fixture(scope="session")
def rasa_model(rasa_home: rasa_server.RasaHome, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("rasa-slice")
    write_slice(rasa_server.DATA_DIR, work / "data")
    return rasa_server.train(rasa_home, work / "data", write_test_config(work)).path


@pytest.fixture(scope="session")
def rasa(
    rasa_home: rasa_server.RasaHome, rasa_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RasaServer]:
    log = tmp_path_factory.mktemp("rasa-run") / "rasa.log"
    srv = RasaServer(rasa_home, rasa_model, free_port(), secrets.token_urlsafe(16), log)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()  # never left running, whatever the tests did


@pytest.fixture
async def rasa_parser(rasa: RasaServer) -> AsyncIterator[RasaNluParser]:
    if rasa.process is None:
        rasa.start()
    parser = rasa.parser()
    yield parser
    await parser.close()


def test_slice_is_small_and_rasa_readable(tmp_path: Path) -> None:
    write_slice(rasa_server.DATA_DIR, tmp_path)
    doc = yaml.safe_load((tmp_path / "nlu.yml").read_text(encoding="utf-8"))
    intents = [item["intent"] for item in doc["nlu"]]
    assert len(intents) == len(set(intents)) >= 20
    sizes = [len(item["examples"].splitlines()) for item in doc["nlu"]]
    assert max(sizes) <= EXAMPLES_PER_INTENT + ANNOTATED_PER_INTENT
    for copied in tmp_path.iterdir():
        if copied.name != "nlu.yml":  # synonyms, regexes, lookups: byte for byte
            assert copied.read_bytes() == (rasa_server.DATA_DIR / copied.name).read_bytes()


async def test_parse_through_the_real_server(rasa_parser: RasaNluParser) -> None:
    result = await rasa_parser.parse(GREETING)
    assert result.text == GREETING
    assert result.intent.name == "greet"
    assert result.intent.confidence > 0.45
    assert result.intent_ranking[0].name == "greet"
    assert "nlu_fallback" not in {i.name for i in result.intent_ranking}

    account = await rasa_parser.parse(ACCOUNT)
    assert account.intent.name == "link_account"
    found = account.entity("account_number")
    assert found is not None
    assert (found.start, found.end, found.value) == (3, 13, "1002003001")


async def test_entity_values_are_normalised_like_the_embedded_parser(
    rasa_parser: RasaNluParser, parser: EmbeddedNluParser
) -> None:
    text = "передаю показания: тепло 150,3"
    rasa_result = await rasa_parser.parse(text)
    embedded_result = await parser.parse(text)
    rasa_values = {(e.entity, e.value) for e in rasa_result.entities}
    embedded_values = {(e.entity, e.value) for e in embedded_result.entities}
    assert ("reading_value", "150.3") in embedded_values
    # Whatever spans Rasa found, each value is the one the rules give it.
    assert rasa_values, rasa_result
    assert rasa_values <= embedded_values


async def test_wrong_token_is_unavailable(rasa: RasaServer) -> None:
    if rasa.process is None:
        rasa.start()
    parser = rasa.parser(token="not-the-token")
    try:
        with pytest.raises(NluUnavailable, match="HTTP 401"):
            await parser.parse(GREETING)
    finally:
        await parser.close()


async def test_falls_back_while_rasa_is_stopped_and_returns_when_it_is_back(
    rasa: RasaServer, parser: EmbeddedNluParser, caplog: pytest.LogCaptureFixture
) -> None:
    if rasa.process is None:
        rasa.start()
    breaker = FallbackNluParser(rasa.parser(timeout=2.0), parser, retry_seconds=0.2)
    try:
        assert (await breaker.parse(GREETING)).intent.name == "greet"
        assert breaker.status() == {"backend": "rasa", "answering": "rasa", "degraded": False}

        rasa.stop()
        caplog.set_level(logging.INFO, logger="nlu.rasa.breaker")
        first = await breaker.parse(ACCOUNT)
        second = await breaker.parse(GREETING)
        assert first == await parser.parse(ACCOUNT)  # the embedded parser's own answer
        assert second.intent.name == "greet"
        assert breaker.degraded
        assert breaker.status()["answering"] == "embedded"
        assert breaker.fallback_parses == 2
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # said once, not per message
        assert "embedded" in warnings[0].getMessage()

        rasa.start()  # same port, same model; starting takes longer than the retry pause
        back = await breaker.parse(ACCOUNT)
        assert not breaker.degraded
        assert breaker.status()["answering"] == "rasa"
        assert back.intent.name == "link_account"
        assert any("is back" in r.getMessage() for r in caplog.records)
        assert breaker.outages == 1
    finally:
        await breaker.primary.close()


async def test_falls_back_while_rasa_is_slow(
    rasa: RasaServer, parser: EmbeddedNluParser, caplog: pytest.LogCaptureFixture
) -> None:
    if rasa.process is None:
        rasa.start()
    assert rasa.process is not None
    breaker = FallbackNluParser(rasa.parser(timeout=0.5), parser, retry_seconds=0.2)
    caplog.set_level(logging.INFO, logger="nlu.rasa.breaker")
    try:
        assert (await breaker.parse(GREETING)).intent.name == "greet"
        os.killpg(rasa.process.pid, signal.SIGSTOP)  # frozen: it accepts, never answers
        try:
            slow = await breaker.parse(ACCOUNT)
            assert breaker.degraded
            assert slow == await parser.parse(ACCOUNT)
            fast = await breaker.parse(GREETING)  # no second wait inside the retry pause
            assert fast.intent.name == "greet"
            assert breaker.fallback_parses == 2
        finally:
            os.killpg(rasa.process.pid, signal.SIGCONT)
        await asyncio.sleep(0.3)
        deadline = asyncio.get_running_loop().time() + 10
        while breaker.degraded and asyncio.get_running_loop().time() < deadline:
            await breaker.parse(GREETING)  # the frozen server answers its backlog first
            await asyncio.sleep(0.3)
        assert not breaker.degraded
        assert (await breaker.parse(ACCOUNT)).intent.name == "link_account"
        assert [r.levelno for r in caplog.records].count(logging.WARNING) == 1
    finally:
        await breaker.primary.close()


def test_pipeline_falls_back_at_the_embedded_threshold() -> None:
    config = yaml.safe_load(rasa_server.CONFIG.read_text(encoding="utf-8"))
    (fallback,) = [c for c in config["pipeline"] if c["name"] == "FallbackClassifier"]
    assert fallback["threshold"] == load_settings().nlu_fallback_threshold


def _cli(argv: list[str], settings: Settings) -> tuple[int, str]:
    out = io.StringIO()
    code = cli_main(argv, settings, out=out)
    return code, out.getvalue()


def test_eval_with_the_rasa_backend(rasa: RasaServer, nlu_settings: Settings) -> None:
    if rasa.process is None:
        rasa.start()
    settings = nlu_settings.model_copy(
        update={"rasa_url": rasa.url, "rasa_token": SecretStr(rasa.token)}
    )
    code, output = _cli(["eval", str(HELD_OUT), "--backend", "rasa"], settings)
    assert code == 0, output
    lines = output.rstrip("\n").split("\n")
    assert re.fullmatch(r"accuracy=\d\.\d{3} macro_f1=\d\.\d{3}", lines[-1])
    assert re.fullmatch(r"entities: micro_f1=\d\.\d{3} macro_f1=\d\.\d{3}", lines[-2])
    assert any(line.startswith("account_number ") for line in lines)


def test_compare_prints_a_table_and_draws_both_matrices(
    rasa: RasaServer, nlu_settings: Settings, tmp_path: Path
) -> None:
    if rasa.process is None:
        rasa.start()
    settings = nlu_settings.model_copy(
        update={"rasa_url": rasa.url, "rasa_token": SecretStr(rasa.token)}
    )
    code, output = _cli(["compare", str(HELD_OUT), "--plots", str(tmp_path)], settings)
    assert code == 0, output
    assert "| metric | embedded | rasa |" in output
    for label in ("accuracy", "macro F1", "entity F1", "parse p50, ms", "parse p95, ms"):
        assert f"| {label}" in output
    assert "(HTTP)" in output
    assert "(in-process)" in output
    assert "| F1 `greet` |" in output
    for backend in ("embedded", "rasa"):
        picture = tmp_path / f"{HELD_OUT.stem}-{backend}.png"
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
