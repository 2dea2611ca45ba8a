"""WhatsApp through Twilio, end to end: signed webhooks into the real app (real
pipeline, NLU and storage), replies through the real twilio client into a
local server that speaks Twilio's REST wire format (tests/fakes/twilio_api.py).
Each test asserts what the customer ends up receiving."""

from __future__ import annotations

import logging
import re
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2
import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from bot.app import create_app
from bot.channels import ChannelRegistry
from bot.channels.whatsapp import OUTSIDE_WINDOW, WhatsAppAdapter
from bot.container import Container
from bot.delivery import DeliveryPolicy
from bot.pipeline import Texts
from config import Settings
from config.settings import ConfigError
from dialogs.messages import Reply
from storage.models import (
    ChannelAddress,
    Conversation,
    DeliveryStatus,
    Direction,
    InboxEntry,
    Message,
    OutboxEntry,
    Sender,
)
from tests.bot.conftest import app_settings_for, container_of
from tests.conftest import make_settings
from tests.fakes.twilio_api import FakeTwilio, MessageCall
from tests.harness import DEMO_ACCOUNT, DEMO_SNILS

T = TypeVar("T")

ACCOUNT_SID = "AC" + "5f" * 16
AUTH_TOKEN = "twilio-test-auth-token"
PUBLIC_BASE_URL = "https://bot.example.test"
BOT_NUMBER = "+14155238886"
WEBHOOK = "/webhooks/whatsapp"
STATUS = "/webhooks/whatsapp/status"
# Retries come quickly here, so an outage test waits seconds, not minutes.
FAST = DeliveryPolicy(
    base_backoff_seconds=0.2,
    max_backoff_seconds=1.0,
    sweep_interval_seconds=0.2,
    # Younger rows are the turn's own to send: the webhook returns after them.
    sweep_min_age_seconds=2.0,
    max_attempts=50,
)
# Every customer number this module uses, for the scan of the tables.
NUMBERS: list[str] = []


def new_number() -> str:
    number = "+7910" + str(uuid.uuid4().int)[:7]
    NUMBERS.append(number)
    return number


def twilio_overrides(fake: FakeTwilio) -> dict[str, object]:
    return {
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_whatsapp_from": f"whatsapp:{BOT_NUMBER}",
        "twilio_api_base": fake.base_url,
        "public_base_url": PUBLIC_BASE_URL,
        "twilio_ack_seconds": 60.0,  # tests wait for the whole turn
    }


def sign(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, form))


def inbound_form(number: str, text: str, sid: str | None = None, **extra: str) -> dict[str, str]:
    """The form Twilio posts for an incoming WhatsApp text."""
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": "Иван",
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": number.lstrip("+"),
        "SmsStatus": "received",
        "Body": text,
        "To": f"whatsapp:{BOT_NUMBER}",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": f"whatsapp:{number}",
        "ApiVersion": "2010-04-01",
        **extra,
    }


class Customer:
    """One WhatsApp customer: says lines through the signed webhook, reads
    what Twilio was asked to deliver to their number."""

    def __init__(self, client: TestClient, twilio: FakeTwilio, number: str | None = None) -> None:
        self.client = client
        self.twilio = twilio
        self.number = number or new_number()
        self._seen = 0

    def post(self, form: dict[str, str], signature: str | None = "sign") -> httpx2.Response:
        headers = {}
        if signature == "sign":
            signature = sign(PUBLIC_BASE_URL + WEBHOOK, form)
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        return self.client.post(WEBHOOK, data=form, headers=headers)

    def say(self, text: str, sid: str | None = None, **extra: str) -> list[str]:
        """Send a line; the texts the customer receives in answer."""
        response = self.post(inbound_form(self.number, text, sid, **extra))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/xml")
        assert "<Response/>" in response.text
        return self.received()

    def received(self) -> list[str]:
        calls = self.twilio.sent_to(self.number)
        new, self._seen = calls[self._seen :], len(calls)
        return [c.body or "" for c in new]

    def calls(self) -> list[MessageCall]:
        return self.twilio.sent_to(self.number)

    @property
    def chat_id(self) -> str:
        adapter = container_of(self.client).channels["whatsapp"]
        assert isinstance(adapter, WhatsAppAdapter)
        return adapter.chat_id_for(self.number)


def run(client: TestClient, fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on the app's event loop (where its engine lives)."""
    return client.portal.call(fn)  # type: ignore[union-attr]


def wait_until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def joined(texts: list[str]) -> str:
    return "\n".join(texts).replace("\u00a0", " ")


async def outbox_rows(client: TestClient, chat_id: str) -> list[OutboxEntry]:
    async with container_of(client).session_factory() as s:
        return list(
            (
                await s.scalars(
                    select(OutboxEntry)
                    .where(OutboxEntry.channel == "whatsapp", OutboxEntry.chat_id == chat_id)
                    .order_by(OutboxEntry.id)
                )
            ).all()
        )


def outbox(client: TestClient, chat_id: str) -> list[OutboxEntry]:
    return run(client, lambda: outbox_rows(client, chat_id))


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN).start()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def wa_settings(
    tmp_path_factory: pytest.TempPathFactory, nlu_model_path: Path, twilio: FakeTwilio
) -> Settings:
    return app_settings_for(
        tmp_path_factory.mktemp("whatsapp"), nlu_model_path, **twilio_overrides(twilio)
    )


@pytest.fixture(scope="module")
def client(wa_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(wa_settings, Container(wa_settings, delivery_policy=FAST))) as c:
        yield c


@pytest.fixture
def twilio_up(twilio: FakeTwilio) -> Iterator[FakeTwilio]:
    """The fake as each test should find it and leave it: up, no scripted errors."""
    twilio.start()
    yield twilio
    twilio.start()
    assert twilio.unauthorised == 0  # the real client sent the SID and token


# --------------------------------------------------------------------------
# The whole conversation
# --------------------------------------------------------------------------


def test_whole_conversation_as_a_transcript(client: TestClient, twilio_up: FakeTwilio) -> None:
    me = Customer(client, twilio_up)

    hello = joined(me.say("Здравствуйте"))
    assert "Здравствуйте" in hello
    # Buttons are a numbered list.
    assert "1. Передать показания" in hello
    assert "2. Баланс и начисления" in hello

    # A digit presses "Баланс и начисления": the account is linked first.
    asked = joined(me.say("2"))
    assert "лицевой счёт" in asked.lower()
    linked = joined(me.say(f"{DEMO_ACCOUNT} {DEMO_SNILS}"))
    assert f"счёт {DEMO_ACCOUNT} привязан" in linked
    balance = joined(me.say("Какой у меня баланс?"))
    assert "задолженность 3 456,78 ₽" in balance
    assert "1. Оплатить" in balance

    meters = joined(me.say("Хочу передать показания"))
    assert "1. Отопление" in meters
    # The label works as well as the digit.
    prompt = joined(me.say("отопление"))
    assert "показание счётчика отопления" in prompt
    confirm = joined(me.say("149,9"))
    assert "Передать показание 149,900 Гкал" in confirm
    assert "1. Да" in confirm
    taken = joined(me.say("Да"))
    assert "149,900" in taken
    assert "принял" in taken.lower() or "передано" in taken.lower() or "принято" in taken.lower()

    topics = joined(me.say("Хочу подать обращение"))
    assert "2. Качество отопления" in topics
    describe = joined(me.say("2"))
    assert "Опишите" in describe
    phone = joined(me.say("В квартире холодно, батареи еле тёплые"))
    assert "Без телефона" in phone
    check = joined(me.say("Без телефона"))
    assert "Тема: Качество отопления" in check
    registered = joined(me.say("1"))
    assert re.search(r"A-\d{4}-\d{6}", registered), registered

    outage = joined(me.say("Когда дадут горячую воду?"))
    assert "отключ" in outage.lower()

    handoff = joined(me.say("Позовите оператора"))
    assert "оператор" in handoff.lower()
    queued = joined(me.say("Вы тут?"))
    assert "очереди" in queued.lower()

    # Every reply went to the customer's number from the bot's, with a status callback.
    for call in me.calls():
        assert call.form["From"] == f"whatsapp:{BOT_NUMBER}"
        assert call.form["StatusCallback"].startswith(PUBLIC_BASE_URL + STATUS)
    rows = outbox(client, me.chat_id)
    assert rows
    assert {r.status for r in rows} == {DeliveryStatus.SENT}
    assert [r.platform_message_id for r in rows] == [c.sid for c in me.calls()]
    assert {r.platform_status for r in rows} == {"queued"}


def test_a_long_reply_is_split_at_line_breaks(client: TestClient, twilio_up: FakeTwilio) -> None:
    me = Customer(client, twilio_up)
    me.say("Здравствуйте")
    container = container_of(client)
    adapter = container.channels["whatsapp"]
    lines = [f"Строка {i}: " + "т" * 60 for i in range(60)]  # about 4,300 characters

    async def send() -> None:
        await adapter.send(me.chat_id, Reply("\n".join(lines)))

    run(client, send)
    pieces = me.received()
    assert len(pieces) == 3
    assert all(len(p) <= 1600 for p in pieces)
    assert "\n".join(pieces).splitlines() == lines


# --------------------------------------------------------------------------
# Faults and bad input
# --------------------------------------------------------------------------


def test_missing_or_forged_signature_is_refused_and_nothing_processed(
    client: TestClient, twilio_up: FakeTwilio
) -> None:
    me = Customer(client, twilio_up)
    form = inbound_form(me.number, "Здравствуйте")
    assert me.post(form, signature=None).status_code == 401
    assert me.post(form, signature="forged").status_code == 403
    other_token = sign(PUBLIC_BASE_URL + WEBHOOK, form, "other")
    assert me.post(form, signature=other_token).status_code == 403
    # Signed for another URL, or for another body.
    assert me.post(form, signature=sign("https://evil.example" + WEBHOOK, form)).status_code == 403
    tampered = {**form, "Body": "Покажите баланс"}
    assert me.post(tampered, signature=sign(PUBLIC_BASE_URL + WEBHOOK, form)).status_code == 403
    assert me.received() == []

    async def stored() -> int:
        async with container_of(client).session_factory() as s:
            rows = await s.scalars(select(InboxEntry.id).where(InboxEntry.chat_id == me.chat_id))
            return len(rows.all())

    assert run(client, stored) == 0
    # The same message, signed, is then answered.
    assert me.say("Здравствуйте", sid=form["MessageSid"])


def test_bad_payloads_get_a_clear_4xx_and_never_a_500(
    client: TestClient, twilio_up: FakeTwilio
) -> None:
    me = Customer(client, twilio_up)
    no_sid = inbound_form(me.number, "привет")
    del no_sid["MessageSid"]
    answer = me.post(no_sid)
    assert answer.status_code == 400
    assert "MessageSid" in answer.text

    not_whatsapp = inbound_form(me.number, "привет", From=me.number)
    answer = me.post(not_whatsapp)
    assert answer.status_code == 400
    assert "From" in answer.text
    assert me.number.lstrip("+") not in answer.text  # the number is not echoed

    bad_media = inbound_form(me.number, "привет", NumMedia="много")
    assert me.post(bad_media).status_code == 400

    huge = inbound_form(me.number, "щ" * 40_000)
    assert me.post(huge).status_code == 413

    raw = b"Body=\xff\xfe&From=whatsapp%3A%2B79100000000"
    answer = client.post(
        WEBHOOK,
        content=raw,
        headers={"X-Twilio-Signature": "x", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 400
    assert me.received() == []

    # Accepted but unusable: the customer gets the usual polite answers.
    assert joined(me.say("")) == Texts.empty
    limit = client.app.state.container.settings.max_message_chars  # type: ignore[attr-defined]
    too_long = joined(me.say("щ" * (limit + 1)))
    assert str(limit) in too_long


def test_media_become_attachments_of_the_message(client: TestClient, twilio_up: FakeTwilio) -> None:
    me = Customer(client, twilio_up)
    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MMx/Media/ME1"
    answer = me.say(
        "", NumMedia="2", MediaUrl0=url, MediaContentType0="image/jpeg",
        MediaUrl1=url + "2", MediaContentType1="application/pdf",
    )  # fmt: skip
    assert joined(answer) == Texts.empty

    async def attachments() -> list[dict[str, Any]]:
        async with container_of(client).session_factory() as s:
            body = await s.scalar(select(InboxEntry.body).where(InboxEntry.chat_id == me.chat_id))
            assert body is not None
            return list(body["attachments"])

    found = run(client, attachments)
    assert [(a["kind"], a["url"], a["mime_type"]) for a in found] == [
        ("photo", url, "image/jpeg"),
        ("document", url + "2", "application/pdf"),
    ]


def test_the_same_message_sid_three_times_is_answered_once(
    client: TestClient, twilio_up: FakeTwilio
) -> None:
    me = Customer(client, twilio_up)
    sid = "SM" + uuid.uuid4().hex
    first = me.say("Как оплатить?", sid=sid)
    assert first
    assert me.say("Как оплатить?", sid=sid) == []
    assert me.say("Как оплатить?", sid=sid) == []
    assert len(me.calls()) == len(first)


def test_twilio_unreachable_for_a_while_then_replies_arrive_in_order(
    client: TestClient, twilio_up: FakeTwilio
) -> None:
    me = Customer(client, twilio_up)
    twilio_up.stop()
    me.say("Здравствуйте")
    me.say("Как оплатить?")
    me.say("Какие тарифы?")
    assert me.received() == []
    rows = outbox(client, me.chat_id)
    assert len(rows) >= 3
    assert {r.status for r in rows} == {DeliveryStatus.PENDING}
    assert any(r.attempts >= 1 and r.last_error for r in rows)

    twilio_up.start()
    wait_until(lambda: {r.status for r in outbox(client, me.chat_id)} == {DeliveryStatus.SENT})
    time.sleep(0.5)  # a duplicate would show up now
    sent = outbox(client, me.chat_id)
    # In the order they were written, each once.
    assert [c.sid for c in me.calls()] == [r.platform_message_id for r in sent]
    texts = [c.body or "" for c in me.calls()]
    assert "Здравствуйте" in texts[0]
    assert len(me.calls()) == len(rows)


def test_the_webhook_answers_at_once_while_twilio_is_slow(
    tmp_path: Path, nlu_model_path: Path, twilio_up: FakeTwilio
) -> None:
    settings = app_settings_for(
        tmp_path, nlu_model_path, **{**twilio_overrides(twilio_up), "twilio_ack_seconds": 0.5}
    )
    with TestClient(create_app(settings, Container(settings, delivery_policy=FAST))) as slow:
        me = Customer(slow, twilio_up)
        twilio_up.hold()
        try:
            answer = me.post(inbound_form(me.number, "Здравствуйте"))
            # Acknowledged while the reply is still on its way to Twilio.
            assert answer.status_code == 200
            assert "<Response/>" in answer.text
            assert me.calls() == []
            wait_until(lambda: twilio_up.waiting == 1)  # the send is under way, held
        finally:
            twilio_up.release()
        wait_until(lambda: bool(me.calls()))
        wait_until(lambda: {r.status for r in outbox(slow, me.chat_id)} == {DeliveryStatus.SENT})
        assert "Здравствуйте" in me.calls()[0].body  # type: ignore[operator]


def test_sends_keep_within_the_sender_numbers_rate(
    tmp_path: Path, nlu_model_path: Path, twilio_up: FakeTwilio
) -> None:
    # One message every 10 s from our number, no burst: the next reply waits
    # its turn in the outbox (rescheduled, not slept through) instead of
    # reaching Twilio at once.
    settings = app_settings_for(
        tmp_path,
        nlu_model_path,
        **{
            **twilio_overrides(twilio_up),
            "twilio_sender_rate_per_second": 0.1,
            "twilio_sender_burst": 1,
        },
    )
    with TestClient(create_app(settings, Container(settings, delivery_policy=FAST))) as paced:
        me = Customer(paced, twilio_up)
        me.say("Здравствуйте")
        wait_until(lambda: len(me.calls()) == 1)
        _add_bot_reply(paced, me.chat_id, "Оператор на связи")
        row = next(r for r in outbox(paced, me.chat_id) if r.body["text"] == "Оператор на связи")
        wait_until(lambda: _row(paced, me.chat_id, row.id).attempts >= 1)
        held = _row(paced, me.chat_id, row.id)
        assert (held.status, len(me.calls())) == (DeliveryStatus.PENDING, 1)
        assert "rate limit" in (held.last_error or "")
        wait_until(lambda: _row(paced, me.chat_id, row.id).status is DeliveryStatus.SENT, 30)
        assert [c.body for c in me.calls()][-1] == "Оператор на связи"


def _row(client: TestClient, chat_id: str, row_id: int) -> OutboxEntry:
    return next(r for r in outbox(client, chat_id) if r.id == row_id)


def test_rate_limited_and_server_errors_are_retried(
    client: TestClient, twilio_up: FakeTwilio
) -> None:
    me = Customer(client, twilio_up)
    twilio_up.fail_next(429, 20429, "Too Many Requests")
    twilio_up.fail_next(500, 20500, "Internal Server Error")
    me.say("Как оплатить?")
    rows = outbox(client, me.chat_id)
    wait_until(lambda: {r.status for r in outbox(client, me.chat_id)} == {DeliveryStatus.SENT})
    assert len(me.calls()) == len(rows)
    assert len(rows) >= 1


def test_a_twilio_error_marks_the_message_failed_with_its_code(
    client: TestClient, twilio_up: FakeTwilio
) -> None:
    me = Customer(client, twilio_up)
    twilio_up.fail_next(
        400,
        63016,
        f"Failed to send freeform message to whatsapp:{me.number} because you are outside "
        "the allowed window. Please use a Template.",
    )
    me.say("Как оплатить?")
    rows = outbox(client, me.chat_id)
    wait_until(lambda: len(me.calls()) == len(rows) - 1)
    first = outbox(client, me.chat_id)[0]
    assert first.status is DeliveryStatus.FAILED
    assert first.platform_error_code == 63016
    assert first.last_error is not None
    assert "63016" in first.last_error
    assert me.number.lstrip("+") not in first.last_error
    # Not retried; the conversation's later replies went out.
    time.sleep(0.5)
    assert len(me.calls()) == len(rows) - 1
    assert [f["To"] for f in twilio_up.refused].count(f"whatsapp:{me.number}") == 1


def _add_bot_reply(client: TestClient, chat_id: str, text: str) -> int:
    """A bot message and its pending outbox row (a notice, an operator's answer)."""

    async def add() -> int:
        async with container_of(client).session_factory.begin() as s:
            conv = await s.scalar(
                select(Conversation).where(
                    Conversation.channel == "whatsapp", Conversation.chat_id == chat_id
                )
            )
            assert conv is not None
            now = datetime.now(UTC)
            msg = Message(
                conversation_id=conv.id,
                direction=Direction.OUT,
                sender=Sender.OPERATOR,
                text=text,
                created_at=now,
            )
            s.add(msg)
            await s.flush()
            row = OutboxEntry(
                conversation_id=conv.id,
                message_id=msg.id,
                channel="whatsapp",
                chat_id=chat_id,
                body=Reply(text).to_json(),
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            s.add(row)
            await s.flush()
            return row.id

    return run(client, add)


def _age_conversation(client: TestClient, chat_id: str, hours: float) -> None:
    async def age() -> None:
        async with container_of(client).session_factory.begin() as s:
            await s.execute(
                update(Conversation)
                .where(Conversation.channel == "whatsapp", Conversation.chat_id == chat_id)
                .values(last_customer_message_at=datetime.now(UTC) - timedelta(hours=hours))
            )

    run(client, age)


def test_outside_the_24_hour_window_a_reply_is_held_not_sent_as_text(
    client: TestClient, twilio_up: FakeTwilio
) -> None:
    me = Customer(client, twilio_up)
    me.say("Здравствуйте")
    _age_conversation(client, me.chat_id, hours=25)
    before = len(me.calls())
    entry_id = _add_bot_reply(client, me.chat_id, "Ваше обращение рассмотрено.")
    container_of(client).delivery.wake()

    def held() -> bool:
        row = next(r for r in outbox(client, me.chat_id) if r.id == entry_id)
        return row.status is DeliveryStatus.FAILED

    wait_until(held)
    row = next(r for r in outbox(client, me.chat_id) if r.id == entry_id)
    assert row.last_error == OUTSIDE_WINDOW
    time.sleep(0.5)
    assert len(me.calls()) == before  # never attempted
    assert all(f.get("To") != f"whatsapp:{me.number}" for f in twilio_up.refused)


def test_outside_the_window_a_configured_template_is_sent_instead(
    client: TestClient, twilio_up: FakeTwilio, wa_settings: Settings
) -> None:
    me = Customer(client, twilio_up)
    me.say("Здравствуйте")
    _age_conversation(client, me.chat_id, hours=30)
    template = "HX" + "0a" * 16
    templated = wa_settings.model_copy(update={"twilio_templates": {"reply": template}})
    adapter = WhatsAppAdapter(templated)
    entry_id = _add_bot_reply(client, me.chat_id, "Ваше обращение рассмотрено.")
    message_id = next(r.message_id for r in outbox(client, me.chat_id) if r.id == entry_id)

    async def send() -> None:
        await adapter.start(container_of(client))
        try:
            reply = Reply("Ваше обращение рассмотрено.")
            await adapter.send(me.chat_id, reply, message_id=message_id)
        finally:
            await adapter.close()

    before = len(me.calls())
    run(client, send)
    [call] = me.calls()[before:]
    assert call.body is None
    assert call.form["ContentSid"] == template
    assert "Ваше обращение рассмотрено." in call.form["ContentVariables"]


def test_status_callbacks_are_recorded_and_never_go_back(
    client: TestClient, twilio_up: FakeTwilio
) -> None:
    me = Customer(client, twilio_up)
    me.say("Как оплатить?")
    calls = me.calls()
    assert len(calls) >= 2
    first, second = calls[0], calls[1]

    def callback(
        call: MessageCall, status: str, signature: str | None = "sign", **extra: str
    ) -> int:
        url = call.form["StatusCallback"]
        form = {
            "MessageSid": call.sid,
            "SmsSid": call.sid,
            "AccountSid": ACCOUNT_SID,
            "MessageStatus": status,
            "SmsStatus": status,
            "From": f"whatsapp:{BOT_NUMBER}",
            "To": call.to,
            "ApiVersion": "2010-04-01",
            "ChannelPrefix": "whatsapp",
            **extra,
        }
        headers = {}
        if signature == "sign":
            signature = sign(url, form)
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        parts = urlsplit(url)
        return client.post(f"{parts.path}?{parts.query}", data=form, headers=headers).status_code

    def row(call: MessageCall) -> OutboxEntry:
        return next(r for r in outbox(client, me.chat_id) if r.platform_message_id == call.sid)

    assert callback(first, "sent") == 204
    assert callback(first, "delivered") == 204
    assert callback(first, "sent") == 204  # late and out of order
    assert row(first).platform_status == "delivered"
    assert callback(first, "read") == 204
    assert row(first).platform_status == "read"
    assert row(first).status is DeliveryStatus.SENT

    assert callback(second, "read", signature=None) == 401
    assert callback(second, "read", signature="forged") == 403
    assert row(second).platform_status == "queued"
    assert callback(second, "failed", ErrorCode="63016") == 204
    failed = row(second)
    assert failed.platform_status == "failed"
    assert failed.status is DeliveryStatus.FAILED
    assert failed.platform_error_code == 63016


def test_the_phone_number_is_in_no_table_and_no_log(
    client: TestClient,
    twilio_up: FakeTwilio,
    wa_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    me = Customer(client, twilio_up)
    me.say("Здравствуйте", ProfileName=f"Иван {me.number}")
    me.say("1")
    twilio_up.fail_next(400, 21211, f"The 'To' number whatsapp:{me.number} is not valid.")
    me.say("Как оплатить?")
    twilio_up.stop()
    me.say("Какие тарифы?")
    twilio_up.start()

    async def addresses() -> list[str]:
        async with container_of(client).session_factory() as s:
            return list((await s.scalars(select(ChannelAddress.address_hash))).all())

    assert me.chat_id in run(client, addresses)

    path = wa_settings.database_url.split("///", 1)[1]
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = []
        for table in tables:
            for values in conn.execute(f'SELECT * FROM "{table}"'):
                dump.append(" ".join(str(v) for v in values))
    finally:
        conn.close()
    text = "\n".join(dump)
    assert me.chat_id in text  # the scan reads what it should
    for number in NUMBERS:
        digits = number.lstrip("+")
        assert digits not in text
        assert digits[1:] not in text  # without the country code either
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged
    for number in NUMBERS:
        assert number.lstrip("+")[1:] not in logged


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


def test_whatsapp_is_off_without_twilio_settings_and_refused_half_configured() -> None:
    plain = make_settings("sqlite+aiosqlite:///:memory:")
    assert "whatsapp" not in ChannelRegistry.from_settings(plain)
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        make_settings(
            "sqlite+aiosqlite:///:memory:",
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_whatsapp_from=BOT_NUMBER,
        )
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        make_settings(
            "sqlite+aiosqlite:///:memory:",
            twilio_account_sid=ACCOUNT_SID,
            twilio_whatsapp_from=BOT_NUMBER,
            public_base_url=PUBLIC_BASE_URL,
        )
    on = make_settings(
        "sqlite+aiosqlite:///:memory:",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_whatsapp_from=BOT_NUMBER,
        public_base_url=PUBLIC_BASE_URL,
    )
    assert isinstance(ChannelRegistry.from_settings(on)["whatsapp"], WhatsAppAdapter)
