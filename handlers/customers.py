"""The customer card an operator sees next to a chat.

A customer is who owns the accounts, not a chat: a chat identity linked to an
account of a customer joins every other identity linked to an account of the
same customer (Telegram, WhatsApp, the widget), and the card shows them as one
person: their accounts with the balance and the last readings, their appeals,
and their conversations on every channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.appeals import TRANSITIONS
from handlers.billing import balance
from handlers.errors import HandlerError
from storage.models import (
    Account,
    AccountLink,
    Appeal,
    AppealCategory,
    AppealStatus,
    ChannelIdentity,
    Conversation,
    Customer,
    HandoffOutcome,
    HandoffQueueEntry,
    Message,
    Meter,
    MeterType,
    Reading,
)

READINGS_PER_METER = 3
APPEALS_SHOWN = 10
HANDOFFS_SHOWN = 10


class UnknownCustomerConversation(HandlerError):
    """No conversation with that id."""


@dataclass(frozen=True)
class ReadingLine:
    value: Decimal
    taken_at: datetime
    flagged: bool


@dataclass(frozen=True)
class MeterCard:
    meter_type: MeterType
    serial: str
    unit: str
    readings: tuple[ReadingLine, ...]  # latest first


@dataclass(frozen=True)
class AccountCard:
    id: int
    number: str
    address: str
    owner: str
    balance: Decimal  # positive: a debt
    current: bool  # the chat's current account
    meters: tuple[MeterCard, ...]


@dataclass(frozen=True)
class AppealLine:
    id: int
    number: str
    category: AppealCategory
    status: AppealStatus
    description: str
    created_at: datetime
    decision_due_at: datetime
    account_number: str | None
    next_statuses: tuple[AppealStatus, ...]  # where an operator may move it

    @property
    def is_open(self) -> bool:
        return self.status.is_open


@dataclass(frozen=True)
class ConversationLine:
    id: int
    channel: str
    display_name: str | None
    started_at: datetime
    last_message_at: datetime | None
    messages: int
    current: bool  # the chat the card is shown for


@dataclass(frozen=True)
class HandoffLine:
    conversation_id: int
    channel: str
    created_at: datetime
    reason: str
    outcome: HandoffOutcome | None


@dataclass(frozen=True)
class CustomerCard:
    conversation_id: int
    channel: str
    display_name: str | None
    names: tuple[str, ...]  # the account owners' names, if linked
    phone_masked: str | None
    accounts: tuple[AccountCard, ...]
    appeals: tuple[AppealLine, ...]  # open ones first, then the latest
    conversations: tuple[ConversationLine, ...]  # every channel, latest first
    handoffs: tuple[HandoffLine, ...]  # earlier escalations, latest first
    last_customer_message_at: datetime | None  # of this chat

    @property
    def linked(self) -> bool:
        return bool(self.accounts)

    @property
    def open_appeals(self) -> tuple[AppealLine, ...]:
        return tuple(a for a in self.appeals if a.is_open)


async def related_identity_ids(session: AsyncSession, identity: ChannelIdentity) -> list[int]:
    """This identity and every other one linked to an account of the same customers."""
    own_accounts = select(AccountLink.account_id).where(AccountLink.identity_id == identity.id)
    account_filter: ColumnElement[bool] = Account.id.in_(own_accounts)
    if identity.current_account_id is not None:
        account_filter = or_(account_filter, Account.id == identity.current_account_id)
    customers = select(Account.customer_id).where(account_filter)
    rows = await session.scalars(
        select(AccountLink.identity_id)
        .join(Account, Account.id == AccountLink.account_id)
        .where(Account.customer_id.in_(customers))
        .distinct()
    )
    return sorted({identity.id, *rows})


async def _readings(session: AsyncSession, meter_ids: list[int]) -> dict[int, list[ReadingLine]]:
    if not meter_ids:
        return {}
    ranked = (
        select(
            Reading.meter_id,
            Reading.value,
            Reading.taken_at,
            Reading.flagged,
            func.row_number()
            .over(
                partition_by=Reading.meter_id, order_by=(Reading.taken_at.desc(), Reading.id.desc())
            )
            .label("n"),
        )
        .where(Reading.meter_id.in_(meter_ids))
        .subquery()
    )
    rows = await session.execute(
        select(ranked.c.meter_id, ranked.c.value, ranked.c.taken_at, ranked.c.flagged)
        .where(ranked.c.n <= READINGS_PER_METER)
        .order_by(ranked.c.meter_id, ranked.c.n)
    )
    out: dict[int, list[ReadingLine]] = {}
    for meter_id, value, taken_at, flagged in rows:
        out.setdefault(meter_id, []).append(ReadingLine(value, taken_at, bool(flagged)))
    return out


async def customer_card(session: AsyncSession, conversation_id: int) -> CustomerCard:
    conv = await session.get(Conversation, conversation_id)
    if conv is None:
        raise UnknownCustomerConversation(str(conversation_id))
    identity = await session.get(ChannelIdentity, conv.identity_id)
    assert identity is not None  # a foreign key
    identity_ids = await related_identity_ids(session, identity)

    account_rows = (
        await session.execute(
            select(Account, Customer)
            .join(Customer, Customer.id == Account.customer_id)
            .where(
                or_(
                    Account.id.in_(
                        select(AccountLink.account_id).where(
                            AccountLink.identity_id.in_(identity_ids)
                        )
                    ),
                    Account.id == identity.current_account_id,
                )
            )
            .order_by(Account.number)
        )
    ).all()
    accounts = [a for a, _ in account_rows]
    customers = {c.id: c for _, c in account_rows}
    meters = list(
        await session.scalars(
            select(Meter)
            .where(Meter.account_id.in_([a.id for a in accounts]), Meter.active.is_(True))
            .order_by(Meter.meter_type, Meter.id)
        )
    )
    readings = await _readings(session, [m.id for m in meters])
    account_cards = []
    for account, owner in account_rows:
        account_cards.append(
            AccountCard(
                id=account.id,
                number=account.number,
                address=account.address,
                owner=owner.full_name,
                balance=await balance(session, account),
                current=account.id == identity.current_account_id,
                meters=tuple(
                    MeterCard(m.meter_type, m.serial, m.unit, tuple(readings.get(m.id, ())))
                    for m in meters
                    if m.account_id == account.id
                ),
            )
        )

    conv_rows = (
        await session.execute(
            select(
                Conversation.id,
                Conversation.channel,
                ChannelIdentity.display_name,
                Conversation.created_at,
                func.max(Message.created_at),
                func.count(Message.id),
            )
            .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
            .outerjoin(Message, Message.conversation_id == Conversation.id)
            .where(Conversation.identity_id.in_(identity_ids))
            .group_by(
                Conversation.id,
                Conversation.channel,
                ChannelIdentity.display_name,
                Conversation.created_at,
            )
        )
    ).all()
    conversations = sorted(
        (
            ConversationLine(
                id=c_id,
                channel=channel,
                display_name=name,
                started_at=started,
                last_message_at=last,
                messages=int(count or 0),
                current=c_id == conv.id,
            )
            for c_id, channel, name, started, last, count in conv_rows
        ),
        key=lambda c: c.last_message_at or c.started_at,
        reverse=True,
    )
    conversation_ids = [c.id for c in conversations]

    account_ids = [a.id for a in accounts]
    owned: ColumnElement[bool] = Appeal.conversation_id.in_(conversation_ids)
    if account_ids:
        owned = or_(owned, Appeal.account_id.in_(account_ids))
    open_statuses = [s for s in AppealStatus if s.is_open]
    appeal_rows = (
        await session.execute(
            select(Appeal, Account.number)
            .outerjoin(Account, Account.id == Appeal.account_id)
            .where(owned)
            .order_by(Appeal.status.in_(open_statuses).desc(), Appeal.created_at.desc())
            .limit(APPEALS_SHOWN)
        )
    ).all()
    appeals = tuple(
        AppealLine(
            id=a.id,
            number=a.number,
            category=a.category,
            status=a.status,
            description=a.description,
            created_at=a.created_at,
            decision_due_at=a.decision_due_at,
            account_number=number,
            next_statuses=tuple(s for s in AppealStatus if s in TRANSITIONS[a.status]),
        )
        for a, number in appeal_rows
    )

    handoff_rows = (
        await session.execute(
            select(HandoffQueueEntry, Conversation.channel)
            .join(Conversation, Conversation.id == HandoffQueueEntry.conversation_id)
            .where(HandoffQueueEntry.conversation_id.in_(conversation_ids))
            .order_by(HandoffQueueEntry.created_at.desc(), HandoffQueueEntry.id.desc())
            .limit(HANDOFFS_SHOWN)
        )
    ).all()
    handoffs = tuple(
        HandoffLine(h.conversation_id, channel, h.created_at, h.reason, h.outcome)
        for h, channel in handoff_rows
    )
    phone = next((c.phone_masked for c in customers.values() if c.phone_masked), None)
    return CustomerCard(
        conversation_id=conv.id,
        channel=conv.channel,
        display_name=identity.display_name,
        names=tuple(sorted({c.full_name for c in customers.values()})),
        phone_masked=phone,
        accounts=tuple(account_cards),
        appeals=appeals,
        conversations=tuple(conversations),
        handoffs=handoffs,
        last_customer_message_at=conv.last_customer_message_at,
    )
