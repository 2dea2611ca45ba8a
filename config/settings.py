"""One typed settings object for the whole bot.

Environment names are shared with the outside (see shared/design.md), so they
are flat (``DATABASE_URL``, ``REDIS_URL``...). Modules never read ``os.environ``
themselves: the composition root calls :func:`load_settings` once and passes
the object down.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Published in the source, so it protects nothing: accepted only in tests.
DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me"
_TELEGRAM_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
_GENERATE_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


class ConfigError(Exception):
    """The settings cannot be used (an unsafe default in production, say)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # --- deployment -------------------------------------------------------
    environment: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str | None = None
    # Empty means "not configured": in development load_settings generates one
    # into secret_key_file; production refuses; tests use the published default.
    secret_key: SecretStr = SecretStr("")
    secret_key_file: Path = PROJECT_ROOT / "var" / "secret_key"
    log_level: str = "INFO"
    # Worker processes of `python -m bot run` (uvicorn's WEB_CONCURRENCY);
    # more than one needs PostgreSQL and Redis.
    web_concurrency: int = Field(default=1, ge=1)
    # /metrics answers loopback and private addresses; others need this bearer token.
    metrics_token: SecretStr | None = None

    # --- storage ----------------------------------------------------------
    database_url: str = f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'bot.sqlite3'}"
    # None means in-process memory for locks and pub/sub (embedded mode).
    redis_url: str | None = None
    redis_key_prefix: str = "heatdesk"
    # Connections each Redis role (locks, pub/sub, rate limits) may have in
    # flight per process; a command beyond that waits up to the timeout for a
    # free one (then counts as Redis unavailable).
    redis_max_connections: int = Field(default=200, ge=1)
    redis_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    # Short, because a killed process's lock lives this long; the holder renews
    # it every third of it while it holds it (storage/locks.py).
    lock_ttl_seconds: float = Field(default=5.0, gt=0)
    lock_wait_seconds: float = 20.0
    # Every so often each process replays inbox entries older than this that
    # nobody answered (another process accepted them and died, say).
    inbox_replay_sweep_seconds: float = Field(default=30.0, gt=0)
    # The appeal jobs (bot/notices.py): deadline moves and status notices, a
    # pass this often in every process; a page of this many rows at a time.
    notice_interval_seconds: float = Field(default=30.0, gt=0)
    notice_batch_size: int = Field(default=200, ge=1)
    load_demo_data: bool = True  # on the first start in embedded mode

    # --- NLU --------------------------------------------------------------
    nlu_backend: Literal["embedded", "rasa"] = "embedded"
    # Chosen on training data (bench/nlu.py's trade-off table on the grouped
    # cross-validation folds): at 0.20, 2.4% of in-domain messages fall back
    # there and the out-of-scope share taken for a service intent is no higher
    # than at 0.25-0.35 (on the held-out files: 3.3% and 1.5%).
    nlu_fallback_threshold: float = 0.20
    nlu_model_path: Path = PROJECT_ROOT / "var" / "nlu-model.pkl"
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_token: SecretStr | None = None
    rasa_timeout_seconds: float = 3.0

    # --- channels ---------------------------------------------------------
    telegram_bot_token: SecretStr | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_api_base: str | None = None
    # Long polling: how long one getUpdates waits for news (Bot API maximum 50).
    telegram_poll_timeout_seconds: int = Field(default=25, ge=0, le=50)
    # One Bot API call (not getUpdates); below the delivery worker's lease.
    telegram_request_timeout_seconds: float = Field(default=15.0, gt=0)
    # The webhook answers once the turn is committed, or 503 after this long
    # (Telegram then delivers the update again; the inbox drops a duplicate).
    telegram_ack_timeout_seconds: float = Field(default=25.0, gt=0)
    # Bot API limits: about one message a second per chat, 30 a second overall.
    telegram_chat_rate_per_second: float = Field(default=1.0, gt=0)
    telegram_chat_burst: int = Field(default=3, ge=1)
    telegram_global_rate_per_second: float = Field(default=30.0, gt=0)
    telegram_global_burst: int = Field(default=30, ge=1)
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_whatsapp_from: str | None = None
    twilio_api_base: str | None = None
    # Approved WhatsApp templates (Twilio Content SIDs, "HX...") by purpose, sent
    # outside the 24-hour window instead of free text, e.g.
    # TWILIO_TEMPLATES='{"reply": "HX..."}'; "reply" carries the text as {{1}}.
    twilio_templates: dict[str, str] = Field(default_factory=dict)
    twilio_timeout_seconds: float = Field(default=10.0, gt=0)
    # Twilio gives a webhook 15 s; a slower turn is acknowledged anyway and
    # finishes in the background (its inbox entry is written first).
    twilio_ack_seconds: float = Field(default=5.0, gt=0)
    # Messages a second one WhatsApp sender number may send (Twilio's default
    # throughput for a WhatsApp sender is 80 MPS; lower it for a smaller one).
    twilio_sender_rate_per_second: float = Field(default=80.0, gt=0)
    twilio_sender_burst: int = Field(default=80, ge=1)
    # The operators' Telegram desk (bot/operators/telegram_desk.py): a second
    # bot, an admin of the supergroup OPERATOR_CHAT_ID with topics turned on.
    operator_bot_token: SecretStr | None = None
    operator_chat_id: int | None = None
    # Another Bot API server for the desk's bot; unset, it follows TELEGRAM_API_BASE.
    operator_api_base: str | None = None
    # The web console: how long a login lasts, and the lockout after failed
    # passwords (per account, whatever the client's address).
    console_session_hours: float = Field(default=12.0, gt=0)
    operator_login_attempts: int = Field(default=5, ge=1)
    operator_lockout_minutes: int = Field(default=15, ge=1)
    # Chats one operator handles at once unless their account says otherwise
    # (operators.capacity); the queue assigns no more than that.
    operator_capacity: int = Field(default=3, ge=1)
    widget_session_days: int = 30
    # Origins of the sites that may embed the widget (JSON list, e.g.
    # '["https://kursk-gen.example"]'); "*" allows any. The server's own pages
    # (Origin matching the Host they were served from, or HOST:PORT) and
    # PUBLIC_BASE_URL's origin are always allowed. A handshake without an Origin
    # (not a browser: scripts, tests, the benchmark) is allowed too.
    widget_allowed_origins: tuple[str, ...] = ()
    # Customer messages per widget session, and per client IP across sessions.
    widget_message_rate_per_second: float = Field(default=1.0, gt=0)
    widget_message_burst: int = Field(default=5, ge=1)
    widget_ip_message_rate_per_second: float = Field(default=5.0, gt=0)
    widget_ip_message_burst: int = Field(default=30, ge=1)
    # Other frames (pings, repeated hellos, malformed ones) per widget session.
    widget_frame_rate_per_second: float = Field(default=1.0, gt=0)
    widget_frame_burst: int = Field(default=20, ge=1)
    max_message_chars: int = 4096

    # --- business rules ---------------------------------------------------
    timezone: str = "Europe/Moscow"
    company_name: str = "Курская генерация"
    hotline_phone: str = "8 800 100-19-00"
    contact_center_open_hour: int = 8
    contact_center_close_hour: int = 20
    # ISO weekdays the contact center works: Monday=1 ... Saturday=6.
    contact_center_days: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    link_max_attempts: int = 3
    link_lockout_minutes: int = 15
    reading_jump_factor: Decimal = Decimal(3)
    appeal_review_hours: int = 48
    appeal_decision_working_days: int = 10
    payment_url_template: str = "https://pay.kursk-gen.example/?account={account}&amount={amount}"
    bank_details: str = (
        "Получатель: ООО «Курская генерация», ИНН 4632000000, КПП 463201001, "
        "р/с 40702810000000000000 в Отделении Курск ПАО Сбербанк, "
        "БИК 043807606, к/с 30101810300000000606"
    )
    fallbacks_before_operator: int = Field(default=2, ge=1)

    # --- dialog forms: when a message mid-form is another question ----------
    # (dialogs/engine.py InterruptionPolicy; dialogs/FRAMEWORK.md shows each.)
    # Another flow's intent interrupts a form only at this NLU confidence: a
    # wrong interruption costs the customer more than one more prompt.
    form_interrupt_confidence: float = Field(default=0.7, ge=0, le=1)
    # A message carrying a slot value is still an answer when it has at most
    # this many words besides its entities ("показание 149,8")...
    form_answer_extra_words: int = Field(default=2, ge=0)
    # ...or none at all once the other intent is this sure.
    form_sure_confidence: float = Field(default=0.9, ge=0, le=1)
    # A keyword match for the asked-for slot (a topic word, any number) is no
    # answer in a message longer than this many words read as another intent.
    form_loose_answer_words: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _telegram_webhook_needs_secret(self) -> Settings:
        if self.telegram_bot_token is None or self.public_base_url is None:
            return self
        secret = self.telegram_webhook_secret
        if secret is None or not secret.get_secret_value():
            raise ValueError(
                "TELEGRAM_WEBHOOK_SECRET must be set for the Telegram webhook "
                "(PUBLIC_BASE_URL is set); unset PUBLIC_BASE_URL for long polling"
            )
        if not _TELEGRAM_SECRET.fullmatch(secret.get_secret_value()):
            raise ValueError(
                "TELEGRAM_WEBHOOK_SECRET: 1-256 characters of A-Z, a-z, 0-9, _ and - "
                "(what Telegram accepts as secret_token)"
            )
        if not self.public_base_url.startswith("https://") and self.environment == "production":
            raise ValueError("PUBLIC_BASE_URL must be https:// (Telegram calls webhooks over TLS)")
        return self

    @model_validator(mode="after")
    def _whatsapp_complete(self) -> Settings:
        wanted = (self.twilio_account_sid, self.twilio_auth_token, self.twilio_whatsapp_from)
        if any(wanted):
            missing = [
                name
                for name, value in (
                    ("TWILIO_ACCOUNT_SID", self.twilio_account_sid),
                    ("TWILIO_AUTH_TOKEN", self.twilio_auth_token),
                    ("TWILIO_WHATSAPP_FROM", self.twilio_whatsapp_from),
                    ("PUBLIC_BASE_URL", self.public_base_url),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    "WhatsApp (Twilio) needs " + ", ".join(missing) + " as well: Twilio signs "
                    "each webhook with the auth token over PUBLIC_BASE_URL + /webhooks/whatsapp, "
                    "and the bot refuses unsigned requests"
                )
        return self

    @property
    def whatsapp_enabled(self) -> bool:
        return bool(self.twilio_account_sid)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Load settings from the environment and ``.env``; overrides win (tests)."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return resolve_secret_key(settings)


def resolve_secret_key(settings: Settings) -> Settings:
    """``settings`` with a secret key: the configured one, else the generated one.

    The key encrypts stored personal data, so a generated key is kept and read
    again on every later start rather than made anew.
    """
    configured = settings.secret_key.get_secret_value()
    if configured == DEFAULT_SECRET_KEY and settings.environment != "test":
        instead = (
            ""
            if settings.environment == "production"
            else "remove SECRET_KEY to have a random key generated into "
            f"{settings.secret_key_file}, or "
        )
        raise ConfigError(
            "SECRET_KEY is the default published in the source code, so anyone could sign "
            f"widget session tokens with it: {instead}set it to a long random value "
            f"({_GENERATE_HINT})"
        )
    if configured:
        return settings
    if settings.environment == "production":
        # A key generated on one server would be lost with it, and with the
        # key every stored phone number: production names its own.
        raise ConfigError(
            "SECRET_KEY is not set: production needs a fixed key of its own (it encrypts "
            "stored personal data and widget sessions; keep it and back it up). Set SECRET_KEY "
            f"to a long random value ({_GENERATE_HINT})"
        )
    if settings.environment == "test":
        key = DEFAULT_SECRET_KEY
    else:
        key = read_or_create_secret_key(settings.secret_key_file)
    return settings.model_copy(update={"secret_key": SecretStr(key)})


def read_or_create_secret_key(path: Path) -> str:
    """The key kept in ``path``; a random one is written there (0600) if none is."""
    with contextlib.suppress(FileNotFoundError):
        return _read_secret_key(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_urlsafe(48) + "\n")
                out.flush()
                os.fsync(out.fileno())
            # A hard link never replaces an existing file: of two processes
            # starting at once, the second one reads the first one's key.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot write a generated SECRET_KEY to {path} ({exc.strerror}): "
            "make the directory writable, point SECRET_KEY_FILE elsewhere, or set SECRET_KEY"
        ) from exc
    return _read_secret_key(path)


def _read_secret_key(path: Path) -> str:
    try:
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the SECRET_KEY kept in {path} ({exc}): fix its path or "
            "permissions, point SECRET_KEY_FILE elsewhere, or set SECRET_KEY"
        ) from exc
    if len(key) < 32:
        raise ConfigError(
            f"{path} does not hold a usable SECRET_KEY (too short): delete it to have a new "
            "one generated (personal data encrypted with the old key is lost) or restore it"
        )
    return key
