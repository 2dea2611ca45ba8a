"""Appeal status notices reach the customer's chat once: from two processes
running the job at the same time, from the review deadline, for an appeal
filed without a chat, and on WhatsApp only when it may be sent."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from bot.app import create_app
from bot.container import Container
from bot.notices import AppealNotices, PassStats
from config import Settings
from handlers.appeals import NewAppeal, change_status, create_appeal
from storage.models import (
    Account,
    AccountLink,
    Appeal,
    AppealCategory,
    AppealStatus,
    AppealStatusChange,
    ChannelIdentity,
    Conversation,
    Message,
    Priority,
    Sender,
    Task,
    TaskKind,
)
from tests.bot.conftest import (
    Tab,
    app_settings_for,
    bot_texts,
    container_of,
    sid_of,
    two_app_processes,
)
from tests.bot.telegram_support import (
    FAST_DELIVERY,
    PUBLIC_URL,
    SECRET,
    TelegramChat,
    wait_delivered,
)
from tests.bot.test_whatsapp import ACCOUNT_SID, AUTH_TOKEN, twilio_overrides
from tests.bot.test_whatsapp import Customer as WhatsAppCustomer
from tests.conftest import shared_app_settings
from tests.fakes.telegram_api import TOKEN, FakeBotApi
from tests.fakes.twilio_api import FakeTwilio
from tests.harness import DEMO_ACCOUNT

T = TypeVar("T")

# Tests run the job themselves, or wait for the scheduler's short interval.
NO_SCHEDULE = 3600.0


def call(client: TestClient, fn: Callable[[], Awaitable[T]]) -> T:
    assert client.portal is not None
    return client.portal.call(fn)


async def conversation_id(container: Container, channel: str, chat_id: str) -> int:
    async with container.session_factory() as s:
        found = await s.scalar(
            select(Conversation.id).where(
                Conversation.channel == channel, Conversation.chat_id == chat_id
            )
        )
    assert found is not None
    return found


def conversation_made(client: TestClient, channel: str, chat_id: str) -> int:
    """The chat's conversation id, once its first turn (in either process) made it."""
    container = container_of(client)

    async def find() -> int | None:
        async with container.session_factory() as s:
            return await s.scalar(
                select(Conversation.id).where(
                    Conversation.channel == channel, Conversation.chat_id == chat_id
                )
            )

    wait_until(lambda: call(client, find) is not None, what="the conversation")
    found = call(client, find)
    assert found is not None
    return found


async def file_and_change(
    container: Container,
    status: AppealStatus,
    comment: str | None,
    *,
    conversation: int | None = None,
    account_id: int | None = None,
    at: datetime | None = None,
) -> str:
    """An appeal registered (in a chat, or for an account from the console)
    and then moved to ``status``, as the console does; its number."""
    now = at or datetime.now(UTC)
    async with container.conversations.transaction() as s:
        info = await create_appeal(
            s,
            container.vault,
            container.settings,
            NewAppeal(
                category=AppealCategory.HEATING_QUALITY,
                description="Холодные батареи в спальне",
                conversation_id=conversation,
                account_id=account_id,
            ),
            now,
        )
        if status is not AppealStatus.REGISTERED:
            appeal_id = await s.scalar(select(Appeal.id).where(Appeal.number == info.number))
            assert appeal_id is not None
            await change_status(s, appeal_id, status, comment, now)
        await s.commit()
    return info.number


async def system_texts(container: Container, channel: str, chat_id: str) -> list[str]:
    async with container.session_factory() as s:
        rows = await s.scalars(
            select(Message.text)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(
                Conversation.channel == channel,
                Conversation.chat_id == chat_id,
                Message.sender == Sender.SYSTEM,
            )
            .order_by(Message.id)
        )
        return list(rows)


async def overdue_tasks(container: Container) -> list[tuple[str, Priority]]:
    async with container.session_factory() as s:
        rows = await s.execute(
            select(Appeal.number, Appeal.priority)
            .join(Task, Task.appeal_id == Appeal.id)
            .where(Task.kind == TaskKind.APPEAL_OVERDUE)
        )
        return [(number, priority) for number, priority in rows]


async def pending_count(container: Container) -> int:
    async with container.session_factory() as s:
        return len(
            list(
                await s.scalars(
                    select(AppealStatusChange.id).where(AppealStatusChange.notified_at.is_(None))
                )
            )
        )


def wait_until(condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def at_once(*jobs: Callable[[], T]) -> list[T]:
    """Run the jobs in threads released together; their results in order."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int, job: Callable[[], T]) -> None:
        barrier.wait()
        try:
            results[i] = job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, j)) for i, j in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


# --------------------------------------------------------------------------
# Two processes on one PostgreSQL and Redis
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api() -> Iterator[FakeBotApi]:
    server = FakeBotApi().start()
    yield server
    server.stop()


@pytest.fixture
def shared_settings(nlu_model_path: Path, api: FakeBotApi) -> Iterator[Settings]:
    with shared_app_settings(
        "notices",
        nlu_model_path=nlu_model_path,
        load_demo_data=False,
        telegram_bot_token=TOKEN,
        telegram_webhook_secret=SECRET,
        telegram_api_base=api.base_url,
        public_base_url=PUBLIC_URL,
        notice_interval_seconds=NO_SCHEDULE,
    ) as settings:
        yield settings


@pytest.mark.postgres
@pytest.mark.redis
def test_two_workers_at_once_tell_each_customer_once_on_widget_and_telegram(
    shared_settings: Settings, api: FakeBotApi
) -> None:
    # A notice written while the other process sends the chat's previous one
    # waits behind it for the sweep (rows of a chat go out in order).
    with (
        two_app_processes(shared_settings, FAST_DELIVERY) as ((app_a, a), (app_b, b)),
        app_a.websocket_connect("/widget/ws") as ws,
    ):
        tab = Tab(ws).hello()
        # Answered by A, or on a loaded machine by B's start-up replay of the
        # inbox (its reply then reaches this socket later, through pub/sub).
        tab.say("здравствуйте")
        sid = sid_of(app_a, tab)
        telegram = TelegramChat(app_b, api)
        telegram.say("здравствуйте")
        tg_chat = telegram.chat_id

        web_conv = conversation_made(app_a, "webchat", sid)
        tg_conv = conversation_made(app_a, "telegram", telegram.stored_id)
        comment = "Передано инженеру участка"
        web_number = call(
            app_a,
            lambda: file_and_change(a, AppealStatus.IN_REVIEW, comment, conversation=web_conv),
        )
        tg_number = call(
            app_a,
            lambda: file_and_change(
                a, AppealStatus.RESOLVED, "Радиатор заменён", conversation=tg_conv
            ),
        )
        # Filed in Telegram 15 days ago and never touched: both deadlines passed.
        stale_number = call(
            app_a,
            lambda: file_and_change(
                a,
                AppealStatus.REGISTERED,
                None,
                conversation=tg_conv,
                at=datetime.now(UTC) - timedelta(days=15),
            ),
        )

        rounds: list[list[PassStats]] = []
        for _ in range(3):  # the same moment in both processes, and again later
            rounds.append(
                at_once(
                    lambda: call(app_a, a.notices.run_once),
                    lambda: call(app_b, b.notices.run_once),
                )
            )
        assert call(app_a, lambda: pending_count(a)) == 0
        passes = [s for r in rounds for s in r]
        assert sum(s.reviewed for s in passes) == 1
        assert sum(s.escalated for s in passes) == 1
        assert sum(s.sent for s in passes) == 3
        assert sum(s.sent for s in rounds[-1]) == 0  # the last round found nothing left
        assert call(app_a, lambda: overdue_tasks(a)) == [(stale_number, Priority.HIGH)]

        # The widget: the notice pushed to the socket, stored once, marked sent.
        texts = call(app_a, lambda: system_texts(a, "webchat", sid))
        assert len(texts) == 1
        assert texts[0].startswith(f"Обращение {web_number}: новый статус — «на рассмотрении».")
        assert f"Комментарий: {comment}" in texts[0]
        assert "Решение — до " in texts[0]
        assert message_with(ws, web_number) == texts[0]

        # Telegram: one sendMessage with the notice.
        wait_delivered(app_b, telegram.chat_id)
        expected = f"Обращение {tg_number}: новый статус — «решено».\nКомментарий: Радиатор заменён"
        api.wait_for(lambda: expected in api.texts(tg_chat), what="the Telegram notice")
        tg_texts = call(app_a, lambda: system_texts(a, "telegram", telegram.stored_id))
        assert len(tg_texts) == 2
        assert expected in tg_texts
        (stale,) = [t for t in tg_texts if stale_number in t]
        assert stale.startswith(f"Обращение {stale_number}: новый статус — «на рассмотрении».")
        for text in tg_texts:
            assert api.texts(tg_chat).count(text) == 1

        # The widget customer asks: the same status as the notice said.
        frames, _ = tab.say(f"статус обращения {web_number}")
        assert any("на рассмотрении" in t for t in bot_texts(frames))

        # The console asks for a pass at once after its change (no schedule here).
        async def answer_and_run_soon() -> str:
            number = await file_and_change(
                a, AppealStatus.ANSWERED, "Ответ направлен", conversation=web_conv
            )
            a.scheduler.run_soon()
            return number

        soon_number = call(app_a, answer_and_run_soon)
        wait_until(
            lambda: any(
                soon_number in t for t in call(app_a, lambda: system_texts(a, "webchat", sid))
            ),
            what="the notice of a pass run at once",
        )
        assert message_with(ws, soon_number).startswith(
            f"Обращение {soon_number}: новый статус — «дан ответ»."
        )


# --------------------------------------------------------------------------
# One embedded app (SQLite, demo data), the scheduler running every 0.2 s
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN).start()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, nlu_model_path: Path, twilio: FakeTwilio
) -> Iterator[TestClient]:
    settings = app_settings_for(
        tmp_path_factory.mktemp("notices"),
        nlu_model_path,
        notice_interval_seconds=0.2,
        twilio_templates={},  # WhatsApp without an approved reply template
        **twilio_overrides(twilio),
    )
    with TestClient(create_app(settings)) as client:
        yield client


def notice_reaches(client: TestClient, ws: Any, sid: str, number: str) -> str:
    """Wait for the scheduler to tell the widget of ``number``; the text."""
    container = container_of(client)

    def told() -> bool:
        return any(
            number in t for t in call(client, lambda: system_texts(container, "webchat", sid))
        )

    wait_until(told, what=f"the notice of {number}")
    return message_with(ws, number)


def message_with(ws: Any, needle: str) -> str:
    """The text of the next message frame on the socket that contains ``needle``
    (call once it is known to be sent: a socket read has no timeout)."""
    while True:
        frame = ws.receive_json()
        if frame.get("type") == "message" and needle in frame.get("text", ""):
            return str(frame["text"])


def test_the_review_deadline_moves_an_untouched_appeal_and_tells_the_customer(
    app: TestClient,
) -> None:
    container = container_of(app)
    with app.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        tab.say("здравствуйте")
        sid = sid_of(app, tab)
        conv = call(app, lambda: conversation_id(container, "webchat", sid))
        filed = datetime.now(UTC) - timedelta(hours=48, minutes=1)
        number = call(
            app,
            lambda: file_and_change(
                container, AppealStatus.REGISTERED, None, conversation=conv, at=filed
            ),
        )
        text = notice_reaches(app, ws, sid, number)
        assert text.split("\n")[:2] == [
            f"Обращение {number}: новый статус — «на рассмотрении».",
            "Комментарий: Обращение взято в работу.",
        ]
        frames, _ = tab.say(f"статус обращения {number}")
        assert any("на рассмотрении" in t for t in bot_texts(frames))

    async def status() -> AppealStatus:
        async with container.session_factory() as s:
            found = await s.scalar(select(Appeal.status).where(Appeal.number == number))
            assert found is not None
            return found

    assert call(app, status) is AppealStatus.IN_REVIEW
    assert call(app, lambda: system_texts(container, "webchat", sid)).count(text) == 1


def test_a_notice_of_an_appeal_without_a_chat_goes_to_the_linked_customer(
    app: TestClient,
) -> None:
    container = container_of(app)
    with app.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        tab.say("здравствуйте")
        sid = sid_of(app, tab)

        async def link() -> int:
            async with container.conversations.transaction() as s:
                account = await s.scalar(select(Account).where(Account.number == DEMO_ACCOUNT))
                identity = await s.scalar(
                    select(ChannelIdentity)
                    .join(Conversation, Conversation.identity_id == ChannelIdentity.id)
                    .where(Conversation.channel == "webchat", Conversation.chat_id == sid)
                )
                assert account is not None
                assert identity is not None
                s.add(
                    AccountLink(
                        identity_id=identity.id, account_id=account.id, linked_at=datetime.now(UTC)
                    )
                )
                await s.commit()
                return account.id

        account_id = call(app, link)
        # Registered from the console for the account: no conversation of its own.
        number = call(
            app,
            lambda: file_and_change(
                container, AppealStatus.ANSWERED, "Ответ направлен письмом", account_id=account_id
            ),
        )
        text = notice_reaches(app, ws, sid, number)
        assert text == (
            f"Обращение {number}: новый статус — «дан ответ».\nКомментарий: Ответ направлен письмом"
        )


def test_passes_running_at_once_in_one_process_tell_once(app: TestClient) -> None:
    container = container_of(app)
    with app.websocket_connect("/widget/ws") as ws:
        tab = Tab(ws).hello()
        tab.say("здравствуйте")
        sid = sid_of(app, tab)
        conv = call(app, lambda: conversation_id(container, "webchat", sid))
        number = call(
            app,
            lambda: file_and_change(
                container, AppealStatus.REJECTED, "Нарушений не выявлено", conversation=conv
            ),
        )
        # Two more workers beside the scheduler's own, started together.
        workers = [AppealNotices(container.settings, container.conversations) for _ in range(2)]

        async def together() -> list[PassStats]:
            return list(await asyncio.gather(*(w.send_pending() for w in workers)))

        call(app, together)
        text = notice_reaches(app, ws, sid, number)
        assert text == (
            f"Обращение {number}: новый статус — «отклонено».\nКомментарий: Нарушений не выявлено"
        )
        time.sleep(0.5)  # more scheduled passes
        assert call(app, lambda: system_texts(container, "webchat", sid)) == [text]


# --------------------------------------------------------------------------
# WhatsApp: outside the 24-hour window without a template the notice waits
# --------------------------------------------------------------------------


def age_whatsapp_chat(client: TestClient, chat_id: str, hours: float) -> None:
    async def age() -> None:
        async with container_of(client).conversations.transaction() as s:
            await s.execute(
                update(Conversation)
                .where(Conversation.channel == "whatsapp", Conversation.chat_id == chat_id)
                .values(last_customer_message_at=datetime.now(UTC) - timedelta(hours=hours))
            )
            await s.commit()

    call(client, age)


def test_a_whatsapp_notice_outside_the_window_waits_for_the_customer(
    app: TestClient, twilio: FakeTwilio
) -> None:
    container = container_of(app)
    me = WhatsAppCustomer(app, twilio)
    assert me.say("Здравствуйте")
    age_whatsapp_chat(app, me.chat_id, hours=25)
    conv = call(app, lambda: conversation_id(container, "whatsapp", me.chat_id))
    number = call(
        app,
        lambda: file_and_change(
            container, AppealStatus.IN_REVIEW, "Передано мастеру", conversation=conv
        ),
    )
    time.sleep(0.8)  # several passes of the scheduler
    # Not written, so not held for an operator (outside_window) either: pending.
    assert call(app, lambda: system_texts(container, "whatsapp", me.chat_id)) == []
    assert call(app, lambda: pending_count(container)) == 1

    # The customer writes again: the window is open, the waiting notice goes out.
    assert me.say("спасибо")
    wait_until(
        lambda: any(c.body and number in c.body for c in me.calls()), what="the WhatsApp notice"
    )
    sent = [c.body for c in me.calls() if c.body and number in c.body]
    assert len(sent) == 1
    lines = str(sent[0]).split("\n")
    assert lines[:2] == [
        f"Обращение {number}: новый статус — «на рассмотрении».",
        "Комментарий: Передано мастеру",
    ]
    assert lines[2].startswith("Решение — до ")
    assert call(app, lambda: pending_count(container)) == 0


def test_with_a_reply_template_a_whatsapp_notice_is_not_held_back(app: TestClient) -> None:
    """Outside the window with an approved template the notice is written
    (the adapter then sends it as the template: tests/bot/test_whatsapp.py)."""
    container = container_of(app)
    templated = AppealNotices(
        container.settings.model_copy(update={"twilio_templates": {"reply": "HX" + "0a" * 16}}),
        container.conversations,
    )
    now = datetime.now(UTC)

    async def silent_chat() -> tuple[str, int]:
        chat = f"wa-{uuid.uuid4().hex[:10]}"
        async with container.conversations.transaction() as s:
            identity = ChannelIdentity(channel="whatsapp", user_id=chat)
            s.add(identity)
            await s.flush()
            conv = Conversation(
                channel="whatsapp",
                chat_id=chat,
                identity_id=identity.id,
                state={},
                last_customer_message_at=now - timedelta(days=3),
            )
            s.add(conv)
            await s.commit()
            return chat, conv.id

    chat, conv = call(app, silent_chat)
    number = call(
        app, lambda: file_and_change(container, AppealStatus.IN_REVIEW, None, conversation=conv)
    )
    stats = call(app, templated.send_pending)
    assert stats.deferred == 0
    texts = call(app, lambda: system_texts(container, "whatsapp", chat))
    assert len(texts) == 1
    assert texts[0].startswith(f"Обращение {number}: новый статус — «на рассмотрении».")
