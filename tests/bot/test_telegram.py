"""Telegram customers through the webhook: the real aiogram Bot against a local
server speaking the Bot API wire format, the real pipeline, NLU and storage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from bot.app import create_app
from bot.channels.pacing import MAX_PACE_SECONDS
from bot.channels.telegram import (
    CALLBACK_DATA_BYTES,
    MAX_UPDATE_BYTES,
    TelegramAdapter,
    callback_data,
    split_text,
)
from bot.container import Container
from bot.errors import RetryAfter
from config import Settings
from config.settings import ConfigError
from dialogs.messages import Button, Reply
from storage.models import (
    Appeal,
    AppealAttachment,
    Conversation,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    InboxEntry,
    Message,
    OutboxEntry,
    Sender,
)
from tests.bot.conftest import container_of
from tests.bot.telegram_support import (
    FAST_DELIVERY,
    SECRET,
    TelegramChat,
    drain,
    telegram_of,
    telegram_settings,
)
from tests.conftest import make_settings
from tests.fakes.telegram_api import (
    BAD_GATEWAY_PAGE,
    BOT_BLOCKED,
    INTERNAL_ERROR,
    STICKER_FIELDS,
    TOKEN,
    TOO_MANY_REQUESTS,
    FakeBotApi,
    edited_update,
    message_update,
)
from tests.harness import DEMO_ACCOUNT, DEMO_SNILS, plain


@pytest.fixture(scope="module")
def api() -> Iterator[FakeBotApi]:
    server = FakeBotApi().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tg_settings(
    tmp_path_factory: pytest.TempPathFactory, nlu_model_path: Path, api: FakeBotApi
) -> Settings:
    return telegram_settings(tmp_path_factory.mktemp("telegram"), nlu_model_path, api)


@pytest.fixture(scope="module")
def client(tg_settings: Settings) -> Iterator[TestClient]:
    app = create_app(tg_settings, Container(tg_settings, delivery_policy=FAST_DELIVERY))
    with TestClient(app) as c:
        yield c


def run_db(client: TestClient, query: Any) -> list[Any]:
    """Rows of a SELECT on the app's database, run on the app's loop."""

    async def fetch() -> list[Any]:
        async with container_of(client).session_factory() as session:
            return list((await session.execute(query)).all())

    assert client.portal is not None
    return client.portal.call(fetch)


def inbox_count(client: TestClient, chat: TelegramChat) -> int:
    rows = run_db(
        client,
        select(func.count())
        .select_from(InboxEntry)
        .where(InboxEntry.channel == "telegram", InboxEntry.chat_id == chat.stored_id),
    )
    return int(rows[0][0])


def outbox_rows(client: TestClient, chat: TelegramChat) -> list[Any]:
    return run_db(
        client,
        select(OutboxEntry.status, OutboxEntry.body)
        .where(OutboxEntry.channel == "telegram", OutboxEntry.chat_id == chat.stored_id)
        .order_by(OutboxEntry.id),
    )


def wait_all_sent(client: TestClient, api: FakeBotApi, chat: TelegramChat) -> None:
    api.wait_for(
        lambda: all(s is DeliveryStatus.SENT for s, _ in outbox_rows(client, chat)),
        what="every reply of the chat sent",
    )


# --------------------------------------------------------------------------
# Start-up and the whole conversation
# --------------------------------------------------------------------------


def test_webhook_is_registered_with_the_secret_and_the_handled_types(
    client: TestClient, api: FakeBotApi
) -> None:
    api.wait_for(lambda: bool(api.calls("setWebhook")), what="setWebhook")
    params = api.calls("setWebhook")[0].params
    assert params["url"] == "https://bot.kursk-gen.example/webhooks/telegram"
    assert params["secret_token"] == SECRET
    assert params["allowed_updates"] == ["message", "edited_message", "callback_query"]
    assert not api.calls("getUpdates")  # webhook mode does not poll


def test_whole_customer_conversation_over_the_webhook(client: TestClient, api: FakeBotApi) -> None:
    chat = TelegramChat(client, api)

    (hello,) = chat.say("/start")
    assert hello.startswith("Здравствуйте")
    assert "Подать обращение" in [b["text"] for b in chat.buttons()]

    # Linking with the demo account.
    (ask,) = chat.say("хочу привязать лицевой счёт")
    assert "СНИЛС" in ask
    (linked,) = chat.say(f"{DEMO_ACCOUNT} {DEMO_SNILS}")
    assert f"счёт {DEMO_ACCOUNT} привязан" in linked
    assert DEMO_SNILS not in json.dumps([c.params for c in api.calls()], ensure_ascii=False)

    # Balance, pressing its button: the spinner is stopped, the same step runs.
    (balance,) = chat.say("сколько я должен")
    assert "задолженность 3 456,78 ₽" in plain(balance)

    # A reading, the meter and the confirmation chosen by buttons.
    (which,) = chat.say("хочу передать показания")
    assert "счётчику" in which
    presses = len(api.calls("answerCallbackQuery"))
    (prompt,) = chat.press("Отопление")
    assert "отопления" in prompt
    assert "148,620" in prompt
    (confirm,) = chat.say("150")
    assert "150,000" in confirm
    (accepted,) = chat.press("Да")
    assert "принято" in accepted
    api.wait_for(lambda: len(api.calls("answerCallbackQuery")) == presses + 2)

    # An appeal: a photo sent while filing is attached; the phone is asked
    # with a "share my number" keyboard and the shared contact answers it.
    (topic,) = chat.say("хочу подать жалобу")
    assert "тему" in topic
    (describe,) = chat.press("Качество отопления")
    assert "Опишите" in describe
    attached, again = chat.send_photo("AgACAgIAAxkBAAIBb2Photo")
    assert "приложу" in attached
    assert "Опишите" in again
    (phone,) = chat.say("В спальне батареи еле тёплые уже неделю")
    assert "номер телефона" in phone
    keyboard = chat.api.sent(chat.chat_id)[-1].params["reply_markup"]
    assert keyboard["keyboard"][0][0]["request_contact"] is True
    assert keyboard["one_time_keyboard"] is True
    assert [row[0]["text"] for row in keyboard["keyboard"][1:]] == ["Без телефона"]
    (check,) = chat.share_contact("79101234567")
    assert "+7 *** ***-**-67" in check
    assert "Вложения: 1" in check
    (registered,) = chat.press("Да")
    assert "Обращение зарегистрировано" in registered
    number = registered.split("номер ", 1)[1].split(".", 1)[0]
    rows = run_db(
        client,
        select(AppealAttachment.kind, AppealAttachment.file_id, AppealAttachment.channel)
        .join(Appeal, Appeal.id == AppealAttachment.appeal_id)
        .where(Appeal.number == number),
    )
    assert [tuple(r) for r in rows] == [("photo", "AgACAgIAAxkBAAIBb2Photo", "telegram")]
    (stored_phone,) = run_db(
        client, select(Appeal.contact_phone_enc).where(Appeal.number == number)
    )
    assert stored_phone[0]
    assert "79101234567" not in stored_phone[0]

    # An outage report, then a human.
    (outage,) = chat.say("нет горячей воды")
    assert "заявк" in outage
    # The reply keyboard is taken away once its question is answered.
    assert chat.api.sent(chat.chat_id)[-1].params["reply_markup"] == {"remove_keyboard": True}
    handoff, place = chat.say("позовите оператора")
    assert "оператор" in handoff.lower()
    assert "Ваше место в очереди: 1." in place
    (status,) = run_db(
        client, select(Conversation.status).where(Conversation.chat_id == chat.stored_id)
    )
    assert status[0] is ConversationStatus.QUEUED

    # The shared number is personal data: not kept in the clear in the history.
    said = run_db(
        client,
        select(Message.text)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.chat_id == chat.stored_id),
    )
    assert said
    assert not [t for (t,) in said if "9101234567" in t]

    # Every reply went out once, in the order the outbox has them.
    wait_all_sent(client, api, chat)
    assert api.texts(chat.chat_id) == [body["text"] for _, body in outbox_rows(client, chat)]


def test_a_pressed_button_is_answered_and_acts_like_typing_its_title(
    client: TestClient, api: FakeBotApi
) -> None:
    chat = TelegramChat(client, api)
    chat.say("привет")
    update = chat.press_update("Контакты")
    (contacts,) = chat.deliver(update)
    answered = [c.params["callback_query_id"] for c in api.calls("answerCallbackQuery")]
    assert update["callback_query"]["id"] in answered
    typed = TelegramChat(client, api)
    assert typed.say("Контакты и часы работы") == [contacts]
    # The press is stored as the customer's message with its payload.
    (stored,) = run_db(
        client,
        select(Message.text, Message.payload)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.chat_id == chat.stored_id, Message.direction == Direction.IN)
        .order_by(Message.id.desc())
        .limit(1),
    )
    assert tuple(stored) == ("Контакты и часы работы", {"button": "/contacts_hours"})


def test_a_button_with_a_payload_over_64_bytes_round_trips(
    client: TestClient, api: FakeBotApi
) -> None:
    chat = TelegramChat(client, api)
    chat.say("привет")
    long_payload = '/file_appeal{"category":"heating_quality","source":"telegram-long-button-x"}'
    assert len(long_payload.encode()) > CALLBACK_DATA_BYTES

    async def add_reply() -> None:
        # A reply of the bot with that button, as the pipeline writes one.
        async with container_of(client).session_factory.begin() as s:
            conv = await s.scalar(
                select(Conversation).where(Conversation.chat_id == chat.stored_id)
            )
            assert conv is not None
            reply = Reply(
                "Выберите:", (Button("Короткая", "/greet"), Button("Длинная", long_payload))
            )
            now = datetime.now(UTC)
            out = Message(
                conversation_id=conv.id,
                direction=Direction.OUT,
                sender=Sender.BOT,
                text=reply.text,
                payload=reply.to_json(),
                created_at=now,
            )
            s.add(out)
            await s.flush()
            s.add(
                OutboxEntry(
                    conversation_id=conv.id,
                    message_id=out.id,
                    channel="telegram",
                    chat_id=chat.stored_id,
                    body=reply.to_json(),
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        container_of(client).delivery.wake()

    assert client.portal is not None
    client.portal.call(add_reply)
    api.wait_for(lambda: api.texts(chat.chat_id)[-1:] == ["Выберите:"])
    datas = [b["callback_data"] for b in chat.buttons()]
    assert datas[0] == "/greet"
    assert all(len(d.encode()) <= CALLBACK_DATA_BYTES for d in datas)
    (describe,) = chat.press("Длинная")
    assert "Опишите" in describe  # the category came from the long payload
    (stored,) = run_db(
        client,
        select(Message.payload)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.chat_id == chat.stored_id, Message.direction == Direction.IN)
        .order_by(Message.id.desc())
        .limit(1),
    )
    assert stored[0] == {"button": long_payload}


def test_callback_data_fits_and_only_long_payloads_are_referenced() -> None:
    short = Button("Да", "/affirm")
    long = Button("Длинная", "/x" + "я" * 40)
    assert callback_data(short, 0, 17) == "/affirm"
    assert callback_data(long, 3, 17) == "#17:3"
    assert callback_data(Button("Хэш", "#tag"), 1, 17) == "#17:1"  # never ambiguous


def test_start_with_a_deep_link_starts_linking(client: TestClient, api: FakeBotApi) -> None:
    chat = TelegramChat(client, api)
    (ask,) = chat.say("/start link")
    assert "СНИЛС" in ask
    other = TelegramChat(client, api)
    (hello,) = other.say("/start some-campaign_42")  # unknown: a greeting
    assert hello.startswith("Здравствуйте")


def test_a_sticker_and_a_voice_get_a_polite_answer(client: TestClient, api: FakeBotApi) -> None:
    chat = TelegramChat(client, api)
    (answer,) = chat.deliver(message_update(chat.chat_id, **STICKER_FIELDS))
    assert "текстом" in answer
    voice: dict[str, Any] = {
        "voice": {"file_id": "AwACAgIAAxkBVoice", "file_unique_id": "v1", "duration": 3}
    }
    (again,) = chat.deliver(message_update(chat.chat_id, **voice))
    assert "текстом" in again


def test_an_edited_message_does_not_start_a_new_turn(client: TestClient, api: FakeBotApi) -> None:
    chat = TelegramChat(client, api)
    first = message_update(chat.chat_id, "сколько я должен")
    assert chat.deliver(first)
    before = inbox_count(client, chat)
    assert chat.deliver(edited_update(first, "как оплатить")) == []
    assert inbox_count(client, chat) == before


def test_split_text_cuts_at_line_breaks_and_keeps_everything() -> None:
    lines = [f"Строка {i}: " + "т" * 50 for i in range(200)]
    text = "\n".join(lines)
    parts = split_text(text)
    assert len(parts) > 1
    assert all(len(p) <= 4096 for p in parts)
    assert "\n".join(parts) == text  # every cut is at a line break
    assert split_text("коротко") == ["коротко"]
    one_line = "слово " * 1000
    cut = split_text(one_line, limit=100)
    assert all(len(p) <= 100 for p in cut)
    assert "".join(cut).replace(" ", "") == one_line.replace(" ", "")
    assert split_text("ю" * 250, limit=100) == ["ю" * 100, "ю" * 100, "ю" * 50]


def test_a_long_reply_arrives_in_parts_with_its_buttons_on_the_last(
    client: TestClient, api: FakeBotApi
) -> None:
    chat = TelegramChat(client, api)
    chat.say("привет")  # the chat's address is known once it has written
    text = "\n".join(f"Пункт {i}: " + "э" * 90 for i in range(100))
    reply = Reply(text, (Button("Да", "/affirm"),))
    before = len(api.sent(chat.chat_id))
    assert client.portal is not None
    client.portal.call(lambda: telegram_of(client).send(chat.stored_id, reply, message_id=None))
    sent = api.sent(chat.chat_id)[before:]
    assert len(sent) == len(split_text(text)) > 1
    assert "\n".join(str(c.params["text"]) for c in sent) == text
    assert [c.params.get("reply_markup") is not None for c in sent] == [False] * (len(sent) - 1) + [
        True
    ]


# --------------------------------------------------------------------------
# Bad requests: refused, nothing processed, never a 500
# --------------------------------------------------------------------------


def test_a_missing_or_forged_secret_is_refused_and_nothing_is_processed(
    client: TestClient, api: FakeBotApi
) -> None:
    chat = TelegramChat(client, api)
    update = message_update(chat.chat_id, "привет")
    assert chat.post(update, secret=None).status_code == 401
    for forged in ("wrong", SECRET + "x", SECRET[:-1], ""):
        assert chat.post(update, secret=forged).status_code == 403
    drain(client)
    assert inbox_count(client, chat) == 0
    assert api.sent(chat.chat_id) == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"   ", 400),
        (b"{not json", 400),
        (b"[1, 2, 3]", 400),
        (b'{"message": {"text": "no update_id"}}', 400),
        (b'{"update_id": "abc"}', 400),
        (b"[" * 100_000 + b"]" * 100_000, 400),
        (b'{"update_id": 1, "x": "' + b"a" * (MAX_UPDATE_BYTES + 1) + b'"}', 413),
    ],
    ids=["empty", "blank", "malformed", "array", "no-id", "bad-id", "deep", "oversized"],
)
def test_a_bad_payload_gets_a_clear_4xx(
    client: TestClient, api: FakeBotApi, body: bytes, status: int
) -> None:
    chat = TelegramChat(client, api)
    response = chat.post(body)
    assert response.status_code == status
    assert response.json()["detail"]


def test_an_update_of_a_type_not_handled_is_acknowledged_and_ignored(
    client: TestClient, api: FakeBotApi
) -> None:
    chat = TelegramChat(client, api)
    poll = {
        "update_id": 42,
        "poll_answer": {
            "poll_id": "1",
            "option_ids": [0],
            "user": {"id": 5, "is_bot": False, "first_name": "А"},
        },
    }
    assert chat.post(poll).status_code == 200
    group = message_update(chat.chat_id, "привет")
    group["message"]["chat"] = {"id": -100123, "type": "supergroup", "title": "Дом"}
    assert chat.post(group).status_code == 200
    drain(client)
    assert api.sent(-100123) == []


# --------------------------------------------------------------------------
# Faults: what the customer ends up receiving
# --------------------------------------------------------------------------


def test_the_same_update_delivered_three_times_is_answered_once(
    client: TestClient, api: FakeBotApi
) -> None:
    chat = TelegramChat(client, api)
    update = message_update(chat.chat_id, "как оплатить")
    for _ in range(3):
        assert chat.post(update).status_code == 200
    drain(client)
    wait_all_sent(client, api, chat)
    assert inbox_count(client, chat) == 1
    replies = outbox_rows(client, chat)
    assert replies
    assert api.texts(chat.chat_id) == [body["text"] for _, body in replies]
    # A button press delivered twice is answered once too.
    other = TelegramChat(client, api)
    other.say("привет")
    press = other.press_update("Контакты")
    before = len(api.sent(other.chat_id))
    assert other.post(press).status_code == 200
    assert other.post(press).status_code == 200
    drain(client)
    wait_all_sent(client, api, other)
    assert len(api.sent(other.chat_id)) == before + 1
    assert inbox_count(client, other) == 2


def test_429_with_retry_after_then_500_the_reply_arrives_once(
    client: TestClient, api: FakeBotApi
) -> None:
    chat = TelegramChat(client, api)
    # Then a proxy's HTML error page: not even the Bot API's JSON.
    api.fail("sendMessage", TOO_MANY_REQUESTS, INTERNAL_ERROR, BAD_GATEWAY_PAGE)
    assert chat.post(message_update(chat.chat_id, "здравствуйте")).status_code == 200
    api.wait_texts(chat.chat_id, 1)
    wait_all_sent(client, api, chat)
    tries = [c for c in api.calls("sendMessage") if str(c.params["chat_id"]) == str(chat.chat_id)]
    assert [c.ok for c in tries] == [False, False, False, True]
    assert len({c.params["text"] for c in tries}) == 1
    assert api.texts(chat.chat_id)[0].startswith("Здравствуйте")


def test_a_blocked_bot_fails_the_delivery_at_once(client: TestClient, api: FakeBotApi) -> None:
    chat = TelegramChat(client, api)
    api.fail("sendMessage", BOT_BLOCKED)
    assert chat.post(message_update(chat.chat_id, "привет")).status_code == 200
    drain(client)
    api.wait_for(
        lambda: [s for s, _ in outbox_rows(client, chat)] == [DeliveryStatus.FAILED],
        what="the row failed",
    )
    assert api.sent(chat.chat_id) == []


def test_the_bot_api_unreachable_for_a_while_replies_arrive_in_order(
    client: TestClient, api: FakeBotApi
) -> None:
    chat = TelegramChat(client, api)
    api.go_down()
    try:
        for text in ("привет", "как оплатить", "где ваш офис"):
            assert chat.post(message_update(chat.chat_id, text)).status_code == 200
        drain(client)
        assert api.sent(chat.chat_id) == []
    finally:
        api.come_back()
    wait_all_sent(client, api, chat)
    expected = [body["text"] for _, body in outbox_rows(client, chat)]
    assert len(expected) >= 3
    assert api.texts(chat.chat_id) == expected
    assert api.texts(chat.chat_id)[0].startswith("Здравствуйте")


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


def test_telegram_is_off_without_a_token_and_webhook_mode_needs_a_secret(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}"
    assert TelegramAdapter.from_settings(make_settings(url)) is None
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        make_settings(url, telegram_bot_token=TOKEN, public_base_url="https://bot.example")
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        make_settings(
            url,
            telegram_bot_token=TOKEN,
            public_base_url="https://bot.example",
            telegram_webhook_secret="not allowed spaces",
        )
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN"):
        TelegramAdapter.from_settings(make_settings(url, telegram_bot_token="not-a-token"))
    polling = TelegramAdapter.from_settings(make_settings(url, telegram_bot_token=TOKEN))
    assert polling is not None
    assert not polling.webhook_mode


# --------------------------------------------------------------------------
# Long polling (no public URL)
# --------------------------------------------------------------------------


def test_without_a_public_url_the_bot_long_polls_and_answers(
    tmp_path: Path, nlu_model_path: Path
) -> None:
    api = FakeBotApi().start()
    try:
        settings = telegram_settings(
            tmp_path, nlu_model_path, api, public_base_url=None, telegram_webhook_secret=None
        )
        api.fail("getUpdates", INTERNAL_ERROR)  # a bad moment first: polling goes on
        app = create_app(settings, Container(settings, delivery_policy=FAST_DELIVERY))
        with TestClient(app) as client:
            chat = TelegramChat(client, api)
            assert chat.post(message_update(chat.chat_id, "привет")).status_code == 404
            update = message_update(chat.chat_id, "привет")
            api.push_update(update)
            (hello,) = api.wait_texts(chat.chat_id, 1)
            assert hello.startswith("Здравствуйте")
            # The update is confirmed only after it was accepted.
            api.wait_for(
                lambda: any(
                    int(c.params.get("offset") or 0) == update["update_id"] + 1
                    for c in api.calls("getUpdates")
                ),
                what="the update confirmed",
            )
            # Pressing a button works the same way as through the webhook.
            api.push_update(chat.press_update("Контакты"))
            api.wait_texts(chat.chat_id, 2)
            api.wait_for(lambda: bool(api.calls("answerCallbackQuery")), what="the press answered")
            # Delivered again (say, before a restart confirmed it): not answered twice.
            api.push_update({**update, "update_id": update["update_id"] + 10_000})
            api.wait_for(
                lambda: any(
                    int(c.params.get("offset") or 0) == update["update_id"] + 10_001
                    for c in api.calls("getUpdates")
                ),
                what="the redelivery confirmed",
            )
            drain(client)
            assert len(api.sent(chat.chat_id)) == 2
        assert api.calls("deleteWebhook")
        assert not api.calls("setWebhook")
        first_poll = api.calls("getUpdates")[0].params
        assert first_poll["allowed_updates"] == ["message", "edited_message", "callback_query"]
    finally:
        api.stop()


# --------------------------------------------------------------------------
# The phone keyboard and attachments, beyond the transcript
# --------------------------------------------------------------------------


def test_ask_contact_travels_with_the_reply_and_other_channels_see_no_change() -> None:
    asked = Reply("Телефон?", (Button("Без телефона", "/x"),), ask_contact=True)
    assert Reply.from_json(asked.to_json()) == asked
    plain_reply = Reply("Привет", (Button("Да", "/affirm"),))
    assert "ask_contact" not in plain_reply.to_json()
    assert Reply.from_json(plain_reply.to_json()).ask_contact is False


def test_a_connection_request_asks_the_phone_with_the_share_contact_keyboard(
    client: TestClient, api: FakeBotApi
) -> None:
    chat = TelegramChat(client, api)
    chat.say("хочу подключить дом к теплосети")
    chat.say("Литовская 15")
    chat.press("Частный дом")
    (phone,) = chat.say("0,05")
    assert "телефон" in phone.lower()
    keyboard = api.sent(chat.chat_id)[-1].params["reply_markup"]
    assert keyboard["keyboard"] == [[{"text": "📱 Отправить мой номер", "request_contact": True}]]
    (check,) = chat.share_contact("+7 910 123-45-67")
    assert "+7 *** ***-**-67" in check


def test_a_photo_outside_an_appeal_is_not_taken_and_one_at_the_confirmation_is(
    client: TestClient, api: FakeBotApi
) -> None:
    chat = TelegramChat(client, api)
    (not_now,) = chat.send_photo("AgACPhotoNoForm")
    assert "текстом" in not_now
    chat.say("хочу подать жалобу")
    chat.press("Качество отопления")
    chat.say("В квартире плохо греют батареи уже неделю")
    # The keyboard's other key types its title, as the customer would.
    (check,) = chat.say("Без телефона")
    assert "Отправляем?" in check
    assert "Вложения" not in check
    texts = chat.deliver(
        message_update(
            chat.chat_id,
            document={
                "file_id": "BQACDoc1",
                "file_unique_id": "d1",
                "file_name": "акт.pdf",
                "mime_type": "application/pdf",
            },
        )
    )
    assert "Вложения: 1" in texts[-1]
    (registered,) = chat.press("Да")
    number = registered.split("номер ", 1)[1].split(".", 1)[0]
    rows = run_db(
        client,
        select(AppealAttachment.kind, AppealAttachment.file_id, AppealAttachment.mime_type)
        .join(Appeal, Appeal.id == AppealAttachment.appeal_id)
        .where(Appeal.number == number),
    )
    assert [tuple(r) for r in rows] == [("document", "BQACDoc1", "application/pdf")]


def test_a_turn_not_committed_in_time_gets_503_and_its_redelivery_is_answered_once(
    tmp_path: Path, nlu_model_path: Path, api: FakeBotApi
) -> None:
    """Another process holds the chat's lock: Telegram is asked to retry, and
    the message it had already sent is answered once, when the lock is free."""
    settings = telegram_settings(tmp_path, nlu_model_path, api, telegram_ack_timeout_seconds=0.5)
    app = create_app(settings, Container(settings, delivery_policy=FAST_DELIVERY))
    with TestClient(app) as client:
        chat = TelegramChat(client, api)
        update = message_update(chat.chat_id, "привет")
        container = container_of(client)
        held = container.locks.conversation("telegram", chat.stored_id)
        assert client.portal is not None
        with client.portal.wrap_async_context_manager(held):
            assert chat.post(update).status_code == 503
            assert api.sent(chat.chat_id) == []
        drain(client)  # the first delivery's turn goes on once the lock is free
        assert chat.post(update).status_code == 200  # Telegram's retry: a duplicate
        drain(client)
        wait_all_sent(client, api, chat)
        assert len(api.sent(chat.chat_id)) == len(outbox_rows(client, chat)) == 1
        assert inbox_count(client, chat) == 1


# --------------------------------------------------------------------------
# Our own pacing within the Bot API's limits
# --------------------------------------------------------------------------


def known_chats(adapter: TelegramAdapter, *telegram_ids: int) -> list[str]:
    """The stored chat ids of chats whose address the adapter holds, as after
    a message from each (these tests run the adapter without the app)."""
    chats = [adapter.chat_id_for(t) for t in telegram_ids]
    adapter._addresses.update(zip(chats, telegram_ids, strict=True))
    return chats


async def test_sends_keep_within_the_per_chat_and_overall_limits(
    api: FakeBotApi, tg_settings: Settings
) -> None:
    slow = tg_settings.model_copy(
        update={
            "telegram_chat_rate_per_second": 0.01,
            "telegram_chat_burst": 1,
            "telegram_global_rate_per_second": 0.01,
            "telegram_global_burst": 3,
        }
    )
    adapter = TelegramAdapter.from_settings(slow)
    assert adapter is not None
    first, second, third, fourth = known_chats(adapter, 7001, 7002, 7003, 7004)
    try:
        await adapter.send(first, Reply("Первое"))
        with pytest.raises(RetryAfter) as too_soon:
            await adapter.send(first, Reply("Второе"))
        # Too long to wait in the send: the worker reschedules the reply.
        assert too_soon.value.retry_after > MAX_PACE_SECONDS
        await adapter.send(second, Reply("Другой чат"))  # its own bucket
        await adapter.send(third, Reply("Третий чат"))
        with pytest.raises(RetryAfter):
            await adapter.send(fourth, Reply("Сверх общего предела"))
    finally:
        await adapter.close()
    assert api.texts(7001) == ["Первое"]
    assert api.texts(7002) == ["Другой чат"]
    assert api.texts(7004) == []


async def test_a_short_wait_for_the_limit_is_slept_not_rescheduled(
    api: FakeBotApi, tg_settings: Settings
) -> None:
    brisk = tg_settings.model_copy(
        update={"telegram_chat_rate_per_second": 20.0, "telegram_chat_burst": 1}
    )
    adapter = TelegramAdapter.from_settings(brisk)
    assert adapter is not None
    (chat,) = known_chats(adapter, 7101)
    try:
        for n in range(3):
            await adapter.send(chat, Reply(f"Сообщение {n}"))
    finally:
        await adapter.close()
    assert api.texts(7101) == ["Сообщение 0", "Сообщение 1", "Сообщение 2"]
