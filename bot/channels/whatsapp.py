"""WhatsApp through Twilio: signed webhooks in, the twilio REST client out.

In: ``POST /webhooks/whatsapp`` is Twilio's form (From ``whatsapp:+7...``,
Body, MessageSid, WaId, ProfileName, NumMedia, MediaUrl0...). The
``X-Twilio-Signature`` is checked with the twilio library's
``RequestValidator`` over ``PUBLIC_BASE_URL`` + the path and the form (401
without one, 403 for a wrong one), the message goes to the host, and the
answer is an empty TwiML ``<Response/>``: replies go out through the outbox.

Out: ``client.messages.create_async`` on the twilio client with its aiohttp
client, pointed at ``TWILIO_API_BASE`` when set. WhatsApp allows free text
only within 24 hours of the customer's last message; outside it a reply goes
as the approved template configured for it, or is held for an operator
(outbox ``last_error`` = ``outside_window``), never sent as text Twilio
would refuse. ``POST /webhooks/whatsapp/status`` records Twilio's status
callbacks on the outbox row.

The customer's phone number is personal data: their chat and user id is a
keyed hash of it (:meth:`PersonalDataVault.hash_address`), the number is
stored encrypted (``channel_addresses``) and decrypted only to send. It is
never logged; Twilio's error messages, which quote it, are not kept either
(only the status and the error code).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

import aiohttp
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import and_, select, update
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import MultiDict
from twilio.base.exceptions import TwilioException
from twilio.request_validator import RequestValidator

from bot.channels.base import ChannelAdapter, ChannelHost
from bot.channels.choices import render_text, resolve_choice
from bot.channels.pacing import Pacer
from bot.errors import DeliveryError, PermanentDeliveryError, RetryAfter
from config import Settings
from dialogs.messages import Attachment, Button, InboundMessage, Reply
from storage.addresses import remember_address
from storage.crypto import PersonalDataVault
from storage.models import (
    ChannelAddress,
    Conversation,
    DeliveryStatus,
    OutboxEntry,
)
from storage.ratelimit import RateLimit, RateLimiter
from storage.tasks import cancel_and_wait

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger(__name__)

CHANNEL: Final = "whatsapp"
WEBHOOK_PATH: Final = "/webhooks/whatsapp"
STATUS_PATH: Final = "/webhooks/whatsapp/status"
SIGNATURE_HEADER: Final = "X-Twilio-Signature"
# Twilio's forms are a few hundred bytes; 64 KiB leaves room for a long text.
MAX_FORM_BYTES: Final = 64 * 1024
MAX_MEDIA: Final = 10  # Twilio sends at most ten media per message
# One WhatsApp message body through Twilio holds at most 1,600 characters.
MAX_BODY_CHARS: Final = 1600
# A template variable is shorter than a body.
MAX_TEMPLATE_VARIABLE_CHARS: Final = 1000
WINDOW: Final = timedelta(hours=24)
OUTSIDE_WINDOW: Final = "outside_window"
REPLY_TEMPLATE: Final = "reply"  # the purpose of a template that carries a reply as {{1}}
EMPTY_TWIML: Final = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
DEFAULT_RETRY_AFTER: Final = 1.0
_NO_ENVIRONMENT: Final[Mapping[str, str]] = {"HEATDESK_SETTINGS": "passed explicitly"}

_SID: Final = r"^[A-Z]{2}[0-9a-fA-F]{32}$"
_ADDRESS: Final = re.compile(r"^whatsapp:(\+?\d{6,16})$")
_DIGITS: Final = re.compile(r"\d")

# Twilio's message statuses, in the order a message goes through them; a
# late callback never moves a row back (they can arrive out of order).
_PROGRESS: Final[Mapping[str, int]] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
}
_FAILED: Final = frozenset({"failed", "undelivered", "canceled"})
_FINAL_RANK: Final = 10


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _rank(status: str | None) -> int:
    if status is None:
        return -1
    return _FINAL_RANK if status in _FAILED else _PROGRESS.get(status, -1)


class TwilioRejected(PermanentDeliveryError):
    """Twilio refused the message for good (63016: outside the 24-hour window...)."""

    def __init__(self, code: int | None, status: int) -> None:
        super().__init__(f"twilio error {code} (HTTP {status})")
        self.code = code
        self.status = status


class BadRequest(Exception):
    """A webhook request that cannot be used; ``status`` is the HTTP answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


# --------------------------------------------------------------------------
# Twilio's forms
# --------------------------------------------------------------------------


class _Form(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class InboundForm(_Form):
    """The fields of an incoming WhatsApp message that the bot uses."""

    MessageSid: str = Field(pattern=_SID)
    From: str = Field(pattern=_ADDRESS.pattern)
    Body: str = ""
    ProfileName: str | None = Field(default=None, max_length=256)
    NumMedia: int = Field(default=0, ge=0, le=MAX_MEDIA)

    @property
    def number(self) -> str:
        match = _ADDRESS.match(self.From)
        assert match is not None  # the field's pattern
        digits = match.group(1).lstrip("+")
        return f"+{digits}"


class StatusForm(_Form):
    MessageSid: str = Field(pattern=_SID)
    MessageStatus: str = Field(min_length=1, max_length=20)
    ErrorCode: int | None = None

    @field_validator("ErrorCode", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value


def _first_values(form: MultiDict) -> dict[str, str]:
    return {key: form[key] for key in form}


def _invalid(exc: ValidationError) -> BadRequest:
    # Names only: an error that echoed the values would echo the phone number.
    fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
    return BadRequest(400, "invalid Twilio form fields: " + ", ".join(fields))


def attachment_kind(content_type: str) -> str:
    major = content_type.split("/", 1)[0].lower()
    if major == "image":
        return "photo"
    if major in {"video", "audio"}:
        return major
    if content_type.lower() in {"text/vcard", "text/x-vcard"}:
        return "contact"
    return "document"


def _attachments(form: MultiDict, count: int) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    for i in range(count):
        url = form.get(f"MediaUrl{i}")
        if not url:
            continue
        mime = form.get(f"MediaContentType{i}") or "application/octet-stream"
        found.append(Attachment(kind=attachment_kind(mime), url=url, mime_type=mime[:100]))
    return tuple(found)


def _display_name(profile: str | None) -> str | None:
    # Some people put their number in their WhatsApp name: keep no such name.
    if not profile or len(_DIGITS.findall(profile)) >= 5:
        return None
    return profile.strip()[:200] or None


def split_body(text: str, limit: int = MAX_BODY_CHARS) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at line breaks where possible."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = rest.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    pieces.append(rest)
    return [p for p in pieces if p] or [""]


# --------------------------------------------------------------------------
# The REST side
# --------------------------------------------------------------------------


class _TimedHttpClient:
    """The twilio library's ``AsyncTwilioHttpClient`` with a timeout.

    The REST client passes ``timeout=None`` on every request, which aiohttp
    reads as "wait forever": a hung Twilio would hold the delivery worker.
    Basic auth goes as a header: the library's ``aiohttp.BasicAuth`` is
    deprecated in aiohttp 3.14 and warns on every request. Duck-typed to
    twilio's ``AsyncHttpClient`` (``is_async``, ``request``).
    """

    is_async = True

    def __init__(self, timeout: float) -> None:
        from twilio.http.async_http_client import AsyncTwilioHttpClient

        # Built inside the running loop: it opens an aiohttp session.
        self._inner: Any = AsyncTwilioHttpClient()
        self._timeout = timeout

    async def request(
        self,
        method: str,
        url: str,
        params: Mapping[str, object] | None = None,
        data: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - twilio's HttpClient signature
        allow_redirects: bool = False,
    ) -> Any:
        headers = dict(headers or {})
        if auth is not None:
            pair = f"{auth[0]}:{auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return await self._inner.request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout or self._timeout,
            allow_redirects=allow_redirects,
        )

    async def close(self) -> None:
        await self._inner.close()


# --------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------


class WhatsAppAdapter(ChannelAdapter):
    name = CHANNEL

    def __init__(self, settings: Settings) -> None:
        sid, token, sender = (
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            settings.twilio_whatsapp_from,
        )
        if not (sid and token and sender and settings.public_base_url):
            # Settings refuse this combination already; a direct caller gets it too.
            raise ValueError(
                "WhatsApp needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, "
                "TWILIO_WHATSAPP_FROM and PUBLIC_BASE_URL"
            )
        self.settings = settings
        self._account_sid = sid
        self._auth_token = token.get_secret_value()
        self._from = sender if sender.startswith("whatsapp:") else f"whatsapp:{sender}"
        self._public_base = settings.public_base_url.rstrip("/")
        self._validator = RequestValidator(self._auth_token)
        self._vault = PersonalDataVault(settings.secret_key.get_secret_value())
        self._host: ChannelHost | None = None
        self._client: Any = None
        self._http: _TimedHttpClient | None = None
        # Numbers already stored, by chat id (their hash), in this process.
        self._addresses: dict[str, str] = {}
        self._turns: set[asyncio.Task[Any]] = set()
        # Twilio queues what a sender number sends beyond its rate (and drops
        # it after a while): keep within it, counted across processes.
        self.pacer = Pacer(CHANNEL, settings.secret_key.get_secret_value())
        self._sender_rate = RateLimit(
            settings.twilio_sender_rate_per_second, settings.twilio_sender_burst
        )

    def share_rate_limiter(self, limiter: RateLimiter) -> None:
        self.pacer.limiter = limiter

    @classmethod
    def from_settings(cls, settings: Settings) -> WhatsAppAdapter | None:
        if not settings.whatsapp_enabled:
            return None
        return cls(settings)

    def chat_id_for(self, number: str) -> str:
        """The chat (and user) id that stands for this phone number."""
        return self._vault.hash_address(CHANNEL, number)

    # --- lifecycle ----------------------------------------------------------

    async def start(self, host: ChannelHost) -> None:
        self._host = host

    async def close(self) -> None:
        # A turn still running keeps its inbox entry; the replay answers it.
        for task in list(self._turns):
            await cancel_and_wait(task)
        if self._http is not None:
            http, self._http, self._client = self._http, None, None
            await http.close()

    def _sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._host is None:
            raise DeliveryError("the WhatsApp adapter is not started")
        return self._host.session_factory

    # --- receiving ----------------------------------------------------------

    def router(self, host: ChannelHost) -> APIRouter:
        self._host = host
        router = APIRouter(tags=["whatsapp"])

        @router.post(WEBHOOK_PATH, include_in_schema=False)
        async def inbound(request: Request) -> Response:
            try:
                return await self._inbound(host, request)
            except BadRequest as exc:
                return Response(exc.detail, status_code=exc.status, media_type="text/plain")

        @router.post(STATUS_PATH, include_in_schema=False)
        async def status(request: Request) -> Response:
            try:
                return await self._status(request)
            except BadRequest as exc:
                return Response(exc.detail, status_code=exc.status, media_type="text/plain")

        return router

    async def _signed_form(self, request: Request, path: str) -> MultiDict:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            raise BadRequest(413, "request too large")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_FORM_BYTES:
                raise BadRequest(413, "request too large")
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise BadRequest(401, f"missing {SIGNATURE_HEADER}")
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(400, "the body is not a form") from exc
        form = MultiDict(pairs)
        url = self._public_base + path
        if request.url.query:
            url += "?" + request.url.query
        if not self._validator.validate(url, form, signature):
            raise BadRequest(403, f"wrong {SIGNATURE_HEADER}")
        return form

    async def _inbound(self, host: ChannelHost, request: Request) -> Response:
        form = await self._signed_form(request, WEBHOOK_PATH)
        try:
            parsed = InboundForm.model_validate(_first_values(form))
        except ValidationError as exc:
            raise _invalid(exc) from exc
        number = parsed.number
        chat_id = self.chat_id_for(number)
        text, payload = parsed.Body, None
        try:
            await self._remember_address(chat_id, number)
            pressed = resolve_choice(text, await self._last_buttons(chat_id))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("whatsapp webhook: storage unavailable (%s)", type(exc).__name__)
            return _unavailable()
        if pressed is not None:
            text, payload = pressed.title, pressed.payload
        msg = InboundMessage(
            channel=CHANNEL,
            chat_id=chat_id,
            user_id=chat_id,
            text=text,
            platform_message_id=parsed.MessageSid,
            received_at=_utcnow(),
            payload=payload,
            attachments=_attachments(form, parsed.NumMedia),
            display_name=_display_name(parsed.ProfileName),
        )
        # Twilio waits 15 s for an answer. The inbox write comes first in a
        # turn, so a turn still running after the ack time is already kept
        # and finishes (or is replayed) on its own.
        turn = asyncio.create_task(host.handle(msg), name="whatsapp-turn")
        self._turns.add(turn)
        turn.add_done_callback(self._turn_done)
        done, _ = await asyncio.wait({turn}, timeout=self.settings.twilio_ack_seconds)
        if turn in done and not turn.cancelled() and turn.exception() is not None:
            # Not answered (StorageUnavailable, typically): a 5xx makes Twilio
            # deliver it again. Had the inbox kept it, that delivery is a
            # duplicate and the container's replay answers it, once.
            return _unavailable()
        return Response(EMPTY_TWIML, media_type="text/xml")

    def _turn_done(self, task: asyncio.Task[Any]) -> None:
        self._turns.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("whatsapp turn failed: %s", type(error).__name__)

    async def _remember_address(self, chat_id: str, number: str) -> None:
        """Keep the number (encrypted) so that replies can reach it."""
        if self._addresses.get(chat_id) == number:
            return
        await remember_address(self._sessions(), self._vault, CHANNEL, chat_id, number)
        self._addresses[chat_id] = number

    async def _last_buttons(self, chat_id: str) -> tuple[Button, ...]:
        """The choices of the bot's last replies in this chat."""
        if self._host is None:
            raise DeliveryError("the WhatsApp adapter is not started")
        return await self._host.last_buttons(CHANNEL, chat_id)

    async def _status(self, request: Request) -> Response:
        form = await self._signed_form(request, STATUS_PATH)
        try:
            parsed = StatusForm.model_validate(_first_values(form))
        except ValidationError as exc:
            raise _invalid(exc) from exc
        outbox_message = request.query_params.get("m", "")
        try:
            await self._record_status(
                parsed, int(outbox_message) if outbox_message.isdigit() else None
            )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("whatsapp status: storage unavailable (%s)", type(exc).__name__)
            return _unavailable()
        return Response(status_code=204)

    async def _record_status(self, form: StatusForm, message_id: int | None) -> None:
        status = form.MessageStatus.lower()
        async with self._sessions().begin() as session:
            query = select(OutboxEntry).where(OutboxEntry.channel == CHANNEL)
            if message_id is not None:
                # The callback URL names the row: a callback that beats our
                # own record of the SID still finds it.
                query = query.where(OutboxEntry.message_id == message_id)
            else:
                query = query.where(OutboxEntry.platform_message_id == form.MessageSid)
            row = await session.scalar(query.limit(1))
            if row is None or row.platform_message_id not in (None, form.MessageSid):
                return  # not ours, or an earlier piece of a split reply
            row.platform_message_id = form.MessageSid
            if _rank(status) > _rank(row.platform_status):
                row.platform_status = status
            if status in _FAILED:
                row.status = DeliveryStatus.FAILED
                row.platform_error_code = form.ErrorCode
                row.last_error = f"twilio {status}: error {form.ErrorCode}"

    # --- sending ------------------------------------------------------------

    def _rest(self) -> Any:
        if self._client is None:
            from twilio.rest import Client

            self._http = _TimedHttpClient(self.settings.twilio_timeout_seconds)
            # The library reads TWILIO_EDGE/TWILIO_REGION from os.environ unless
            # given a mapping (a non-empty one: an empty one means os.environ);
            # they would rewrite the host TWILIO_API_BASE names.
            client = Client(
                self._account_sid,
                self._auth_token,
                http_client=self._http,
                environment=_NO_ENVIRONMENT,
            )
            if self.settings.twilio_api_base:
                # Every Messages URL is built from the Api domain's base_url
                # (twilio/base/domain.py: Domain.absolute_url).
                client.api.base_url = self.settings.twilio_api_base.rstrip("/")
            self._client = client
        return self._client

    async def _target(self, chat_id: str) -> tuple[str, datetime | None] | None:
        """The number of the chat and the time of the customer's last message."""
        async with self._sessions()() as session:
            row = (
                await session.execute(
                    select(ChannelAddress.address_enc, Conversation.last_customer_message_at)
                    .select_from(ChannelAddress)
                    .outerjoin(
                        Conversation,
                        and_(
                            Conversation.channel == ChannelAddress.channel,
                            Conversation.chat_id == ChannelAddress.address_hash,
                        ),
                    )
                    .where(
                        ChannelAddress.channel == CHANNEL,
                        ChannelAddress.address_hash == chat_id,
                    )
                )
            ).first()
        if row is None:
            return None
        return self._vault.decrypt(row[0]), row[1]

    def _status_callback(self, message_id: int | None) -> str:
        url = self._public_base + STATUS_PATH
        return f"{url}?m={message_id}" if message_id is not None else url

    async def send(
        self,
        chat_id: str,
        reply: Reply,
        *,
        message_id: int | None = None,
        at: datetime | None = None,
        sender: str = "bot",
    ) -> None:
        try:
            target = await self._target(chat_id)
        except (SQLAlchemyError, OSError) as exc:
            raise DeliveryError(f"storage unavailable: {type(exc).__name__}") from exc
        if target is None:
            raise PermanentDeliveryError("no stored address for this chat")
        number, last_message_at = target
        within = last_message_at is not None and _utcnow() - last_message_at <= WINDOW
        calls: list[dict[str, str]]
        if within:
            calls = [{"body": piece} for piece in split_body(render_text(reply))]
        else:
            template = self.settings.twilio_templates.get(REPLY_TEMPLATE)
            if template is None:
                # Held for an operator: Twilio would refuse free text (63016).
                raise PermanentDeliveryError(OUTSIDE_WINDOW)
            variable = render_text(reply)[:MAX_TEMPLATE_VARIABLE_CHARS]
            calls = [
                {
                    "content_sid": template,
                    "content_variables": json.dumps({"1": variable}, ensure_ascii=False),
                }
            ]
        sent: Any = None
        for call in calls:
            await self.pacer.pace((self.pacer.key("sender", self._from), self._sender_rate))
            sent = await self._create(
                message_id,
                to=f"whatsapp:{number}",
                from_=self._from,
                status_callback=self._status_callback(message_id),
                **call,
            )
        if message_id is not None and sent is not None:
            await self._record_sent(message_id, str(sent.sid), sent.status)

    async def _create(self, message_id: int | None, **fields: str) -> Any:
        try:
            return await self._rest().messages.create_async(**fields)
        except TwilioException as exc:
            status = int(getattr(exc, "status", 0) or 0)
            code = getattr(exc, "code", None)
            code = int(code) if isinstance(code, int | str) and str(code).isdigit() else None
            if status == 429:
                raise RetryAfter(DEFAULT_RETRY_AFTER, f"twilio 429 (error {code})") from exc
            if status >= 500 or status in (0, 401, 403):
                # Twilio's side or our credentials: worth another try later.
                raise DeliveryError(f"twilio HTTP {status} (error {code})") from exc
            if message_id is not None:
                await self._record_error(message_id, code)
            raise TwilioRejected(code, status) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"twilio unreachable: {type(exc).__name__}") from exc

    async def _record_sent(self, message_id: int, sid: str, status: str | None) -> None:
        try:
            async with self._sessions().begin() as session:
                row = await session.scalar(
                    select(OutboxEntry).where(
                        OutboxEntry.channel == CHANNEL, OutboxEntry.message_id == message_id
                    )
                )
                if row is None:
                    return
                row.platform_message_id = sid
                if _rank(status) > _rank(row.platform_status):
                    row.platform_status = status
        except (SQLAlchemyError, OSError) as exc:
            # Sent all the same: resending would duplicate it; status callbacks
            # still find the row through their URL.
            log.warning("whatsapp: the SID could not be stored (%s)", type(exc).__name__)

    async def _record_error(self, message_id: int, code: int | None) -> None:
        try:
            async with self._sessions().begin() as session:
                await session.execute(
                    update(OutboxEntry)
                    .where(OutboxEntry.channel == CHANNEL, OutboxEntry.message_id == message_id)
                    .values(platform_status="failed", platform_error_code=code)
                )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("whatsapp: the error code could not be stored (%s)", type(exc).__name__)


def _unavailable() -> Response:
    return Response(
        "temporarily unavailable, retry", status_code=503, media_type="text/plain",
        headers={"Retry-After": "5"},
    )  # fmt: skip
