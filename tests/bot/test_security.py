"""HTTP hardening and opaque widget sessions: security headers on every page,
/metrics for the local network (or a bearer token), tokens that hide the session id."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from itsdangerous import URLSafeTimedSerializer
from starlette.testclient import TestClient

from bot.app import create_app
from bot.channels.webchat import WebchatSessions
from bot.cli import EXIT_CONFIG, main
from bot.security import is_local_address
from config import Settings, load_settings
from config.settings import DEFAULT_SECRET_KEY
from storage.crypto import PersonalDataVault
from tests.bot.conftest import Tab
from tests.conftest import make_settings

DAY = 86400.0


def csp_of(response_headers: Mapping[str, str]) -> dict[str, list[str]]:
    policy = response_headers.get("content-security-policy")
    assert policy, "no Content-Security-Policy"
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


# --------------------------------------------------------------------------
# Security headers
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/widget.js", "/widget.css", "/healthz", "/readyz"])
def test_every_page_sends_security_headers(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    csp = csp_of(response.headers)
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]  # the widget's WebSocket back to this host
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    assert "'unsafe-eval'" not in response.headers["content-security-policy"]


def test_the_demo_pages_own_inline_styles_are_allowed_by_hash(client: TestClient) -> None:
    page = client.get("/")
    styles = re.findall(r"<style>(.*?)</style>", page.text, re.DOTALL)
    assert styles, "the demo page has its stylesheet inline"
    allowed = csp_of(page.headers)["style-src"]
    for css in styles:
        digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in allowed
    # The page has no inline script and no style attribute the policy would block.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
    assert not re.search(r"\sstyle=", page.text)


def test_docs_stay_public_under_their_own_policy(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    csp = csp_of(docs.headers)
    # Swagger UI's bundle comes from its CDN; nobody may frame it either.
    assert "https://cdn.jsdelivr.net" in csp["script-src"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert docs.headers["x-content-type-options"] == "nosniff"
    assert client.get("/openapi.json").status_code == 200
    # The looser policy is the docs' alone.
    assert "https://cdn.jsdelivr.net" not in csp_of(client.get("/").headers)["script-src"]


# --------------------------------------------------------------------------
# /metrics
# --------------------------------------------------------------------------


def unstarted_app(tmp_path: Path, **overrides: object) -> Settings:
    return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}", **overrides)


def metrics_status(settings: Settings, client_host: str, token: str | None = None) -> int:
    # Not started: /metrics needs no database, and the client address is the point.
    http = TestClient(create_app(settings), client=(client_host, 41000))
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return http.get("/metrics", headers=headers).status_code


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "10.20.30.40", "172.17.0.1", "192.168.1.5"])
def test_metrics_answer_the_local_network(tmp_path: Path, host: str) -> None:
    assert metrics_status(unstarted_app(tmp_path), host) == 200


@pytest.mark.parametrize("host", ["203.0.113.7", "8.8.8.8", "2001:db8::1", "::ffff:8.8.8.8"])
def test_metrics_are_forbidden_to_the_internet_without_a_token(tmp_path: Path, host: str) -> None:
    settings = unstarted_app(tmp_path)
    assert metrics_status(settings, host) == 403
    assert metrics_status(settings, host, token="guess") == 403


def test_metrics_with_a_token_need_the_right_token_from_outside(tmp_path: Path) -> None:
    settings = unstarted_app(tmp_path, metrics_token="scrape-" + "t" * 30)
    assert metrics_status(settings, "203.0.113.7") == 403
    assert metrics_status(settings, "203.0.113.7", token="scrape-wrong") == 403
    assert metrics_status(settings, "203.0.113.7", token="scrape-" + "t" * 30) == 200
    assert metrics_status(settings, "127.0.0.1") == 200


def test_metrics_body_is_prometheus_text_only_for_the_allowed(tmp_path: Path) -> None:
    http = TestClient(create_app(unstarted_app(tmp_path)), client=("203.0.113.7", 41000))
    refused = http.get("/metrics")
    assert "heatdesk_" not in refused.text
    assert refused.headers["content-type"].startswith("application/json")


def test_local_addresses() -> None:
    assert is_local_address("127.0.0.1")
    assert is_local_address("::ffff:192.168.0.9")
    assert not is_local_address("::ffff:8.8.8.8")
    assert not is_local_address("100.64.0.1")  # carrier-grade NAT is not our network
    assert not is_local_address("testclient")
    assert not is_local_address(None)


# --------------------------------------------------------------------------
# Widget session tokens
# --------------------------------------------------------------------------


def every_base64_decoding(token: str) -> list[bytes]:
    """The token, and each dot-separated part of it, decoded at every alignment."""
    decoded = []
    for part in [token, *token.split(".")]:
        for start in range(4):
            chunk = part[start:].rstrip("=")
            chunk += "=" * (-len(chunk) % 4)
            for decode in (base64.urlsafe_b64decode, base64.b64decode):
                with contextlib.suppress(ValueError):  # binascii.Error included
                    decoded.append(decode(chunk))
    return decoded


def test_a_token_does_not_reveal_its_session_id(app_settings: Settings) -> None:
    sessions = WebchatSessions(app_settings.secret_key.get_secret_value(), 30)
    for _ in range(20):
        token, sid = sessions.issue()
        assert sessions.verify(token) == sid
        assert sid not in token
        decodings = every_base64_decoding(token)
        assert decodings
        for raw in decodings:
            assert sid.encode() not in raw
            assert b'"sid"' not in raw


def test_a_token_made_with_the_published_key_is_refused(tmp_path: Path) -> None:
    # A development install without SECRET_KEY, as in the probe.
    settings = load_settings(
        environment="development", secret_key="", secret_key_file=tmp_path / "secret_key"
    )
    sessions = WebchatSessions(settings.secret_key.get_secret_value(), 30)
    _, sid = sessions.issue()
    old_style = URLSafeTimedSerializer(DEFAULT_SECRET_KEY, salt="webchat-session-v1").dumps(
        {"sid": sid}
    )
    assert sessions.verify(old_style) is None
    new_style, _ = WebchatSessions(DEFAULT_SECRET_KEY, 30).issue(sid)
    assert sessions.verify(new_style) is None


def test_session_tokens_and_personal_data_use_different_keys() -> None:
    secret = "one-secret-for-both-" + "s" * 30
    sessions = WebchatSessions(secret, 30)
    _, sid = sessions.issue()
    assert sessions.verify(PersonalDataVault(secret).encrypt(sid)) is None


def test_tampered_odd_and_oversized_tokens_are_refused() -> None:
    sessions = WebchatSessions("k" * 40, 30)
    token, sid = sessions.issue()
    for i in range(0, len(token) - 1, 7):
        swapped = "A" if token[i] != "A" else "B"
        assert sessions.verify(token[:i] + swapped + token[i + 1 :]) is None
    for bad in ("", "garbage", token + "\ud800", "ё" * 40, token[:-2], "x" * 2000, None):
        assert sessions.verify(bad) is None
    assert sessions.verify(token) == sid


def test_tokens_expire_and_slide_forward_when_renewed() -> None:
    now = [1_800_000_000.0]
    sessions = WebchatSessions("k" * 40, 30, clock=lambda: now[0])
    token, sid = sessions.issue()
    now[0] += 29 * DAY
    assert sessions.verify(token) == sid
    renewed, same = sessions.issue(sessions.verify(token))  # what each hello does
    assert same == sid
    now[0] += 29 * DAY  # 58 days after the first token, 29 after the renewal
    assert sessions.verify(token) is None
    assert sessions.verify(renewed) == sid


def test_an_expired_token_opens_a_new_session_over_the_socket(
    client: TestClient, app_settings: Settings
) -> None:
    with client.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        tab.say("привет")
    days = app_settings.widget_session_days
    sessions = WebchatSessions(app_settings.secret_key.get_secret_value(), days)
    sid = sessions.verify(tab.token)
    assert sid is not None
    stale, _ = WebchatSessions(
        app_settings.secret_key.get_secret_value(),
        days,
        clock=lambda: time.time() - (days + 1) * DAY,
    ).issue(sid)
    with client.websocket_connect("/widget/ws") as ws:
        other = Tab(ws).hello(stale)
    assert other.history == []
    assert sessions.verify(other.token) not in {None, sid}


# --------------------------------------------------------------------------
# Start-up
# --------------------------------------------------------------------------


def test_the_cli_refuses_the_published_key_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("SECRET_KEY", DEFAULT_SECRET_KEY)
    assert main(["demo-data"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "configuration error" in err
    assert "SECRET_KEY" in err
    assert "published" in err
