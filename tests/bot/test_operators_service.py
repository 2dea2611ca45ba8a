"""The operator service: who answers the customer, the queue, assignment,
take/reply/transfer/return/resolve, events, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.base import InlineChannel
from bot.container import build_locks
from bot.conversations import ConversationService
from bot.operators.service import (
    AlreadyTaken,
    EmptyText,
    NotOwner,
    OperatorService,
    OperatorUnavailable,
)
from config import Settings, load_settings
from nlu.embedded import EmbeddedNluParser, train_model
from storage.crypto import PersonalDataVault
from storage.demo_data import load_demo_data
from storage.locks import MemoryLockStore
from storage.models import (
    ConversationStatus,
    HandoffOutcome,
    HandoffQueueEntry,
    HandoffStatus,
    Message,
    NpsResponse,
    Operator,
    Owner,
    Presence,
    Sender,
)
from storage.pubsub import MemoryPubSub
from tests.bot.operators_support import Desk, both, make_desk
from tests.harness import DEFAULT_NOW, Clock

JOINED = "Оператор {} подключился к разговору."


@pytest.fixture(scope="module")
def nlu_parser() -> EmbeddedNluParser:
    return EmbeddedNluParser(train_model(), load_settings().nlu_fallback_threshold)


@pytest.fixture
async def desk(
    db_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    vault: PersonalDataVault,
    nlu_parser: EmbeddedNluParser,
) -> Desk:
    async with session_factory() as session:
        assert await load_demo_data(session, vault, db_settings, DEFAULT_NOW)
    return await make_desk(db_settings, session_factory, vault, nlu_parser, Clock(DEFAULT_NOW))


async def test_the_bot_stays_silent_while_an_operator_owns_the_chat(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна", online=True)
    chat = desk.customer("c1")
    await chat.say("позовите оператора")
    # Anna was free: the chat went to her at once, and the customer was told.
    conv = await desk.conversation(chat)
    assert (conv.owner, conv.owner_operator_id) == (Owner.OPERATOR, anna)
    assert conv.status is ConversationStatus.OPERATOR
    assert (await desk.sees(chat))[-1] == JOINED.format("Анна")
    desk.events.clear()

    await chat.say("сколько я должен")
    await chat.say("помогите")
    assert chat.texts == []
    assert await desk.sees(chat) == []
    view = await desk.ops.chat(conv.id)
    assert [line.text for line in view.messages[-2:]] == ["сколько я должен", "помогите"]
    assert view.messages[-1].sender == "customer"
    events = await desk.settled_events()
    assert {"type": "message", "owner_operator_id": anna} in [
        {"type": e["type"], "owner_operator_id": e["owner_operator_id"]} for e in events
    ]

    await desk.ops.reply(anna, conv.id, "Здравствуйте, смотрю ваш счёт")
    assert await desk.sees(chat) == ["Здравствуйте, смотрю ваш счёт"]
    async with desk.sessions() as s:
        last = await s.scalar(select(Message).order_by(Message.id.desc()).limit(1))
    assert last is not None
    assert (last.sender, last.operator_id) == (Sender.OPERATOR, anna)


async def test_a_second_operator_can_neither_reply_nor_take(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна")
    boris = await desk.operator("boris", "Борис")
    chat = desk.customer("c1")
    await chat.say("соедините с оператором")
    conv_id = await desk.conv_id(chat)
    await desk.ops.take(anna, conv_id)
    with pytest.raises(NotOwner) as not_owner:
        await desk.ops.reply(boris, conv_id, "Добрый день")
    assert not_owner.value.owner_operator_id == anna
    with pytest.raises(AlreadyTaken):
        await desk.ops.take(boris, conv_id)
    with pytest.raises(NotOwner):
        await desk.ops.resolve(boris, conv_id)
    with pytest.raises(NotOwner):
        await desk.ops.return_to_bot(boris, conv_id)
    with pytest.raises(EmptyText):
        await desk.ops.reply(anna, conv_id, "   ")
    await desk.ops.take(anna, conv_id)  # one's own chat: nothing changes
    assert (await desk.sees(chat)).count(JOINED.format("Анна")) == 1


async def test_a_reply_takes_a_queued_chat_and_marks_the_first_response(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна")  # offline: nothing is assigned
    chat = desk.customer("c1")
    await chat.say("позовите оператора")
    conv_id = await desk.conv_id(chat)
    assert (await desk.conversation(chat)).owner is Owner.QUEUE
    await desk.look(chat)

    desk.clock.advance(timedelta(minutes=2))
    await desk.ops.reply(anna, conv_id, "Слушаю вас")
    assert await desk.sees(chat) == [JOINED.format("Анна"), "Слушаю вас"]
    [entry] = await desk.entries(chat)
    assert entry.status is HandoffStatus.TAKEN
    assert entry.operator_id == anna
    assert entry.first_response_at == DEFAULT_NOW + timedelta(minutes=2)
    desk.clock.advance(timedelta(minutes=1))
    await desk.ops.reply(anna, conv_id, "Ещё момент")
    [entry] = await desk.entries(chat)
    assert entry.first_response_at == DEFAULT_NOW + timedelta(minutes=2)
    assert [c.conversation_id for c in await desk.ops.chats_of(anna)] == [conv_id]


async def test_queue_order_is_priority_then_waiting_time(desk: Desk) -> None:
    chats = [desk.customer(f"c{n}") for n in range(3)]
    for n, chat in enumerate(chats):
        desk.clock.set(DEFAULT_NOW + timedelta(minutes=n))
        await chat.say("позовите оператора")
    urgent = await desk.conv_id(chats[2])
    async with desk.sessions() as s:
        await s.execute(
            update(HandoffQueueEntry)
            .where(HandoffQueueEntry.conversation_id == urgent)
            .values(priority=2)
        )
        await s.commit()
    ids = [await desk.conv_id(c) for c in chats]
    queue = await desk.ops.queue()
    assert [q.conversation_id for q in queue] == [ids[2], ids[0], ids[1]]
    assert [q.position for q in queue] == [1, 2, 3]
    assert queue[1].reason == "customer_request"

    # One operator with room for two: the urgent chat, then the longest waiting.
    anna = await desk.operator("anna", "Анна", capacity=2)
    await desk.ops.set_presence(anna, Presence.ONLINE)
    assert sorted(c.conversation_id for c in await desk.ops.chats_of(anna)) == sorted(
        [ids[2], ids[0]]
    )
    assert [q.conversation_id for q in await desk.ops.queue()] == [ids[1]]


async def test_new_chats_go_to_the_least_busy_operator(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна", online=True)
    desk.clock.advance(timedelta(seconds=1))
    boris = await desk.operator("boris", "Борис", online=True)
    owners = []
    for n in range(4):
        chat = desk.customer(f"c{n}")
        await chat.say("оператор")
        owners.append((await desk.conversation(chat)).owner_operator_id)
    # Tied at first: the one online the longest; then whoever has fewer chats.
    assert owners == [anna, boris, anna, boris]


async def test_capacity_is_respected_and_the_backlog_drains_when_it_frees(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна", online=True, capacity=1)
    first, second = desk.customer("c1"), desk.customer("c2")
    await first.say("позовите оператора")
    await second.say("позовите оператора")
    assert (await desk.conversation(first)).owner_operator_id == anna
    assert (await desk.conversation(second)).owner is Owner.QUEUE
    assert "Ваше место в очереди: 1." in second.last_text
    await desk.look(second)

    await desk.ops.resolve(anna, await desk.conv_id(first))
    # Her place freed: the waiting chat is hers now, and its customer told.
    conv = await desk.conversation(second)
    assert (conv.owner, conv.owner_operator_id) == (Owner.OPERATOR, anna)
    assert await desk.sees(second) == [JOINED.format("Анна")]
    assert await desk.ops.queue() == []


async def test_the_default_capacity_is_a_setting(
    db_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    vault: PersonalDataVault,
    nlu_parser: EmbeddedNluParser,
) -> None:
    async with session_factory() as session:
        assert await load_demo_data(session, vault, db_settings, DEFAULT_NOW)
    settings = db_settings.model_copy(update={"operator_capacity": 2})
    desk = await make_desk(settings, session_factory, vault, nlu_parser, Clock(DEFAULT_NOW))
    anna = await desk.operator("anna", "Анна", online=True)
    for n in range(3):
        await desk.customer(f"c{n}").say("оператор")
    assert len(await desk.ops.chats_of(anna)) == 2
    assert len(await desk.ops.queue()) == 1


async def test_coming_online_drains_the_backlog_and_away_takes_none(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна")
    chats = [desk.customer(f"c{n}") for n in range(4)]
    for chat in chats:
        await chat.say("оператор")
    await desk.ops.set_presence(anna, Presence.AWAY)
    assert len(await desk.ops.queue()) == 4
    await desk.ops.set_presence(anna, Presence.ONLINE)
    assert len(await desk.ops.chats_of(anna)) == 3  # the default capacity
    assert len(await desk.ops.queue()) == 1
    [member] = await desk.ops.team()
    assert (member.operator_id, member.presence, member.chats, member.capacity) == (
        anna,
        Presence.ONLINE,
        3,
        3,
    )
    events = await desk.settled_events()
    assert {"type": "presence", "operator_id": anna, "presence": "online"} in [
        {k: e[k] for k in ("type", "operator_id", "presence")} for e in events
    ]


async def test_the_customer_is_told_their_place_and_can_ask_again(desk: Desk) -> None:
    first, second = desk.customer("c1"), desk.customer("c2")
    await first.say("позовите оператора")
    await second.say("позовите оператора")
    assert second.texts[-1] == (
        "Ваше место в очереди: 2. Если вопрос решится раньше, напишите «отмена»."
    )
    await second.say("сколько ещё ждать в очереди?")
    assert second.texts == [
        "Вы в очереди, ваше место: 2. Оператор ответит здесь же. "
        "Если вопрос уже решён, напишите «отмена»."
    ]
    await first.press("Выйти из очереди")
    assert first.texts == ["Хорошо, вызов оператора отменил. Чем могу помочь?"]
    await second.say("какое у меня место в очереди")
    assert "ваше место: 1" in second.last_text
    assert [q.conversation_id for q in await desk.ops.queue()] == [await desk.conv_id(second)]


async def test_leaving_the_queue_with_the_button(desk: Desk) -> None:
    chat = desk.customer("c1")
    await chat.say("позовите оператора")
    await chat.press("Выйти из очереди")
    assert chat.texts == ["Хорошо, вызов оператора отменил. Чем могу помочь?"]
    conv = await desk.conversation(chat)
    assert (conv.owner, conv.status) == (Owner.BOT, ConversationStatus.BOT)
    [entry] = await desk.entries(chat)
    assert (entry.status, entry.outcome) == (HandoffStatus.CLOSED, HandoffOutcome.LEFT)
    await chat.say("привет")
    assert chat.last_text.startswith("Здравствуйте")
    # An operator coming online later finds nothing to take.
    anna = await desk.operator("anna", "Анна", online=True)
    assert await desk.ops.chats_of(anna) == []
    events = await desk.settled_events()
    assert [e["type"] for e in events].count("queue") >= 2  # joined, left


async def test_return_to_the_bot(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна", online=True)
    chat = desk.customer("c1")
    await chat.link()
    await chat.say("оператор")
    conv_id = await desk.conv_id(chat)
    await desk.look(chat)
    await desk.ops.reply(anna, conv_id, "вернуть боту")
    assert await desk.sees(chat) == ["Оператор передал разговор мне. Чем ещё могу помочь?"]
    conv = await desk.conversation(chat)
    assert (conv.owner, conv.owner_operator_id) == (Owner.BOT, None)
    [entry] = await desk.entries(chat)
    assert (entry.status, entry.outcome) == (HandoffStatus.CLOSED, HandoffOutcome.RETURNED)
    await chat.say("сколько я должен")
    assert "1002003001" in chat.last_text  # the bot answers again
    with pytest.raises(NotOwner):
        await desk.ops.resolve(anna, conv_id)  # it is the bot's now


async def test_transfer_to_another_operator(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна", online=True)
    boris = await desk.operator("boris", "Борис")
    chat = desk.customer("c1")
    await chat.say("оператор")
    conv_id = await desk.conv_id(chat)
    await desk.look(chat)
    with pytest.raises(OperatorUnavailable):
        await desk.ops.transfer(anna, conv_id, boris)  # offline
    await desk.ops.set_presence(boris, Presence.AWAY)
    await desk.ops.transfer(anna, conv_id, boris)
    assert await desk.sees(chat) == ["Разговор передан оператору Борис, он ответит здесь же."]
    assert (await desk.conversation(chat)).owner_operator_id == boris
    assert await desk.ops.chats_of(anna) == []
    with pytest.raises(NotOwner):
        await desk.ops.reply(anna, conv_id, "это я")
    await desk.ops.reply(boris, conv_id, "Здравствуйте, это Борис")
    [entry] = await desk.entries(chat)
    assert entry.operator_id == boris


async def test_resolve_asks_nps_and_stores_the_answer(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна", online=True)
    chat = desk.customer("c1")
    await chat.say("оператор")
    conv_id = await desk.conv_id(chat)
    await desk.ops.reply(anna, conv_id, "Готово, перерасчёт сделан")
    await desk.look(chat)
    await desk.ops.resolve(anna, conv_id)
    seen = await desk.sees(chat)
    assert seen[0] == "Оператор завершил разговор. Спасибо, что написали нам."
    assert "от 0 до 10" in seen[1]
    await chat.say("11")
    assert chat.texts == ["Нужна оценка числом от 0 до 10."]
    await chat.say("9")
    assert "что нам стоит улучшить" in chat.last_text
    assert chat.button_titles == ["Пропустить"]
    await chat.say("Всё быстро, спасибо Анне. Мой номер +7 910 555-12-34")
    assert chat.texts == ["Спасибо, ваш ответ записан. Если понадобится что-то ещё, пишите."]
    [entry] = await desk.entries(chat)
    async with desk.sessions() as s:
        [answer] = (await s.scalars(select(NpsResponse))).all()
    assert (answer.score, answer.operator_id, answer.handoff_id) == (9, anna, entry.id)
    assert answer.comment is not None
    assert answer.comment.startswith("Всё быстро")
    assert "555" not in answer.comment
    assert (entry.status, entry.outcome) == (HandoffStatus.CLOSED, HandoffOutcome.RESOLVED)
    await chat.say("сколько я должен")
    assert "лицевой счёт" in chat.last_text  # the bot again


async def test_the_card_has_the_summary_details_and_notes(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна")
    chat = desk.customer("c1")
    await chat.link()
    await chat.say("передать показания")
    await chat.say("отопление")
    await chat.say("позовите оператора")
    conv_id = await desk.conv_id(chat)
    [item] = await desk.ops.queue()
    assert item.details["account"] == "1002003001"
    assert item.details["topic"] == "submit_reading"
    [form] = item.details["forms"]
    assert form["name"] == "submit_reading"
    assert "Клиент: позовите оператора" in item.summary
    await desk.ops.add_note(anna, conv_id, "Клиент просил перезвонить на 8 910 555-12-34")
    view = await desk.ops.chat(conv_id)
    assert view.owner is Owner.QUEUE
    assert view.queue_position == 1
    assert view.account_number == "1002003001"
    assert view.desk_topic_id is None
    assert view.entry is not None
    assert view.entry.reason == "customer_request"
    assert [n.text for n in view.notes] == ["Клиент просил перезвонить на [телефон скрыт]"]
    assert view.notes[0].operator_name == "Анна"
    assert {line.sender for line in view.messages} == {"customer", "bot"}
    # The note is the operators' only: nothing reached the customer.
    assert not any("перезвонить" in line.text for line in view.messages)


async def test_an_operator_can_take_a_chat_the_bot_has(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна")
    chat = desk.customer("c1")
    await chat.say("сколько стоит отопление")
    conv_id = await desk.conv_id(chat)
    await desk.look(chat)
    await desk.ops.take(anna, conv_id)
    assert await desk.sees(chat) == [JOINED.format("Анна")]
    [entry] = await desk.entries(chat)
    assert (entry.reason, entry.status, entry.operator_id) == (
        "operator",
        HandoffStatus.TAKEN,
        anna,
    )
    await chat.say("алло")
    assert chat.texts == []


async def test_out_of_hours_an_emergency_reaches_the_queue(desk: Desk) -> None:
    # Saturday 28 November 2026, 21:00 Moscow: closed.
    desk.clock.set(datetime(2026, 11, 28, 18, 0, tzinfo=UTC))
    chat = desk.customer("c1")
    await chat.say("у нас прорвало трубу, позовите оператора")
    assert "аварийные обращения мы принимаем круглосуточно" in chat.last_text
    conv = await desk.conversation(chat)
    assert conv.owner is Owner.QUEUE
    [item] = await desk.ops.queue()
    assert (item.reason, item.priority) == ("emergency", 2)
    # An ordinary request out of hours keeps the core's behaviour.
    other = desk.customer("c2")
    await other.say("позовите оператора")
    assert "Заявка на обратный звонок" in other.last_text
    assert (await desk.conversation(other)).owner is Owner.BOT
    # The on-duty operator gets the emergency first.
    anna = await desk.operator("anna", "Анна", capacity=1)
    await desk.ops.set_presence(anna, Presence.ONLINE)
    assert [c.conversation_id for c in await desk.ops.chats_of(anna)] == [conv.id]


async def test_two_takes_at_once_one_wins(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна")
    boris = await desk.operator("boris", "Борис")
    chat = desk.customer("c1")
    await chat.say("оператор")
    conv_id = await desk.conv_id(chat)
    errors = await both(desk.ops.take(anna, conv_id), desk.ops.take(boris, conv_id))
    assert sorted(type(e).__name__ for e in errors if e is not None) == ["AlreadyTaken"]
    winner = anna if errors[0] is None else boris
    assert (await desk.conversation(chat)).owner_operator_id == winner
    joined = [t for t in await desk.sees(chat) if "подключился" in t]
    assert len(joined) == 1


@pytest.mark.postgres
async def test_two_processes_taking_at_once_one_wins(
    db_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    vault: PersonalDataVault,
    nlu_parser: EmbeddedNluParser,
) -> None:
    """No shared lock (two processes whose Redis is gone, say): the
    conditional UPDATE alone lets exactly one operator claim the chat."""
    if db_settings.is_sqlite:
        pytest.skip("two writers at once: PostgreSQL")
    async with session_factory() as session:
        assert await load_demo_data(session, vault, db_settings, DEFAULT_NOW)
    desk = await make_desk(db_settings, session_factory, vault, nlu_parser, Clock(DEFAULT_NOW))
    # The second process: its own locks, its own conversation service.
    second = OperatorService(
        ConversationService(
            db_settings,
            session_factory,
            MemoryLockStore(),
            desk.pubsub,
            channels={"test": InlineChannel("test")},
            clock=desk.clock,
        ),
        MemoryLockStore(),
        clock=desk.clock,
    )
    anna = await desk.operator("anna", "Анна")
    boris = await desk.operator("boris", "Борис")
    for n in range(5):
        chat = desk.customer(f"c{n}")
        await chat.say("оператор")
        conv_id = await desk.conv_id(chat)
        errors = await both(desk.ops.take(anna, conv_id), second.take(boris, conv_id))
        assert [type(e).__name__ for e in errors if e is not None] == ["AlreadyTaken"], errors
        winner = anna if errors[0] is None else boris
        conv = await desk.conversation(chat)
        assert (conv.owner, conv.owner_operator_id) == (Owner.OPERATOR, winner)
        joined = [t for t in await desk.sees(chat) if "подключился" in t]
        assert len(joined) == 1
        [entry] = await desk.entries(chat)
        assert entry.operator_id == winner


async def test_going_offline_hands_the_chats_back_to_the_queue(desk: Desk) -> None:
    anna = await desk.operator("anna", "Анна", online=True)
    chat = desk.customer("c1")
    await chat.say("оператор")
    await desk.look(chat)
    boris = await desk.operator("boris", "Борис", capacity=1)
    await desk.ops.set_presence(anna, Presence.OFFLINE)
    assert await desk.sees(chat) == [
        "Оператор отключился, передаю разговор следующему свободному оператору. "
        "Ваше место в очереди: 1."
    ]
    conv = await desk.conversation(chat)
    assert conv.owner is Owner.QUEUE
    [entry] = await desk.entries(chat)
    assert entry.status is HandoffStatus.WAITING
    await desk.ops.set_presence(boris, Presence.ONLINE)
    assert (await desk.conversation(chat)).owner_operator_id == boris
    assert await desk.sees(chat) == [JOINED.format("Борис")]


@pytest.mark.postgres
async def test_two_processes_draining_at_once_respect_capacity(
    db_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    vault: PersonalDataVault,
    nlu_parser: EmbeddedNluParser,
    redis_url: str,
) -> None:
    """Two processes drain at once (their locks in Redis): one operator with
    room for one chat gets one, not one from each (both offer the queue's
    head; the one that loses the take reads the loads again)."""
    if db_settings.is_sqlite:
        pytest.skip("two processes share PostgreSQL and Redis")
    async with session_factory() as session:
        assert await load_demo_data(session, vault, db_settings, DEFAULT_NOW)
    settings = db_settings.model_copy(update={"redis_url": redis_url})
    clock = Clock(DEFAULT_NOW)
    processes = []
    stores = [build_locks(settings) for _ in range(3)]
    for locks in stores[:2]:
        conversations = ConversationService(
            settings,
            session_factory,
            locks,
            MemoryPubSub(),
            channels={"test": InlineChannel("test")},
            clock=clock,
        )
        processes.append(OperatorService(conversations, locks, clock=clock))
    desk = await make_desk(settings, session_factory, vault, nlu_parser, clock, locks=stores[2])
    for n in range(3):
        await desk.customer(f"c{n}").say("оператор")
    anna = await desk.operator("anna", "Анна", capacity=1)
    async with session_factory() as s:
        await s.execute(
            update(Operator).where(Operator.id == anna).values(presence=Presence.ONLINE)
        )
        await s.commit()
    try:
        assert await both(processes[0].drain(), processes[1].drain()) == [None, None]
        assert len(await desk.ops.chats_of(anna)) == 1
        assert len(await desk.ops.queue()) == 2
    finally:
        for store in stores:
            await store.close()
