"""Telegram for customers, through aiogram 3 (its types in, its ``Bot`` out).

Two ways in, one translation (:meth:`TelegramAdapter.inbound`):

- webhook (``PUBLIC_BASE_URL`` set): at start ``setWebhook`` points Telegram
  at ``PUBLIC_BASE_URL/webhooks/telegram`` with ``TELEGRAM_WEBHOOK_SECRET`` as
  its secret token; a request without that exact
  ``X-Telegram-Bot-Api-Secret-Token`` is refused before its body is read;
- long polling (no public URL, local use): a ``getUpdates`` loop that
  confirms an update (the next offset) only once it is accepted.

When an update is acknowledged: Telegram waits for the webhook's answer and
delivers the update again on a failure or a slow one, so the answer must mean
"recorded". ``host.handle`` records the inbox entry, runs the turn and sends
the replies; the adapter runs it as a task and answers 200 as soon as the turn
is committed, which it learns from the first of: the task finished, or the
delivery worker, inside that task, calls :meth:`send` for the new replies
(a context variable says which update the send belongs to). A slow Bot API
thus never holds the webhook: the reply row is already committed in the
outbox, and the worker sends it, after a crash too. Storage unavailable (or
no commit within ``telegram_ack_timeout_seconds``) answers 503, so Telegram
retries; a retry of an update already in the inbox is dropped there as a
duplicate, and an entry recorded but not processed is replayed by the
container. The inbox identity is the message's, not the update's:
``<chat>:<message id>`` for a message and ``cb:<callback id>`` for a pressed
button, so any redelivery is answered once.

Choices are inline keyboards. ``callback_data`` holds at most 64 bytes: a
longer payload (Rasa-style ``/intent{"slot":"value"}``) is sent as
``#<stored message id>:<button index>`` and read back from that stored
message of this chat. A reply that asks for a phone carries a one-time reply
keyboard with "share my number" (a shared contact becomes the phone text).

Sends keep within the Bot API's limits (about 1 message/s per chat, 30/s
overall) through the shared rate limiter; a 429 raises :class:`RetryAfter`
with Telegram's ``retry_after`` and the delivery worker waits that long.

Personal data: message texts, phone numbers and chat ids are never logged,
and a customer's Telegram id is never stored in the clear: their chat and
user id are a keyed hash of it (:meth:`PersonalDataVault.hash_address`, as for
WhatsApp numbers), the id itself is kept encrypted in ``channel_addresses``
(written when a message or a button press arrives) and decrypted only to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

# Before aiogram: its Telegram types' validators are then built when first used.
from bot.channels import aiogram_types  # noqa: F401

# isort: split
from aiogram import Bot
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    AiogramError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
)
from aiogram.methods import AnswerCallbackQuery, DeleteWebhook, GetUpdates, SendMessage, SetWebhook
from aiogram.methods.base import Response as BotApiResponse
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from aiogram.utils.backoff import Backoff, BackoffConfig
from aiogram.utils.token import TokenValidationError
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.base import ChannelAdapter, ChannelHost, HttpEndpoint
from bot.channels.pacing import Pacer
from bot.channels.telegram_session import JsonAiohttpSession
from bot.errors import DeliveryError, PermanentDeliveryError, RetryAfter
from config import Settings
from config.settings import ConfigError
from dialogs.messages import Attachment, Button, InboundMessage, Reply
from nlu.types import INTENTS
from storage.addresses import remember_canonical_address
from storage.crypto import PersonalDataVault
from storage.models import ChannelAddress, Conversation
from storage.models import Message as StoredMessage
from storage.ratelimit import RateLimit, RateLimiter
from storage.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CHANNEL: Final = "telegram"
WEBHOOK_PATH: Final = "/webhooks/telegram"
SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"
# The update types the adapter handles; setWebhook and getUpdates ask for these only.
ALLOWED_UPDATES: Final = ("message", "edited_message", "callback_query")
MAX_MESSAGE_CHARS: Final = 4096  # Bot API limit of one text message
CALLBACK_DATA_BYTES: Final = 64  # Bot API limit of callback_data
# A real update is a few KiB (a 4,096-character text with entities ~ 40 KiB).
MAX_UPDATE_BYTES: Final = 1024 * 1024
# Deep links (t.me/<bot>?start=PARAM) are [A-Za-z0-9_-]{1,64}.
_DEEP_LINK: Final = re.compile(r"^/start(?:@\w+)?(?:\s+(?P<param>[A-Za-z0-9_-]{1,64}))?\s*$")
_DEEP_LINK_ALIASES: Final = {"link": "link_account", "balance": "check_balance"}
_LONG_PAYLOAD: Final = re.compile(r"^#(?P<message>\d+):(?P<index>\d+)$")
_RETRY_BACKOFF: Final = BackoffConfig(min_delay=1.0, max_delay=30.0, factor=1.6, jitter=0.1)

T = TypeVar("T")

# aiogram reads every Bot API answer as ``Response[<the method's result>]``,
# and pydantic keeps such parametrized models only weakly: once collected,
# the next call built the model and its schema again, about a tenth of the
# CPU of a turn under load. Held here, each is built once.
_BOT_API_RESPONSES: Final = tuple(
    BotApiResponse[method.__returning__]  # type: ignore[name-defined]
    for method in (SendMessage, AnswerCallbackQuery, SetWebhook, DeleteWebhook, GetUpdates)
)

_Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove

# Set in the task that runs one update's turn: :meth:`TelegramAdapter.send`
# called inside it means that turn is committed (see the module docstring).
_turn_committed: contextvars.ContextVar[asyncio.Future[None] | None] = contextvars.ContextVar(
    "telegram_turn_committed", default=None
)


def _settle(committed: asyncio.Future[None]) -> None:
    if not committed.done():  # cancelled: the webhook's answer gave up waiting
        committed.set_result(None)


class Texts:
    share_contact = "📱 Отправить мой номер"


class NotAccepted(Exception):
    """An update could not be recorded now; the platform should deliver it again."""


def split_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Split a reply into messages of at most ``limit`` characters.

    Cut at line breaks; a single line longer than ``limit`` at its last
    space before the limit, and a word longer than that where it must.
    The line break or spaces a cut falls on are dropped; no other text is.
    """
    if len(text) <= limit:
        return [text]
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = line if not current else current + "\n" + line
        if len(candidate) <= limit:
            current = candidate
            continue
        if current:
            chunks.append(current)
        while len(line) > limit:
            cut = line.rfind(" ", 0, limit + 1)
            if cut <= 0:
                cut = limit
            chunks.append(line[:cut])
            line = line[cut:].lstrip(" ") if line[cut : cut + 1] == " " else line[cut:]
        current = line
    if current or not chunks:
        chunks.append(current)
    return chunks


@dataclass(frozen=True, slots=True)
class _Inbound:
    """What one update asks of the adapter."""

    message: InboundMessage | None
    callback_id: str | None = None


def _attachments(message: Message) -> tuple[Attachment, ...]:
    if message.photo:
        # Telegram sends every size; the last one is the largest.
        return (
            Attachment(kind="photo", file_id=message.photo[-1].file_id, mime_type="image/jpeg"),
        )
    if message.document is not None:
        doc = message.document
        return (Attachment(kind="document", file_id=doc.file_id, mime_type=doc.mime_type),)
    for kind in ("sticker", "voice", "video", "video_note", "audio", "animation"):
        media = getattr(message, kind)
        if media is not None:
            return (Attachment(kind=kind, file_id=media.file_id),)
    if message.location is not None:
        return (Attachment(kind="location"),)
    return ()


def _deep_link_payload(text: str) -> str | None:
    """``/start`` greets; ``/start PARAM`` starts the flow PARAM names, if any."""
    match = _DEEP_LINK.match(text.strip())
    if match is None:
        return None
    param = (match.group("param") or "").lower()
    intent = _DEEP_LINK_ALIASES.get(param, param)
    return f"/{intent}" if intent in INTENTS else "/greet"


class TelegramAdapter(ChannelAdapter):
    name = CHANNEL

    def __init__(self, settings: Settings, bot: Bot) -> None:
        self.settings = settings
        self.bot = bot
        secret = settings.telegram_webhook_secret
        self._secret = secret.get_secret_value().encode() if secret else b""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._turns: set[asyncio.Task[Any]] = set()
        # Parts of a split reply already sent, by stored message id: a retry
        # after a failure in the middle sends only the rest.
        self._parts_sent: dict[int, int] = {}
        # Chats shown the "share my number" keyboard: the next plain reply removes it.
        self._contact_keyboard: set[str] = set()
        self._vault = PersonalDataVault(settings.secret_key.get_secret_value())
        self._host: ChannelHost | None = None
        # Telegram ids already stored, by chat id (their hash), in this process.
        self._addresses: dict[str, int] = {}
        self.pacer = Pacer(CHANNEL, settings.secret_key.get_secret_value())
        self._per_chat = RateLimit(
            settings.telegram_chat_rate_per_second, settings.telegram_chat_burst
        )
        self._overall = RateLimit(
            settings.telegram_global_rate_per_second, settings.telegram_global_burst
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> TelegramAdapter | None:
        token = settings.telegram_bot_token
        if token is None or not token.get_secret_value():
            return None
        if settings.public_base_url is not None and settings.telegram_webhook_secret is None:
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET must be set for the Telegram webhook")
        timeout = settings.telegram_request_timeout_seconds
        if settings.telegram_api_base:
            api = TelegramAPIServer.from_base(settings.telegram_api_base)
            session = JsonAiohttpSession(api=api, timeout=timeout)
        else:
            session = JsonAiohttpSession(timeout=timeout)
        try:
            bot = Bot(token.get_secret_value(), session=session)
        except TokenValidationError as exc:
            raise ConfigError("TELEGRAM_BOT_TOKEN is not a bot token (<id>:<secret>)") from exc
        return cls(settings, bot)

    @property
    def webhook_mode(self) -> bool:
        return self.settings.public_base_url is not None

    @property
    def webhook_url(self) -> str:
        assert self.settings.public_base_url is not None
        return self.settings.public_base_url.rstrip("/") + WEBHOOK_PATH

    # --- lifecycle ----------------------------------------------------------

    async def start(self, host: ChannelHost) -> None:
        self._host = host
        if self.webhook_mode:
            self._spawn(self._until_done("setWebhook", self._set_webhook), "telegram-set-webhook")
        else:
            self._spawn(self._poll(host), "telegram-polling")

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # A turn in flight is committed or not; either way the outbox or the
        # inbox replay finishes it after a restart. Give it a moment first.
        if self._turns:
            await asyncio.wait(list(self._turns), timeout=2)
        for task in [*tasks, *self._turns]:
            await cancel_and_wait(task)
        await self.bot.session.close()

    def _spawn(self, coro: Awaitable[T], name: str) -> asyncio.Task[T]:
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _set_webhook(self) -> None:
        await self.bot.set_webhook(
            url=self.webhook_url,
            secret_token=self._secret.decode(),
            allowed_updates=list(ALLOWED_UPDATES),
            drop_pending_updates=False,
        )
        log.info("telegram: webhook registered at %s", WEBHOOK_PATH)

    async def _until_done(self, what: str, call: Callable[[], Awaitable[None]]) -> None:
        """Retry a start-up call until the Bot API takes it (it may be down now)."""
        backoff = Backoff(_RETRY_BACKOFF)
        while True:
            try:
                await call()
                return
            except AiogramError as exc:
                log.warning(
                    "telegram: %s failed (%s); retrying in %.1f s",
                    what,
                    type(exc).__name__,
                    backoff.next_delay,
                )
            await backoff.asleep()

    def chat_id_for(self, telegram_id: int | str) -> str:
        """The chat (and user) id that stands for this Telegram chat or user id."""
        return self._vault.hash_address(CHANNEL, str(telegram_id))

    def _sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._host is None:
            raise DeliveryError("the Telegram adapter is not started")
        return self._host.session_factory

    async def _remember_address(self, host: ChannelHost, chat_id: str, telegram_id: int) -> None:
        """Keep the Telegram chat id (encrypted) so that replies can reach it.

        Raises :class:`NotAccepted` when storage is down: the update is
        delivered again.
        """
        if self._addresses.get(chat_id) == telegram_id:
            return
        try:
            # A Telegram id has one spelling: stored once, never updated.
            await remember_canonical_address(
                host.session_factory, self._vault, CHANNEL, chat_id, str(telegram_id)
            )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("telegram: storage unavailable (%s)", type(exc).__name__)
            raise NotAccepted("cannot store the chat's address") from exc
        self._addresses[chat_id] = telegram_id

    async def _address(self, chat_id: str) -> int:
        """The Telegram chat id of a chat (its hash), from memory or storage."""
        known = self._addresses.get(chat_id)
        if known is not None:
            return known
        try:
            async with self._sessions()() as session:
                enc = await session.scalar(
                    select(ChannelAddress.address_enc).where(
                        ChannelAddress.channel == CHANNEL, ChannelAddress.address_hash == chat_id
                    )
                )
        except (SQLAlchemyError, OSError) as exc:
            raise DeliveryError(f"storage unavailable: {type(exc).__name__}") from exc
        if enc is None:
            raise PermanentDeliveryError("no stored address for this chat")
        telegram_id = int(self._vault.decrypt(enc))
        self._addresses[chat_id] = telegram_id
        return telegram_id

    # --- receiving ------------------------------------------------------------

    def router(self, host: ChannelHost) -> APIRouter | None:
        if not self.webhook_mode:
            return None  # long polling: nothing listens over HTTP
        if not self._secret:
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET must be set for the Telegram webhook")
        router = APIRouter(tags=["telegram"])

        # Listed for the API docs; the app serves the POST through
        # :meth:`endpoints`, past its routing and middleware.
        @router.post(WEBHOOK_PATH, summary="Telegram Bot API webhook")
        async def telegram_webhook(request: Request) -> Response:
            """Updates from Telegram; 200 once recorded, 503 to be delivered again."""
            return await self._webhook(host, request)

        return router

    def endpoints(self, host: ChannelHost) -> Mapping[str, HttpEndpoint]:
        if not self.webhook_mode:
            return {}

        async def webhook(request: Request) -> Response:
            return await self._webhook(host, request)

        return {WEBHOOK_PATH: webhook}

    async def _webhook(self, host: ChannelHost, request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            return _problem(401, "missing secret token")
        if not hmac.compare_digest(given.encode(), self._secret):
            return _problem(403, "wrong secret token")
        body = await _read_limited(request, MAX_UPDATE_BYTES)
        if body is None:
            return _problem(413, f"an update is at most {MAX_UPDATE_BYTES} bytes")
        update = self.parse_update(body)
        if update is None:
            return _problem(400, "not a Telegram Update (JSON object with update_id)")
        try:
            await self.accept(host, update)
        except NotAccepted:
            return _problem(503, "temporarily unavailable", headers={"Retry-After": "5"})
        return Response(status_code=200)

    def parse_update(self, body: bytes) -> Update | None:
        """An Update from a request body, or None if it is not one."""
        if not body.strip():
            return None
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(data, dict):
            return None
        # Only the types asked for are read: a field of another type that this
        # aiogram cannot parse must not make Telegram retry the update forever.
        handled = {k: v for k, v in data.items() if k == "update_id" or k in ALLOWED_UPDATES}
        try:
            return Update.model_validate(handled, context={"bot": self.bot})
        except ValidationError:
            return None

    async def accept(self, host: ChannelHost, update: Update) -> None:
        """Record one update and start its turn; returns once it is committed.

        Raises :class:`NotAccepted` when it could not be (storage down): the
        caller has it delivered again.
        """
        inbound = await self.inbound(host, update)
        if inbound.callback_id is not None:
            answering = asyncio.create_task(self._answer_callback(inbound.callback_id))
            self._turns.add(answering)
            answering.add_done_callback(self._turns.discard)
        if inbound.message is None:
            return
        # Done at the first of: the turn's first send (it is committed), the
        # turn's end. One future, not an Event, its waiter task and asyncio.wait.
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        token = _turn_committed.set(committed)
        try:
            turn = asyncio.create_task(host.handle(inbound.message), name="telegram-turn")
        finally:
            _turn_committed.reset(token)
        self._turns.add(turn)
        turn.add_done_callback(self._turn_done)
        turn.add_done_callback(lambda _turn: _settle(committed))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.telegram_ack_timeout_seconds):
                await committed
        if turn.done():
            if turn.cancelled() or turn.exception() is not None:
                raise NotAccepted("the turn failed")
            return
        if not committed.done() or committed.cancelled():
            # Still not committed (a lock or the database stuck): have it
            # delivered again; the turn may still finish, a redelivery is a duplicate.
            raise NotAccepted("the turn is not committed yet")

    async def drain(self) -> None:
        """Wait for the turns (and button answers) in flight to finish."""
        while self._turns:
            await asyncio.wait(list(self._turns))

    def _turn_done(self, task: asyncio.Task[Any]) -> None:
        self._turns.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("telegram: a turn failed (%s); the update is retried", type(exc).__name__)

    async def inbound(self, host: ChannelHost, update: Update) -> _Inbound:
        """Translate an update (the same for webhook and polling)."""
        if update.message is not None:
            message = self._from_message(update.message)
            if message is not None:
                await self._remember_address(host, message.chat_id, update.message.chat.id)
            return _Inbound(message)
        if update.callback_query is not None:
            cq = update.callback_query
            return _Inbound(await self._from_callback(host, cq), callback_id=cq.id)
        # edited_message: a correction does not start a new turn. Other types
        # are not asked for; ignored if they come anyway.
        return _Inbound(None)

    def _from_message(self, message: Message) -> InboundMessage | None:
        if message.chat.type != "private" or message.from_user is None:
            return None  # customers write to the bot directly; groups are not served
        if message.from_user.is_bot:
            return None
        text = message.text or message.caption or ""
        payload = _deep_link_payload(text) if message.text else None
        if message.contact is not None:
            # The "share my number" button: the number is the answer typed.
            text = message.contact.phone_number
        chat_id = self.chat_id_for(message.chat.id)
        return InboundMessage(
            channel=CHANNEL,
            chat_id=chat_id,
            user_id=self.chat_id_for(message.from_user.id),
            text=text,
            platform_message_id=f"{chat_id}:{message.message_id}",
            received_at=message.date.astimezone(UTC),
            payload=payload,
            attachments=_attachments(message),
            display_name=message.from_user.full_name[:200] or None,
        )

    async def _from_callback(self, host: ChannelHost, cq: CallbackQuery) -> InboundMessage | None:
        data = cq.data
        if data is None:
            return None
        shown = cq.message if isinstance(cq.message, Message) else None
        if shown is not None and shown.chat.type != "private":
            return None
        telegram_id = shown.chat.id if shown is not None else cq.from_user.id
        chat_id = self.chat_id_for(telegram_id)
        await self._remember_address(host, chat_id, telegram_id)
        title = _button_title(shown, data)
        payload: str | None = data
        long_ref = _LONG_PAYLOAD.match(data)
        if long_ref is not None:
            try:
                found = await _stored_button(
                    host, chat_id, int(long_ref.group("message")), int(long_ref.group("index"))
                )
            except Exception as exc:  # storage down: have the press delivered again
                raise NotAccepted("cannot read the pressed button") from exc
            payload = found.payload if found is not None else None
            title = title or (found.title if found is not None else "")
        return InboundMessage(
            channel=CHANNEL,
            chat_id=chat_id,
            user_id=self.chat_id_for(cq.from_user.id),
            text=title,
            platform_message_id=f"cb:{cq.id}",
            received_at=datetime.now(UTC),
            payload=payload,
            display_name=cq.from_user.full_name[:200] or None,
        )

    async def _answer_callback(self, callback_id: str) -> None:
        # Stops the button's spinner; the answer itself comes as a message.
        try:
            await self.bot.answer_callback_query(callback_id)
        except AiogramError as exc:
            # Too late or the API is down: the spinner times out by itself.
            log.info("telegram: answerCallbackQuery failed (%s)", type(exc).__name__)

    async def _poll(self, host: ChannelHost) -> None:
        """Long polling: an update is confirmed (offset) only once accepted."""
        await self._until_done("deleteWebhook", self._delete_webhook)
        backoff = Backoff(_RETRY_BACKOFF)
        poll = self.settings.telegram_poll_timeout_seconds
        request_timeout = int(self.settings.telegram_request_timeout_seconds + poll)
        offset: int | None = None
        log.info("telegram: long polling")
        while True:
            try:
                updates = await self.bot.get_updates(
                    offset=offset,
                    timeout=poll,
                    allowed_updates=list(ALLOWED_UPDATES),
                    request_timeout=request_timeout,
                )
            except AiogramError as exc:
                log.warning(
                    "telegram: getUpdates failed (%s); retrying in %.1f s",
                    type(exc).__name__,
                    backoff.next_delay,
                )
                await backoff.asleep()
                continue
            backoff.reset()
            for update in updates:
                while True:
                    try:
                        await self.accept(host, update)
                        break
                    except NotAccepted:
                        log.warning("telegram: update not accepted; retrying")
                        await backoff.asleep()
                    except Exception:
                        # A bug, not an outage: retrying would stall every later update.
                        log.exception("telegram: update %s dropped", update.update_id)
                        break
                backoff.reset()
                offset = update.update_id + 1

    async def _delete_webhook(self) -> None:
        # getUpdates is refused (409) while a webhook is set.
        await self.bot.delete_webhook(drop_pending_updates=False)

    # --- sending ----------------------------------------------------------------

    async def send(
        self,
        chat_id: str,
        reply: Reply,
        *,
        message_id: int | None = None,
        at: datetime | None = None,
        sender: str = "bot",
    ) -> None:
        committed = _turn_committed.get()
        if committed is not None:
            _settle(committed)  # the turn that produced this reply is committed
        chat = await self._address(chat_id)
        parts = split_text(reply.text or " ")
        first = self._parts_sent.get(message_id, 0) if message_id is not None else 0
        for index in range(first, len(parts)):
            last = index == len(parts) - 1
            await self._pace(chat_id)
            markup = self._markup(chat_id, reply, message_id) if last else None
            await self._call(self.bot.send_message(chat, parts[index], reply_markup=markup))
            if message_id is not None and not last:
                self._parts_sent[message_id] = index + 1
        if message_id is not None:
            self._parts_sent.pop(message_id, None)

    async def _pace(self, chat_id: str) -> None:
        """Keep within the Bot API's limits (per chat, overall) before a send."""
        await self.pacer.pace(
            (self.pacer.key("chat", chat_id), self._per_chat), ("telegram:all", self._overall)
        )

    def share_rate_limiter(self, limiter: RateLimiter) -> None:
        self.pacer.limiter = limiter

    def _markup(self, chat_id: str, reply: Reply, message_id: int | None) -> _Markup | None:
        if reply.ask_contact:
            self._contact_keyboard.add(chat_id)
            rows = [[KeyboardButton(text=Texts.share_contact, request_contact=True)]]
            # Its other choices ("Без телефона") as keys that type their title.
            rows += [[KeyboardButton(text=b.title)] for b in reply.buttons]
            return ReplyKeyboardMarkup(keyboard=rows, resize_keyboard=True, one_time_keyboard=True)
        if reply.buttons:
            return InlineKeyboardMarkup(
                inline_keyboard=[
                    [
                        InlineKeyboardButton(
                            text=b.title, callback_data=callback_data(b, i, message_id)
                        )
                    ]
                    for i, b in enumerate(reply.buttons)
                ]
            )
        if chat_id in self._contact_keyboard:
            self._contact_keyboard.discard(chat_id)
            return ReplyKeyboardRemove()
        return None

    async def _call(self, call: Awaitable[T]) -> T:
        """One Bot API call, its errors translated to the delivery worker's."""
        try:
            return await call
        except TelegramRetryAfter as exc:
            raise RetryAfter(float(exc.retry_after), "Telegram: too many requests") from exc
        except TelegramForbiddenError as exc:
            raise PermanentDeliveryError("Telegram: the bot is blocked by the user") from exc
        except (TelegramBadRequest, TelegramNotFound) as exc:
            # "chat not found", a malformed message: sending it again cannot help.
            raise PermanentDeliveryError(f"Telegram refused: {exc.message[:120]}") from exc
        except AiogramError as exc:  # network, 5xx, unauthorised, a garbled answer
            raise DeliveryError(f"Telegram: {type(exc).__name__}") from exc


def callback_data(button: Button, index: int, message_id: int | None) -> str:
    """The button's payload, or a reference to it when it does not fit in 64 bytes."""
    data = button.payload
    if len(data.encode()) <= CALLBACK_DATA_BYTES and not data.startswith("#"):
        return data
    if message_id is None:
        # Nothing to look it up by: the title is typed instead.
        return f"#0:{index}"
    return f"#{message_id}:{index}"


def _button_title(shown: Message | None, data: str) -> str:
    if shown is None or not isinstance(shown.reply_markup, InlineKeyboardMarkup):
        return ""
    for row in shown.reply_markup.inline_keyboard:
        for button in row:
            if button.callback_data == data:
                return button.text
    return ""


async def _stored_button(
    host: ChannelHost, chat_id: str, message_id: int, index: int
) -> Button | None:
    """Button ``index`` of the bot's stored message ``message_id`` in this chat."""
    if message_id <= 0:
        return None
    async with host.session_factory() as session:
        payload = await session.scalar(
            select(StoredMessage.payload)
            .join(Conversation, Conversation.id == StoredMessage.conversation_id)
            .where(
                StoredMessage.id == message_id,
                Conversation.channel == CHANNEL,
                Conversation.chat_id == chat_id,
            )
        )
    if not payload:
        return None
    buttons: Sequence[Button] = Reply.from_json(payload).buttons
    return buttons[index] if 0 <= index < len(buttons) else None


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None once it exceeds ``limit`` (not read to the end)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)
