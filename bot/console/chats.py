"""The console's conversation API: queue, my chats, one chat, and acting on it.

Every operation on a conversation is the operator service's
(bot/operators/service.py), the one API the console and the Telegram desk
share; this module only checks who asks, translates its errors into HTTP
answers and adds what only the console shows: the customer card, the
WhatsApp window, canned responses typed as ``/shortcut``, and appeals.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exception_handlers import http_exception_handler
from pydantic import BaseModel, Field
from sqlalchemy import select

from bot.channels.whatsapp import CHANNEL as WHATSAPP
from bot.channels.whatsapp import REPLY_TEMPLATE, WINDOW
from bot.console import texts
from bot.console.auth import container_of, csrf_protected, require_role
from bot.console.serialize import jsonable
from bot.operators import service as ops
from config import Settings
from dialogs.messages import Reply
from handlers import appeals as appeal_handlers
from handlers import canned as canned_handlers
from handlers import customers
from handlers.operators import list_operators
from storage.models import (
    AppealCategory,
    AppealStatus,
    Conversation,
    Operator,
    OperatorRole,
    Presence,
    Sender,
)

log = logging.getLogger(__name__)

OperatorUser = Annotated[Operator, Depends(require_role(OperatorRole.OPERATOR))]
Csrf = Depends(csrf_protected)
MAX_REPLY_CHARS = 4000
MAX_NOTE_CHARS = 2000


class TextBody(BaseModel):
    text: str = Field(max_length=MAX_REPLY_CHARS)


class TransferBody(BaseModel):
    to_operator_id: int


class PresenceBody(BaseModel):
    presence: Presence


class NewAppealBody(BaseModel):
    category: AppealCategory
    description: str = Field(max_length=appeal_handlers.MAX_DESCRIPTION_CHARS)
    account_id: int | None = None


class StatusBody(BaseModel):
    status: AppealStatus
    comment: str | None = Field(default=None, max_length=2000)


def _now() -> datetime:
    return datetime.now(UTC)


def operator_error(exc: ops.OperatorError) -> HTTPException:
    if isinstance(exc, ops.UnknownConversation):
        return HTTPException(404, texts.UNKNOWN_CHAT)
    if isinstance(exc, ops.UnknownOperator):
        return HTTPException(404, texts.UNKNOWN_OPERATOR)
    if isinstance(exc, ops.NotOwner):
        return HTTPException(409, texts.NOT_OWNER)
    if isinstance(exc, ops.AlreadyTaken):
        return HTTPException(409, texts.ALREADY_TAKEN)
    if isinstance(exc, ops.EmptyText):
        return HTTPException(422, texts.EMPTY_TEXT)
    if isinstance(exc, ops.OperatorUnavailable):
        return HTTPException(409, texts.OPERATOR_UNAVAILABLE)
    return HTTPException(409, texts.NOT_AVAILABLE.format(reason=type(exc).__name__))


async def operator_error_handler(request: Request, exc: Exception) -> Response:
    """The app's handler for :class:`OperatorError` raised by any console
    route: the status and wording of :func:`operator_error`."""
    assert isinstance(exc, ops.OperatorError)
    return await http_exception_handler(request, operator_error(exc))


def whatsapp_window(
    settings: Settings, channel: str, last_customer_at: datetime | None, now: datetime
) -> dict[str, Any] | None:
    """WhatsApp allows free text within 24 hours of the customer's last
    message; outside it a reply goes as the approved template, if there is one."""
    if channel != WHATSAPP:
        return None
    closes = last_customer_at + WINDOW if last_customer_at is not None else None
    template = settings.twilio_templates.get(REPLY_TEMPLATE)
    return {
        "open": closes is not None and closes > now,
        "closes_at": closes.isoformat() if closes is not None else None,
        "template": template is not None,
    }


async def expand_canned(request: Request, text: str, operator: Operator) -> str:
    """``/shortcut`` as the whole reply becomes that canned response."""
    stripped = text.strip()
    if not stripped.startswith("/") or " " in stripped:
        return text
    try:
        key = canned_handlers.normalize_shortcut(stripped)
    except canned_handlers.CannedError:
        return text
    async with container_of(request).session_factory() as session:
        for row in await canned_handlers.list_canned(session):
            if row.shortcut == key:
                return row.text.replace("{operator}", operator.display_name)
    return text


def make_chat_router() -> APIRouter:
    router = APIRouter(prefix="/api")

    @router.get("/queue")
    async def queue(request: Request, _op: OperatorUser) -> dict[str, Any]:
        items = await container_of(request).operators.queue()
        return {"queue": jsonable(items)}

    @router.get("/chats")
    async def my_chats(request: Request, op: OperatorUser) -> dict[str, Any]:
        items = await container_of(request).operators.chats_of(op.id)
        return {"chats": jsonable(items)}

    @router.get("/operators")
    async def colleagues(request: Request, op: OperatorUser) -> dict[str, Any]:
        """Who a chat can be transferred to (active and not offline)."""
        async with container_of(request).session_factory() as session:
            rows = await list_operators(session)
        return {
            "operators": [
                {"id": o.id, "display_name": o.display_name, "presence": o.presence.value}
                for o in rows
                if o.active and o.presence is not Presence.OFFLINE and o.id != op.id
            ]
        }

    @router.get("/chats/{conversation_id}")
    async def chat(request: Request, conversation_id: int, op: OperatorUser) -> dict[str, Any]:
        c = container_of(request)
        view = await c.operators.chat(conversation_id)
        async with c.session_factory() as session:
            card = await customers.customer_card(session, conversation_id)
        return {
            "chat": jsonable(view),
            "mine": view.owner_operator_id == op.id,
            "card": jsonable(card),
            "whatsapp": whatsapp_window(
                c.settings, view.channel, card.last_customer_message_at, _now()
            ),
        }

    @router.post("/chats/{conversation_id}/take", dependencies=[Csrf])
    async def take(request: Request, conversation_id: int, op: OperatorUser) -> dict[str, str]:
        await container_of(request).operators.take(op.id, conversation_id)
        return {"status": "taken"}

    @router.post("/chats/{conversation_id}/reply", dependencies=[Csrf])
    async def reply(
        request: Request, conversation_id: int, body: TextBody, op: OperatorUser
    ) -> dict[str, str]:
        text = await expand_canned(request, body.text, op)
        if len(text) > MAX_REPLY_CHARS:
            raise HTTPException(422, texts.TEXT_TOO_LONG)
        await container_of(request).operators.reply(op.id, conversation_id, text)
        return {"status": "sent", "text": text}

    @router.post("/chats/{conversation_id}/transfer", dependencies=[Csrf])
    async def transfer(
        request: Request, conversation_id: int, body: TransferBody, op: OperatorUser
    ) -> dict[str, str]:
        await container_of(request).operators.transfer(op.id, conversation_id, body.to_operator_id)
        return {"status": "transferred"}

    @router.post("/chats/{conversation_id}/return", dependencies=[Csrf])
    async def return_to_bot(
        request: Request, conversation_id: int, op: OperatorUser
    ) -> dict[str, str]:
        await container_of(request).operators.return_to_bot(op.id, conversation_id)
        return {"status": "returned"}

    @router.post("/chats/{conversation_id}/resolve", dependencies=[Csrf])
    async def resolve(request: Request, conversation_id: int, op: OperatorUser) -> dict[str, str]:
        await container_of(request).operators.resolve(op.id, conversation_id)
        return {"status": "resolved"}

    @router.post("/chats/{conversation_id}/notes", dependencies=[Csrf])
    async def note(
        request: Request, conversation_id: int, body: TextBody, op: OperatorUser
    ) -> dict[str, str]:
        if len(body.text) > MAX_NOTE_CHARS:
            raise HTTPException(422, texts.TEXT_TOO_LONG)
        await container_of(request).operators.add_note(op.id, conversation_id, body.text)
        return {"status": "saved"}

    @router.post("/presence", dependencies=[Csrf])
    async def presence(request: Request, body: PresenceBody, op: OperatorUser) -> dict[str, str]:
        await container_of(request).operators.set_presence(op.id, body.presence)
        return {"presence": body.presence.value}

    # ------------------------------------------------------------ appeals

    @router.post("/chats/{conversation_id}/appeals", dependencies=[Csrf], status_code=201)
    async def register_appeal(
        request: Request, conversation_id: int, body: NewAppealBody, op: OperatorUser
    ) -> dict[str, Any]:
        """Register an appeal for the chat's customer; the customer is told its number."""
        c = container_of(request)
        async with c.session_factory() as session:
            try:
                card = await customers.customer_card(session, conversation_id)
            except customers.UnknownCustomerConversation as exc:
                raise HTTPException(404, texts.UNKNOWN_CHAT) from exc
        account_ids = {a.id for a in card.accounts}
        account_id = body.account_id
        if account_id is None:
            account_id = next((a.id for a in card.accounts if a.current), None)
        elif account_id not in account_ids:
            raise HTTPException(422, texts.NOT_CUSTOMERS_ACCOUNT)
        now = _now()
        async with c.conversations.transaction() as session:
            try:
                info = await appeal_handlers.create_appeal(
                    session,
                    c.vault,
                    c.settings,
                    appeal_handlers.NewAppeal(
                        category=body.category,
                        description=body.description,
                        account_id=account_id,
                        conversation_id=conversation_id,
                        channel=card.channel,
                    ),
                    now,
                )
            except appeal_handlers.InvalidAppeal as exc:
                raise HTTPException(422, texts.BAD_APPEAL) from exc
            chat_id = await session.scalar(
                select(Conversation.chat_id).where(Conversation.id == conversation_id)
            )
            await session.commit()
        assert chat_id is not None  # the card found the conversation
        due = info.decision_due_at.astimezone(c.settings.tz).strftime("%d.%m.%Y")
        notice = texts.APPEAL_REGISTERED.format(number=info.number, due=due)
        await c.conversations.post(card.channel, chat_id, [Reply(notice)], sender=Sender.SYSTEM)
        return {"appeal": jsonable(info)}

    @router.post("/appeals/{appeal_id}/status", dependencies=[Csrf])
    async def appeal_status(
        request: Request, appeal_id: int, body: StatusBody, op: OperatorUser
    ) -> dict[str, Any]:
        """Move an appeal on; the customer is told on their channel, once (bot/notices.py)."""
        c = container_of(request)
        async with c.conversations.transaction() as session:
            try:
                info = await appeal_handlers.change_status(
                    session, appeal_id, body.status, body.comment, _now(), operator_id=op.id
                )
            except appeal_handlers.AppealNotFound as exc:
                raise HTTPException(404, texts.UNKNOWN_APPEAL) from exc
            except appeal_handlers.AppealError as exc:
                raise HTTPException(409, texts.BAD_TRANSITION) from exc
            await session.commit()
        # Tell the customer now rather than at the next scheduled pass; the
        # notice is claimed once, so a pass running meanwhile cannot repeat it.
        try:
            await c.notices.send_pending()
        except Exception as exc:
            log.warning(
                "appeal notice not sent at once (%s); the next pass sends it",
                type(exc).__name__,
            )
        return {"appeal": jsonable(info)}

    return router
