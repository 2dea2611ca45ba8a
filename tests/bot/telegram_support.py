"""A Telegram customer for transcript tests: updates in through the webhook,
replies read from the fake Bot API's record of sendMessage calls."""

from __future__ import annotations

import itertools
import time
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

from sqlalchemy import func, select

from bot.channels.telegram import SECRET_HEADER, WEBHOOK_PATH, TelegramAdapter
from bot.delivery import DeliveryPolicy
from config import Settings
from storage.models import DeliveryStatus, OutboxEntry
from tests.bot.conftest import app_settings_for, container_of
from tests.fakes.telegram_api import (
    TOKEN,
    Call,
    FakeBotApi,
    callback_update,
    contact_fields,
    message_update,
    photo_fields,
)

SECRET = "s3cret-Webhook_token"
PUBLIC_URL = "https://bot.kursk-gen.example"
# Retries and sweeps in fractions of a second, so fault tests stay short.
FAST_DELIVERY = DeliveryPolicy(
    base_backoff_seconds=0.2,
    max_backoff_seconds=1.0,
    sweep_interval_seconds=0.2,
    # Fresh replies are the turn's own to send, as in production.
    sweep_min_age_seconds=1.0,
    lease_seconds=5.0,
)
_chat_ids = itertools.count(710_000_001)


def telegram_settings(
    tmp: Path, nlu_model_path: Path, api: FakeBotApi, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "telegram_bot_token": TOKEN,
        "telegram_webhook_secret": SECRET,
        "telegram_api_base": api.base_url,
        "public_base_url": PUBLIC_URL,
        "telegram_request_timeout_seconds": 5.0,
        **overrides,
    }
    return app_settings_for(tmp, nlu_model_path, **values)


def telegram_of(client: TestClient) -> TelegramAdapter:
    adapter = container_of(client).channels["telegram"]
    assert isinstance(adapter, TelegramAdapter)
    return adapter


def drain(client: TestClient) -> None:
    """Wait for the turns the webhook acknowledged to finish."""
    assert client.portal is not None
    client.portal.call(telegram_of(client).drain)


def wait_delivered(client: TestClient, chat_id: int, timeout: float = 20.0) -> None:
    """Wait until no reply of the chat is pending (a paced one may still be out)."""
    stored = telegram_of(client).chat_id_for(chat_id)

    async def pending() -> int:
        async with container_of(client).session_factory() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(OutboxEntry)
                .where(
                    OutboxEntry.channel == "telegram",
                    OutboxEntry.chat_id == stored,
                    OutboxEntry.status == DeliveryStatus.PENDING,
                )
            )
        return int(count or 0)

    assert client.portal is not None
    portal = client.portal
    deadline = time.monotonic() + timeout
    while portal.call(pending):
        assert time.monotonic() < deadline, "replies still pending"
        time.sleep(0.02)


class TelegramChat:
    """One customer's private chat with the bot."""

    def __init__(self, client: TestClient, api: FakeBotApi, chat_id: int | None = None) -> None:
        self.client = client
        self.api = api
        self.chat_id = chat_id or next(_chat_ids)

    @property
    def stored_id(self) -> str:
        """The chat id the bot stores for this chat: the keyed hash of its Telegram id."""
        return telegram_of(self.client).chat_id_for(self.chat_id)

    def post(self, update: dict[str, Any] | bytes | str, secret: str | None = SECRET) -> Any:
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        if isinstance(update, dict):
            return self.client.post(WEBHOOK_PATH, json=update, headers=headers)
        headers["Content-Type"] = "application/json"
        return self.client.post(WEBHOOK_PATH, content=update, headers=headers)

    def deliver(self, update: dict[str, Any]) -> list[str]:
        """Post an update as Telegram does; the texts the bot sent because of it."""
        before = len(self.api.sent(self.chat_id))
        response = self.post(update)
        assert response.status_code == 200, response.text
        drain(self.client)
        wait_delivered(self.client, self.chat_id)
        return self.api.texts(self.chat_id)[before:]

    def say(self, text: str) -> list[str]:
        return self.deliver(message_update(self.chat_id, text))

    def send_photo(self, file_id: str, caption: str | None = None) -> list[str]:
        return self.deliver(message_update(self.chat_id, **photo_fields(file_id, caption)))

    def share_contact(self, phone: str) -> list[str]:
        return self.deliver(message_update(self.chat_id, **contact_fields(self.chat_id, phone)))

    def last_with_buttons(self) -> Call:
        for call in reversed(self.api.sent(self.chat_id)):
            markup = call.params.get("reply_markup")
            if isinstance(markup, dict) and "inline_keyboard" in markup:
                return call
        raise AssertionError("no message with inline buttons in this chat")

    def buttons(self) -> list[dict[str, Any]]:
        markup = self.last_with_buttons().params["reply_markup"]
        return [b for row in markup["inline_keyboard"] for b in row]

    def press_update(self, title: str) -> dict[str, Any]:
        call = self.last_with_buttons()
        for button in self.buttons():
            if title.lower() in str(button["text"]).lower():
                return callback_update(self.chat_id, call.result, str(button["callback_data"]))
        raise AssertionError(f"no button {title!r} in {[b['text'] for b in self.buttons()]}")

    def press(self, title: str) -> list[str]:
        return self.deliver(self.press_update(title))
