"""The operators' Telegram desk: one forum topic per escalated conversation.

On when ``OPERATOR_BOT_TOKEN`` and ``OPERATOR_CHAT_ID`` are set: a second bot
(python-telegram-bot), an admin of a supergroup with topics turned on. For each
conversation that reaches the operators' queue it opens a topic with the bot's
summary, and keeps it in step with the conversation: the customer's messages
are posted there, and so is every change of owner ("Чат взял Анна", from the
console or from the desk itself); once the chat is resolved or handed back
to the bot the topic says so and is closed.

What operators write in a topic goes through :class:`OperatorService`, the
same API and ownership rules as the web console: a message is a reply to the
customer on their channel (it takes a queued chat; a chat another operator
owns is refused), ``/resolve`` resolves it (the customer is asked the NPS
question), ``/bot`` hands it back to the bot. A Telegram user is an operator
only if an operator account carries their Telegram id (as a keyed hash:
``python -m bot operators ... --telegram-id``).

Keeping in step, once: every process hears the operator events (and the
conversation events of customer turns) and runs :meth:`TelegramDesk.sync` for
the conversation named. Under the desk's lock of that conversation, sync
compares the conversation with what its topic has shown
(``desk_topic_id``, ``desk_message_id``, ``desk_owner``) and posts only the
difference, so a topic is opened once and a message relayed once however many
processes listen; what nobody heard (no process was running) is caught up by
the sweep at start-up. Opening a topic is claimed in the database first
(``desk_topic_id`` 0 while it is being opened, a conditional UPDATE) besides
the lock.

Updates come by long polling (``getUpdates``), from one process at a time: the
one holding the desk's poller lock (Telegram refuses a second concurrent
``getUpdates``); another process takes over within the lock's TTL when it dies.

Personal data: texts and Telegram ids are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Final, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Message as TgMessage
from telegram import Update
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from bot.conversations import EVENTS_TOPIC, ConversationService
from bot.operators.service import (
    OPERATOR_EVENTS_TOPIC,
    AlreadyTaken,
    EmptyText,
    NotOwner,
    OperatorError,
    OperatorService,
    OperatorUnavailable,
    UnknownConversation,
)
from config import Settings
from config.settings import ConfigError
from handlers.operators import telegram_user_hash
from handlers.pii import redact_text
from storage.crypto import PersonalDataVault
from storage.errors import StorageUnavailable
from storage.locks import LockStore, LockTimeout
from storage.models import (
    ChannelIdentity,
    Conversation,
    HandoffOutcome,
    HandoffQueueEntry,
    Message,
    Operator,
    Owner,
    Sender,
)
from storage.pubsub import PubSub, Subscription
from storage.tasks import cancel_and_wait

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_API_BASE: Final = "https://api.telegram.org"
POLLER_LOCK: Final = "desk:poller"
TOPIC_NAME_CHARS: Final = 128  # Bot API limit of a forum topic's name
MESSAGE_CHARS: Final = 4096
RELAY_BATCH: Final = 50  # customer messages relayed per pass
SWEEP_LIMIT: Final = 500  # conversations caught up at start-up
MAX_RETRY_AFTER_SECONDS: Final = 60.0
# First and longest delay while the Bot API is away: at start, and for a sync.
START_RETRY_SECONDS: Final = (1.0, 30.0)
RETRY_SECONDS: Final = (1.0, 60.0)
OPENING: Final = 0  # desk_topic_id while a topic is being opened
# Who a topic hears: the customer, and operators writing elsewhere (the console).
RELAYED: Final = (Sender.CUSTOMER, Sender.OPERATOR)
_COMMAND: Final = re.compile(r"^/(?P<name>[A-Za-z_]+)(?:@\w+)?(?:\s|$)")


class Texts:
    """What operators read in the desk's group."""

    channels: Final[Mapping[str, str]] = {
        "webchat": "сайт",
        "telegram": "Telegram",
        "whatsapp": "WhatsApp",
    }
    topic_name = "№{id} · {channel} · {name}"
    no_name = "клиент"
    opened = (
        "Новый чат №{id} ({channel}).\n{summary}\n\n"
        "Ответьте здесь, чтобы взять чат. /resolve — решён, /bot — вернуть боту."
    )
    no_summary = "Бот не оставил сводки."
    customer = "Клиент: {text}"
    customer_attachment = "Клиент прислал вложение."
    operator = "{name}: {text}"
    taken = "Чат взял {name}"
    transferred = "Чат передан: {name}"
    requeued = "Чат снова в очереди"
    resolved = "Чат решён"
    returned = "Чат возвращён боту"
    left = "Клиент ушёл из очереди"
    closed = "Чат закрыт"
    unknown_operator = (
        "Вы не отмечены как оператор. Попросите администратора указать ваш Telegram ID "
        "в учётной записи."
    )
    not_owner = "Этот чат уже ведёт {name}."
    no_chat = "Этот чат уже закрыт."
    failed = "Не получилось, попробуйте ещё раз."
    account_off = "Ваша учётная запись оператора отключена."
    text_only = "Пока я передаю клиенту только текст."
    unknown_command = "Команды: /resolve — чат решён, /bot — вернуть чат боту."


def owner_marker(owner: Owner, operator_id: int | None) -> str:
    """``desk_owner`` for an owner: ``queue``, ``operator:<id>`` or ``bot``."""
    if owner is Owner.OPERATOR:
        return f"operator:{operator_id}"
    return owner.value


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A conversation as the desk compares it with its topic."""

    id: int
    channel: str
    owner: Owner
    owner_operator_id: int | None
    topic_id: int | None
    message_id: int | None
    shown_owner: str | None
    display_name: str | None

    @property
    def marker(self) -> str:
        return owner_marker(self.owner, self.owner_operator_id)

    @property
    def with_operators(self) -> bool:
        return self.owner in (Owner.QUEUE, Owner.OPERATOR)

    @property
    def in_step(self) -> bool:
        """Nothing to do unless a message came in (checked under the lock)."""
        if self.topic_id is None:
            return not self.with_operators
        return self.topic_id != OPENING and self.shown_owner == self.marker


def _event_conversation_id(raw: str) -> int | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("conversation_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)  # int vs timedelta
        value = exc.retry_after
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class TelegramDesk:
    """The desk's bot: topics in ``OPERATOR_CHAT_ID``, kept in step with the chats."""

    def __init__(
        self,
        settings: Settings,
        application: Application[Any, Any, Any, Any, Any, Any],
        *,
        chat_id: int,
        conversations: ConversationService,
        operators: OperatorService,
        locks: LockStore,
        pubsub: PubSub,
        vault: PersonalDataVault,
    ) -> None:
        self.settings = settings
        self.app = application
        self.chat_id = chat_id
        self._conversations = conversations
        self._sessions = conversations.sessions
        self._operators = operators
        self._locks = locks
        self._pubsub = pubsub
        self._vault = vault
        self._subscriptions: list[Subscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        # Conversations whose sync runs now, and those that changed meanwhile.
        self._syncing: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()
        self._retry_in: dict[int, float] = {}  # the next retry's delay, after a failure
        self._initialized = False
        self._ready = asyncio.Event()  # the bot is initialized: syncs may call it
        self._closed = False
        application.add_handler(
            MessageHandler(filters.Chat(chat_id) & filters.IS_TOPIC_MESSAGE, self._on_message)
        )
        application.add_error_handler(self._on_error)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        conversations: ConversationService,
        operators: OperatorService,
        locks: LockStore,
        pubsub: PubSub,
        vault: PersonalDataVault,
    ) -> TelegramDesk | None:
        token = settings.operator_bot_token
        if token is None or not token.get_secret_value():
            return None
        if settings.operator_chat_id is None:
            raise ConfigError(
                "OPERATOR_CHAT_ID must be set with OPERATOR_BOT_TOKEN: the id of the "
                "operators' supergroup (topics on, the bot an admin that may manage topics)"
            )
        base = (
            settings.operator_api_base or settings.telegram_api_base or DEFAULT_API_BASE
        ).rstrip("/")
        timeout = settings.telegram_request_timeout_seconds
        poll = settings.telegram_poll_timeout_seconds
        _hide_token_in(logging.getLogger("httpx"), token.get_secret_value())
        application = (
            ApplicationBuilder()
            .token(token.get_secret_value())
            .base_url(f"{base}/bot")
            .base_file_url(f"{base}/file/bot")
            .request(HTTPXRequest(connect_timeout=timeout, read_timeout=timeout))
            .get_updates_request(HTTPXRequest(connect_timeout=timeout, read_timeout=poll + timeout))
            .job_queue(None)  # nothing here runs on a timer
            .build()
        )
        return cls(
            settings,
            application,
            chat_id=settings.operator_chat_id,
            conversations=conversations,
            operators=operators,
            locks=locks,
            pubsub=pubsub,
            vault=vault,
        )

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Listen to the events now; the Bot API part starts in the background."""
        for topic in (OPERATOR_EVENTS_TOPIC, EVENTS_TOPIC):
            self._subscriptions.append(await self._pubsub.subscribe(topic, self._on_event))
        self._spawn(self._run(), "desk")

    async def close(self) -> None:
        self._closed = True
        for sub in self._subscriptions:
            await sub.unsubscribe()
        self._subscriptions.clear()
        for task in [*self._tasks, *self._syncing.values()]:
            await cancel_and_wait(task, 10)
        if self._initialized:
            self._initialized = False
            with contextlib.suppress(TelegramError, RuntimeError):
                await self.app.stop()
            with contextlib.suppress(TelegramError, RuntimeError):
                await self.app.shutdown()

    async def drain(self) -> None:
        """Wait for the syncs under way (tests)."""
        while self._syncing:
            await asyncio.gather(*list(self._syncing.values()), return_exceptions=True)

    def _spawn(self, coro: Awaitable[T], name: str) -> asyncio.Task[T]:
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self) -> None:
        await self._until_done("getMe", self.app.initialize)
        self._initialized = True
        await self.app.start()  # handles what the updater fetches
        self._ready.set()
        # What happened while no process listened.
        await self._sweep()
        await self._poll()

    async def _until_done(self, what: str, call: Callable[[], Awaitable[object]]) -> None:
        delay, longest = START_RETRY_SECONDS
        while True:
            try:
                await call()
                return
            except TelegramError as exc:
                log.warning(
                    "desk: %s failed (%s); retrying in %.0f s", what, type(exc).__name__, delay
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    async def _poll(self) -> None:
        """Long polling, from the one process that holds the poller lock."""
        updater = self.app.updater
        assert updater is not None
        while True:
            try:
                async with self._locks.lock(POLLER_LOCK, wait_seconds=0):
                    await updater.start_polling(
                        poll_interval=0.0,
                        timeout=timedelta(seconds=self.settings.telegram_poll_timeout_seconds),
                        allowed_updates=["message"],
                        drop_pending_updates=False,
                    )
                    log.info("desk: polling for the operators' group")
                    try:
                        await asyncio.Event().wait()  # until closed, or the lock is lost
                    finally:
                        await updater.stop()
            except LockTimeout:
                pass  # another process polls; try again about when a dead one's lock expires
            except StorageUnavailable as exc:
                log.warning("desk: poller lock unavailable (%s)", type(exc).__name__)
            await asyncio.sleep(self.settings.lock_ttl_seconds)

    # --- events -> topics -------------------------------------------------------

    async def _on_event(self, raw: str) -> None:
        conversation_id = _event_conversation_id(raw)
        if conversation_id is not None:
            self.schedule(conversation_id)

    def schedule(self, conversation_id: int) -> None:
        """Bring the conversation's topic in step, soon (coalesced per conversation)."""
        if self._closed:
            return
        if conversation_id in self._syncing:
            self._again.add(conversation_id)
            return
        task = asyncio.ensure_future(self._sync_until_settled(conversation_id))
        task.set_name("desk-sync")
        self._syncing[conversation_id] = task

    async def _sync_until_settled(self, conversation_id: int) -> None:
        try:
            await self._ready.wait()
            while True:
                self._again.discard(conversation_id)
                try:
                    await self.sync(conversation_id)
                except Exception as exc:
                    # The Bot API or the database is away: again later, less often.
                    delay = self._retry_in.get(conversation_id, RETRY_SECONDS[0])
                    self._retry_in[conversation_id] = min(delay * 2, RETRY_SECONDS[1])
                    log.warning(
                        "desk: conversation %s not in step (%s); retrying in %.0f s",
                        conversation_id,
                        type(exc).__name__,
                        delay,
                    )
                    self._spawn(self._later(conversation_id, delay), "desk-retry")
                    return
                self._retry_in.pop(conversation_id, None)
                if conversation_id not in self._again:
                    return
        finally:
            self._syncing.pop(conversation_id, None)

    async def _later(self, conversation_id: int, delay: float) -> None:
        await asyncio.sleep(delay)
        self.schedule(conversation_id)

    async def _sweep(self) -> None:
        try:
            async with self._sessions() as session:
                ids = (
                    await session.scalars(
                        select(Conversation.id)
                        .where(
                            (Conversation.owner != Owner.BOT)
                            | Conversation.desk_topic_id.is_not(None)
                        )
                        .order_by(Conversation.id)
                        .limit(SWEEP_LIMIT)
                    )
                ).all()
        except Exception as exc:
            log.warning("desk: start-up sweep failed (%s)", type(exc).__name__)
            return
        for conversation_id in ids:
            self.schedule(conversation_id)

    async def sync(self, conversation_id: int) -> None:
        """Show in the conversation's topic what it does not show yet."""
        async with self._sessions() as session:
            first = await self._snapshot(session, conversation_id)
            if first is None:
                return
            if first.in_step and not await self._news(session, first):
                return  # the usual case for a customer turn with the bot: one SELECT
        async with self._locks.lock(f"desk:conv:{conversation_id}"):
            async with self._sessions() as session:
                snap = await self._snapshot(session, conversation_id)
            if snap is None:
                return
            if snap.topic_id in (None, OPENING):
                if not snap.with_operators:
                    if snap.topic_id == OPENING:
                        await self._set(snap.id, desk_topic_id=None)  # a dead attempt's claim
                    return
                snap = await self._open_topic(snap)
                if snap is None:
                    return
            if snap.shown_owner is None and snap.with_operators:
                snap = await self._show_summary(snap)
            await self._relay(snap)
            await self._announce(snap)

    async def _snapshot(self, session: AsyncSession, conversation_id: int) -> _Snapshot | None:
        row = (
            await session.execute(
                select(
                    Conversation.channel,
                    Conversation.owner,
                    Conversation.owner_operator_id,
                    Conversation.desk_topic_id,
                    Conversation.desk_message_id,
                    Conversation.desk_owner,
                    ChannelIdentity.display_name,
                )
                .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
                .where(Conversation.id == conversation_id)
            )
        ).first()
        if row is None:
            return None
        channel, owner, owner_operator_id, topic_id, message_id, shown_owner, name = row
        return _Snapshot(
            conversation_id,
            channel,
            owner,
            owner_operator_id,
            topic_id,
            message_id,
            shown_owner,
            name,
        )

    async def _news(self, session: AsyncSession, snap: _Snapshot) -> bool:
        """A message the topic has not shown yet."""
        if snap.topic_id in (None, OPENING):
            return False
        newest = await session.scalar(
            select(func.max(Message.id)).where(
                Message.conversation_id == snap.id, Message.sender.in_(RELAYED)
            )
        )
        return newest is not None and newest > (snap.message_id or 0)

    async def _set(self, conversation_id: int, *, where: Any = None, **values: Any) -> bool:
        """Write desk columns (only those: the turns own the rest); False if
        ``where`` did not hold."""
        statement = update(Conversation).where(Conversation.id == conversation_id)
        if where is not None:
            statement = statement.where(where)
        async with self._conversations.transaction() as session:
            result = await session.execute(statement.values(**values))
            await session.commit()
        return bool(getattr(result, "rowcount", 0) == 1)

    async def _open_topic(self, snap: _Snapshot) -> _Snapshot | None:
        claimed = await self._set(
            snap.id,
            where=Conversation.desk_topic_id.is_(None) | (Conversation.desk_topic_id == OPENING),
            desk_topic_id=OPENING,
        )
        if not claimed:
            return None
        channel = Texts.channels.get(snap.channel, snap.channel)
        # A profile name may hold a phone number: it never reaches the group.
        shown = redact_text(snap.display_name or "").strip() or Texts.no_name
        name = Texts.topic_name.format(id=snap.id, channel=channel, name=shown)[:TOPIC_NAME_CHARS]
        try:
            topic = await self._call(lambda: self.app.bot.create_forum_topic(self.chat_id, name))
        except BaseException:
            await self._set(
                snap.id, where=Conversation.desk_topic_id == OPENING, desk_topic_id=None
            )
            raise
        thread = topic.message_thread_id
        async with self._sessions() as session:
            since = await session.scalar(self._last_entry(snap.id, HandoffQueueEntry.created_at))
            # Messages up to the handoff are in the summary; later ones are relayed.
            watermark = await session.scalar(
                select(func.max(Message.id)).where(
                    Message.conversation_id == snap.id,
                    *(() if since is None else (Message.created_at <= since,)),
                )
            )
        await self._set(
            snap.id,
            where=Conversation.desk_topic_id == OPENING,
            desk_topic_id=thread,
            desk_message_id=watermark or 0,
            desk_owner=None,  # the summary is not shown yet
        )
        log.info("desk: topic opened for conversation %s", snap.id)
        return replace(snap, topic_id=thread, message_id=watermark or 0, shown_owner=None)

    async def _show_summary(self, snap: _Snapshot) -> _Snapshot:
        assert snap.topic_id
        async with self._sessions() as session:
            summary = await session.scalar(self._last_entry(snap.id, HandoffQueueEntry.summary))
        channel = Texts.channels.get(snap.channel, snap.channel)
        text = Texts.opened.format(id=snap.id, channel=channel, summary=summary or Texts.no_summary)
        await self._say(snap.topic_id, text[:MESSAGE_CHARS])
        await self._set(snap.id, desk_owner=Owner.QUEUE.value)
        return replace(snap, shown_owner=Owner.QUEUE.value)

    @staticmethod
    def _last_entry(conversation_id: int, column: Any) -> Any:
        """``column`` of the conversation's latest queue entry."""
        return (
            select(column)
            .where(HandoffQueueEntry.conversation_id == conversation_id)
            .order_by(HandoffQueueEntry.id.desc())
            .limit(1)
        )

    async def _relay(self, snap: _Snapshot, *, before: int | None = None) -> None:
        """Post the customer's and the operators' messages the topic has not
        shown (those below ``before`` only)."""
        assert snap.topic_id
        after = snap.message_id or 0
        while True:
            async with self._sessions() as session:
                query = (
                    select(Message.id, Message.sender, Message.text, Operator.display_name)
                    .outerjoin(Operator, Operator.id == Message.operator_id)
                    .where(
                        Message.conversation_id == snap.id,
                        Message.sender.in_(RELAYED),
                        Message.id > after,
                    )
                    .order_by(Message.id)
                    .limit(RELAY_BATCH)
                )
                if before is not None:
                    query = query.where(Message.id < before)
                rows = (await session.execute(query)).all()
            if not rows:
                return
            for message_id, sender, text, name in rows:
                # Stored texts are redacted already (no SNILS, no phone).
                if sender is Sender.OPERATOR:
                    line = Texts.operator.format(name=name or "?", text=text)
                else:
                    line = Texts.customer.format(text=text) if text else Texts.customer_attachment
                await self._say(snap.topic_id, line[:MESSAGE_CHARS])
                after = message_id
                await self._set(snap.id, desk_message_id=after)

    async def _announce(self, snap: _Snapshot) -> None:
        assert snap.topic_id
        marker = snap.marker
        if snap.shown_owner == marker:
            return
        if snap.owner is Owner.OPERATOR:
            name = await self._operator_name(snap.owner_operator_id)
            shown = snap.shown_owner or ""
            template = Texts.transferred if shown.startswith("operator:") else Texts.taken
            await self._say(snap.topic_id, template.format(name=name))
            await self._set(snap.id, desk_owner=marker)
        elif snap.owner is Owner.QUEUE:
            await self._say(snap.topic_id, Texts.requeued)
            await self._set(snap.id, desk_owner=marker)
        else:
            await self._say(snap.topic_id, await self._ending(snap.id))
            with contextlib.suppress(TelegramError):  # closed by hand already, say
                await self._call(
                    lambda: self.app.bot.close_forum_topic(self.chat_id, snap.topic_id or 0)
                )
            # The next escalation opens a topic of its own, with its summary.
            await self._set(snap.id, desk_topic_id=None, desk_message_id=None, desk_owner=None)
            log.info("desk: topic closed for conversation %s", snap.id)

    async def _ending(self, conversation_id: int) -> str:
        async with self._sessions() as session:
            outcome = await session.scalar(
                self._last_entry(conversation_id, HandoffQueueEntry.outcome)
            )
        return (
            {
                HandoffOutcome.RESOLVED: Texts.resolved,
                HandoffOutcome.RETURNED: Texts.returned,
                HandoffOutcome.LEFT: Texts.left,
            }.get(outcome, Texts.closed)
            if outcome is not None
            else Texts.closed
        )

    async def _operator_name(self, operator_id: int | None) -> str:
        if operator_id is None:
            return "?"
        async with self._sessions() as session:
            name = await session.scalar(
                select(Operator.display_name).where(Operator.id == operator_id)
            )
        return name or "?"

    # --- topics -> conversations -------------------------------------------------

    async def _on_message(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.from_user is None or message.from_user.is_bot:
            return
        thread = message.message_thread_id
        if thread is None or not message.is_topic_message:
            return
        if (
            message.forum_topic_created
            or message.forum_topic_closed
            or message.forum_topic_reopened
        ):
            return  # service messages
        operator = await self._operator_of(message.from_user.id)
        if operator is None:
            await self._answer(message, Texts.unknown_operator)
            return
        conversation_id = await self._conversation_of(thread)
        if conversation_id is None:
            await self._answer(message, Texts.no_chat)
            return
        text = (message.text or "").strip()
        if not text:
            await self._answer(message, Texts.text_only)
            return
        command = _COMMAND.match(text)
        try:
            if command is None:
                await self._reply(operator.id, conversation_id, text)
            elif command.group("name").lower() == "resolve":
                await self._operators.resolve(operator.id, conversation_id)
            elif command.group("name").lower() == "bot":
                await self._operators.return_to_bot(operator.id, conversation_id)
            else:
                await self._answer(message, Texts.unknown_command)
                return
        except NotOwner as exc:
            await self._answer(message, await self._not_owner(exc))
            return
        except AlreadyTaken as exc:
            name = await self._operator_name(exc.owner_operator_id)
            await self._answer(message, Texts.not_owner.format(name=name))
            return
        except OperatorError as exc:
            await self._answer(message, _refusal(exc))
            return
        except Exception:
            await self._answer(message, Texts.failed)
            raise
        # The service publishes its event; this process catches up at once too.
        self.schedule(conversation_id)

    async def _reply(self, operator_id: int, conversation_id: int, text: str) -> None:
        """The operator's reply, not echoed into the topic it was written in.

        Under the desk's lock of the conversation: what came before it is
        relayed first, then the topic's watermark steps over it."""
        async with self._locks.lock(f"desk:conv:{conversation_id}"):
            await self._operators.reply(operator_id, conversation_id, text)
            async with self._sessions() as session:
                mine = await session.scalar(
                    select(func.max(Message.id)).where(
                        Message.conversation_id == conversation_id,
                        Message.sender == Sender.OPERATOR,
                        Message.operator_id == operator_id,
                    )
                )
                snap = await self._snapshot(session, conversation_id)
            if mine is None or snap is None or snap.topic_id in (None, OPENING):
                return
            if mine <= (snap.message_id or 0):
                return  # no message written ("вернуть боту" hands the chat back)
            await self._relay(snap, before=mine)
            await self._set(conversation_id, desk_message_id=mine)

    async def _operator_of(self, telegram_user_id: int) -> Operator | None:
        wanted = telegram_user_hash(self._vault, telegram_user_id)
        async with self._sessions() as session:
            return await session.scalar(
                select(Operator).where(
                    Operator.telegram_user_hash == wanted, Operator.active.is_(True)
                )
            )

    async def _conversation_of(self, thread: int) -> int | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(Conversation.id).where(Conversation.desk_topic_id == thread).limit(1)
            )

    async def _not_owner(self, exc: NotOwner) -> str:
        if exc.owner is not Owner.OPERATOR:
            return Texts.no_chat
        name = await self._operator_name(exc.owner_operator_id)
        return Texts.not_owner.format(name=name)

    async def _answer(self, message: TgMessage, text: str) -> None:
        if message.message_thread_id is not None:
            await self._say(message.message_thread_id, text)

    async def _on_error(self, _update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        log.warning("desk: an update failed (%s)", type(error).__name__ if error else "unknown")

    # --- Bot API ----------------------------------------------------------------

    async def _say(self, thread: int, text: str) -> None:
        await self._call(
            lambda: self.app.bot.send_message(self.chat_id, text, message_thread_id=thread)
        )

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """One Bot API call, again after Telegram's ``retry_after`` (a group takes
        about 20 messages a minute) or a network error, a few times."""
        for attempt in range(3):
            try:
                return await call()
            except RetryAfter as exc:
                await asyncio.sleep(_seconds(exc))
            except (TimedOut, NetworkError) as exc:
                # BadRequest is a NetworkError too: sending it again cannot help.
                if isinstance(exc, BadRequest) or attempt == 2:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        return await call()


class _RedactToken(logging.Filter):
    """httpx logs each request's URL at INFO, and a Bot API URL holds the token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, "<token>"), None
        return True


def _hide_token_in(logger: logging.Logger, token: str) -> None:
    if not any(isinstance(f, _RedactToken) and f.token == token for f in logger.filters):
        logger.addFilter(_RedactToken(token))


def _refusal(exc: OperatorError) -> str:
    if isinstance(exc, UnknownConversation):
        return Texts.no_chat
    if isinstance(exc, OperatorUnavailable):
        return Texts.account_off
    if isinstance(exc, EmptyText):
        return Texts.text_only
    return Texts.failed
