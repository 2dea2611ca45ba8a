"""The relational model.

Money is ``Numeric(12, 2)`` read as ``Decimal``; times are timezone-aware UTC.
Personal data (SNILS, phone numbers) is never stored in the clear: SNILS as a
keyed hash (it is only ever compared), phones encrypted (operators must be
able to call back) plus a masked form for display. See ``storage/crypto.py``.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(12, 2)
Volume = Numeric(14, 3)
# SQLite has no native BIGINT autoincrement; keep ids as Integer there.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL: plain json has no equality operator, so DISTINCT, UNION
# or GROUP BY over a row with a json column fails there. Python None is SQL
# NULL (not the JSON 'null'), so ``IS NULL`` finds it on both dialects.
JsonDoc = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _enum(cls: type[enum.Enum]) -> SAEnum:
    # Stored as plain strings (no native PG enum) so adding a value is a
    # code change, not a migration that locks the table.
    return SAEnum(
        cls,
        native_enum=False,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class UTCDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that always reads back aware UTC.

    SQLite has no time zone type: plain ``DateTime(timezone=True)`` drops the
    offset without converting (12:00+03:00 is stored as 12:00) and returns
    naive values. This converts to UTC on the way in (naive values are taken
    as UTC, like PostgreSQL does) and attaches UTC on the way out, so both
    dialects behave the same. The column type in the database is unchanged.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - read once by SQLAlchemy's declarative setup
        datetime: UTCDateTime(),
        dict[str, Any]: JsonDoc,
        Decimal: Money,
    }


class MeterType(enum.StrEnum):
    HEATING = "heating"
    HOT_WATER = "hot_water"


class Service(enum.StrEnum):
    HEATING = "heating"
    HOT_WATER = "hot_water"
    OTHER = "other"


class AppealCategory(enum.StrEnum):
    CHARGES = "charges"  # charges and recalculation
    HEATING_QUALITY = "heating_quality"
    HOT_WATER_QUALITY = "hot_water_quality"
    METER = "meter"
    EMERGENCY = "emergency"  # no heating, a leak: accepted 24/7
    CALLBACK = "callback"  # an out-of-hours escalation
    DEBT_CERTIFICATE = "debt_certificate"  # a request for a no-debt certificate
    OTHER = "other"


class AppealStatus(enum.StrEnum):
    REGISTERED = "registered"
    IN_REVIEW = "in_review"
    ANSWERED = "answered"
    RESOLVED = "resolved"
    REJECTED = "rejected"
    CLOSED = "closed"

    @property
    def is_open(self) -> bool:
        return self in {AppealStatus.REGISTERED, AppealStatus.IN_REVIEW}


class Priority(enum.StrEnum):
    NORMAL = "normal"
    HIGH = "high"


class TaskKind(enum.StrEnum):
    METER_CHECK = "meter_check"
    EMERGENCY_DISPATCH = "emergency_dispatch"
    CALLBACK = "callback"
    # An appeal past its decision deadline (handlers.appeals.escalate_overdue).
    APPEAL_OVERDUE = "appeal_overdue"


class TaskStatus(enum.StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class OutageKind(enum.StrEnum):
    PLANNED = "planned"
    EMERGENCY = "emergency"


class ConversationStatus(enum.StrEnum):
    BOT = "bot"  # the bot answers
    QUEUED = "queued"  # waiting in the operators' queue
    OPERATOR = "operator"  # an operator owns it
    CLOSED = "closed"


class Owner(enum.StrEnum):
    """Who answers the customer: kept apart from the conversation's status.

    The bot answers only while it owns the chat; while the queue or an
    operator owns it, the customer's messages are stored and shown to the
    operators, and the bot stays silent.
    """

    BOT = "bot"
    QUEUE = "queue"
    OPERATOR = "operator"


class OperatorRole(enum.StrEnum):
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"  # also sees the KPIs
    ADMIN = "admin"  # also manages operator accounts

    @property
    def rank(self) -> int:
        return {"operator": 0, "supervisor": 1, "admin": 2}[self.value]


class Presence(enum.StrEnum):
    ONLINE = "online"  # takes chats from the queue
    AWAY = "away"  # keeps their chats, takes no new ones
    OFFLINE = "offline"


class Direction(enum.StrEnum):
    IN = "in"
    OUT = "out"


class Sender(enum.StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"
    OPERATOR = "operator"
    SYSTEM = "system"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class HandoffStatus(enum.StrEnum):
    WAITING = "waiting"
    TAKEN = "taken"
    CLOSED = "closed"


class HandoffOutcome(enum.StrEnum):
    """How a queue entry ended (``HandoffQueueEntry.outcome``)."""

    RESOLVED = "resolved"  # an operator resolved the chat
    RETURNED = "returned"  # an operator handed it back to the bot
    LEFT = "left"  # the customer left the queue
    CALLBACK = "callback"  # out of hours: a call-back request instead


class BookingStatus(enum.StrEnum):
    BOOKED = "booked"
    CANCELLED = "cancelled"


def _now_default() -> Any:
    return func.now()


# --------------------------------------------------------------------------
# Customers and their accounts
# --------------------------------------------------------------------------


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    full_name: Mapped[str] = mapped_column(String(200))
    # HMAC-SHA256 of the 11 SNILS digits, hex. Never the SNILS itself.
    snils_hash: Mapped[str] = mapped_column(String(64), index=True)
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_masked: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(server_default=_now_default())

    accounts: Mapped[list[Account]] = relationship(back_populates="customer")


class Account(Base):
    """A personal account (лицевой счёт)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(12), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    city: Mapped[str] = mapped_column(String(100), default="Курск")
    street: Mapped[str] = mapped_column(String(200))
    house: Mapped[str] = mapped_column(String(20))
    flat: Mapped[str | None] = mapped_column(String(20))
    area_m2: Mapped[Decimal | None] = mapped_column(Numeric(8, 2))
    # Balance at the start of the ledger; the current one is derived from
    # charges and payments.
    opening_balance: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    created_at: Mapped[datetime] = mapped_column(server_default=_now_default())

    customer: Mapped[Customer] = relationship(back_populates="accounts")
    meters: Mapped[list[Meter]] = relationship(back_populates="account")

    @property
    def address(self) -> str:
        flat = f", кв. {self.flat}" if self.flat else ""
        return f"г. {self.city}, {self.street}, д. {self.house}{flat}"


class Meter(Base):
    __tablename__ = "meters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    meter_type: Mapped[MeterType] = mapped_column(_enum(MeterType))
    serial: Mapped[str] = mapped_column(String(40))
    unit: Mapped[str] = mapped_column(String(16))  # "Гкал", "м³"
    installed_on: Mapped[date | None] = mapped_column(Date)
    next_check_on: Mapped[date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    account: Mapped[Account] = relationship(back_populates="meters")


class Reading(Base):
    __tablename__ = "readings"
    __table_args__ = (Index("ix_readings_meter_taken", "meter_id", "taken_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"))
    value: Mapped[Decimal] = mapped_column(Volume)
    taken_at: Mapped[datetime]
    channel: Mapped[str | None] = mapped_column(String(20))
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(server_default=_now_default())


class Charge(Base):
    __tablename__ = "charges"
    __table_args__ = (UniqueConstraint("account_id", "period", "service"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    period: Mapped[date] = mapped_column(Date)  # first day of the month
    service: Mapped[Service] = mapped_column(_enum(Service))
    volume: Mapped[Decimal | None] = mapped_column(Volume)
    tariff: Mapped[Decimal | None] = mapped_column(Money)
    amount: Mapped[Decimal] = mapped_column(Money)


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    paid_at: Mapped[datetime]
    amount: Mapped[Decimal] = mapped_column(Money)
    method: Mapped[str] = mapped_column(String(40))  # "Сбербанк Онлайн", "касса"...


class BonusEntry(Base):
    """EnergoBonus ledger: positive accruals, negative redemptions."""

    __tablename__ = "bonus_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    points: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class Tariff(Base):
    __tablename__ = "tariffs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    service: Mapped[Service] = mapped_column(_enum(Service))
    name: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(String(16))
    price: Mapped[Decimal] = mapped_column(Money)  # roubles per unit, VAT included
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(Text)


# --------------------------------------------------------------------------
# Appeals, tasks, outages, offices, connection
# --------------------------------------------------------------------------


class Appeal(Base):
    __tablename__ = "appeals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)  # A-2026-000123
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"), index=True)
    channel: Mapped[str | None] = mapped_column(String(20))
    category: Mapped[AppealCategory] = mapped_column(_enum(AppealCategory))
    description: Mapped[str] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(300))
    contact_phone_enc: Mapped[str | None] = mapped_column(Text)
    contact_phone_masked: Mapped[str | None] = mapped_column(String(32))
    # Where to send the answer (a certificate by e-mail): encrypted, with a mask.
    contact_email_enc: Mapped[str | None] = mapped_column(Text)
    contact_email_masked: Mapped[str | None] = mapped_column(String(80))
    priority: Mapped[Priority] = mapped_column(_enum(Priority), default=Priority.NORMAL)
    status: Mapped[AppealStatus] = mapped_column(
        _enum(AppealStatus), default=AppealStatus.REGISTERED
    )
    created_at: Mapped[datetime]
    review_due_at: Mapped[datetime]
    decision_due_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]

    history: Mapped[list[AppealStatusChange]] = relationship(
        back_populates="appeal", order_by="AppealStatusChange.changed_at"
    )


class AppealStatusChange(Base):
    __tablename__ = "appeal_status_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"), index=True)
    status: Mapped[AppealStatus] = mapped_column(_enum(AppealStatus))
    comment: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime]
    # Set once the customer has been told (or there was nobody to tell):
    # the notices worker claims a change by setting it.
    notified_at: Mapped[datetime | None]
    # Who changed it from the console; NULL for the bot and the deadline jobs.
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))

    appeal: Mapped[Appeal] = relationship(back_populates="history")


class AppealAttachment(Base):
    """A file the customer sent while filing an appeal, kept by the platform's
    own reference (a Telegram ``file_id``): staff fetch it from there."""

    __tablename__ = "appeal_attachments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id"), index=True)
    channel: Mapped[str | None] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(20))  # "photo", "document"
    file_id: Mapped[str] = mapped_column(String(256))
    mime_type: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]


class Task(Base):
    """Work for the company's staff: a meter check, a dispatch, a call-back."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[TaskKind] = mapped_column(_enum(TaskKind))
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus), default=TaskStatus.OPEN)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    meter_id: Mapped[int | None] = mapped_column(ForeignKey("meters.id"))
    reading_id: Mapped[int | None] = mapped_column(ForeignKey("readings.id"))
    appeal_id: Mapped[int | None] = mapped_column(ForeignKey("appeals.id"))
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class Outage(Base):
    __tablename__ = "outages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[OutageKind] = mapped_column(_enum(OutageKind))
    service: Mapped[Service] = mapped_column(_enum(Service))
    street: Mapped[str] = mapped_column(String(200), index=True)
    # Comma-separated house numbers; empty means the whole street.
    houses: Mapped[str] = mapped_column(String(500), default="")
    reason: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]


class Office(Base):
    __tablename__ = "offices"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300))
    phone: Mapped[str] = mapped_column(String(40))
    hours: Mapped[str] = mapped_column(String(300))

    slots: Mapped[list[OfficeSlot]] = relationship(back_populates="office")


class OfficeSlot(Base):
    __tablename__ = "office_slots"
    __table_args__ = (UniqueConstraint("office_id", "starts_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    office_id: Mapped[int] = mapped_column(ForeignKey("offices.id"))
    starts_at: Mapped[datetime]
    minutes: Mapped[int] = mapped_column(Integer, default=20)

    office: Mapped[Office] = relationship(back_populates="slots")


class OfficeBooking(Base):
    __tablename__ = "office_bookings"
    # One live booking per slot is enforced in the handler under the row lock
    # and by this partial-free unique key on (slot, active marker).
    __table_args__ = (UniqueConstraint("slot_id", "active_marker"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("office_slots.id"))
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identities.id"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    topic: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[BookingStatus] = mapped_column(
        _enum(BookingStatus), default=BookingStatus.BOOKED
    )
    # 1 while booked, NULL once cancelled: NULLs never collide in a unique key.
    active_marker: Mapped[int | None] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]


class NetworkZone(Base):
    """A zone of the heat network with its spare capacity (demo table)."""

    __tablename__ = "network_zones"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(200))  # the CHP or boiler house
    # Comma-separated street names (lower case, without "ул.").
    streets: Mapped[str] = mapped_column(Text)
    spare_load_gcal_h: Mapped[Decimal] = mapped_column(Numeric(10, 4))


class ConnectionApplication(Base):
    __tablename__ = "connection_applications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)  # TP-2026-000001
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("channel_identities.id"))
    address: Mapped[str] = mapped_column(String(300))
    building_kind: Mapped[str] = mapped_column(String(100))
    load_gcal_h: Mapped[Decimal] = mapped_column(Numeric(10, 4))
    contact_enc: Mapped[str | None] = mapped_column(Text)
    contact_masked: Mapped[str | None] = mapped_column(String(32))
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("network_zones.id"))
    feasible: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(32), default="registered")
    created_at: Mapped[datetime]


class NumberSequence(Base):
    """Yearly counters for human-facing numbers (appeals, applications)."""

    __tablename__ = "number_sequences"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)  # "A-2026"
    last_value: Mapped[int] = mapped_column(Integer, default=0)


# --------------------------------------------------------------------------
# Chats: identities, conversations, messages, inbox/outbox, handoff
# --------------------------------------------------------------------------


class ChannelIdentity(Base):
    """A person on one channel (channel + platform user id)."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    # Platform user id. A WhatsApp phone number or a Telegram user id is
    # personal data: stored as a keyed hash by the adapter, never in the clear.
    user_id: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str | None] = mapped_column(String(200))
    current_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    failed_link_attempts: Mapped[int] = mapped_column(Integer, default=0)
    link_locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=_now_default())


class AccountLink(Base):
    __tablename__ = "account_links"
    __table_args__ = (UniqueConstraint("identity_id", "account_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identities.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    linked_at: Mapped[datetime]


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("channel", "chat_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    chat_id: Mapped[str] = mapped_column(String(128))
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identities.id"))
    status: Mapped[ConversationStatus] = mapped_column(
        _enum(ConversationStatus), default=ConversationStatus.BOT
    )
    # The dialog state (dialogs.state.DialogState as JSON). It lives here, not
    # in Redis, so that it commits in one transaction with the replies and
    # their outbox rows.
    state: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    operator: Mapped[str | None] = mapped_column(String(100))
    # Who answers the customer now (see ``Owner``); ``owner_operator_id`` is
    # set exactly when ``owner`` is OPERATOR.
    owner: Mapped[Owner] = mapped_column(_enum(Owner), default=Owner.BOT, server_default="bot")
    owner_operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), index=True)
    # The operators' Telegram desk: the forum topic (message_thread_id) that
    # carries this conversation in OPERATOR_CHAT_ID, once one is opened.
    desk_topic_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    # What the desk has shown in that topic: the last message relayed there,
    # and the ownership last announced (``queue``, ``operator:<id>``).
    desk_message_id: Mapped[int | None] = mapped_column(BigInteger)
    desk_owner: Mapped[str | None] = mapped_column(String(40))
    last_customer_message_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=_now_default())
    updated_at: Mapped[datetime] = mapped_column(server_default=_now_default(), onupdate=func.now())


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_id_id", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    direction: Mapped[Direction] = mapped_column(_enum(Direction))
    sender: Mapped[Sender] = mapped_column(_enum(Sender))
    text: Mapped[str] = mapped_column(Text)
    # Buttons and other structured parts of an outgoing message.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    intent: Mapped[str | None] = mapped_column(String(40))
    # The operator who wrote it (sender OPERATOR), for per-operator KPIs.
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    created_at: Mapped[datetime]


class InboxEntry(Base):
    """Every accepted inbound delivery, unique per platform message id."""

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("channel", "platform_message_id"),
        # Replay after a crash reads the unprocessed entries: a partial index
        # keeps that cheap however long the inbox grows.
        Index(
            "ix_inbox_unprocessed",
            "id",
            postgresql_where=text("processed_at IS NULL"),
            sqlite_where=text("processed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    platform_message_id: Mapped[str] = mapped_column(String(128))
    chat_id: Mapped[str] = mapped_column(String(128))
    # The normalised InboundMessage, so that an unprocessed entry can be
    # replayed after a crash.
    body: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class OutboxEntry(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    channel: Mapped[str] = mapped_column(String(20))
    chat_id: Mapped[str] = mapped_column(String(128))
    body: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # Reply.to_json()
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    # What the platform said about the sent message, for channels that report
    # it (Twilio: the message SID, queued/sent/delivered/read/failed and the
    # error code of a failure).
    platform_message_id: Mapped[str | None] = mapped_column(String(64), index=True)
    platform_status: Mapped[str | None] = mapped_column(String(20))
    platform_error_code: Mapped[int | None] = mapped_column(Integer)


class ChannelAddress(Base):
    """The address needed to reply on a channel whose chat id is a keyed hash.

    A WhatsApp customer's chat id is a keyed hash of their phone number, a
    Telegram customer's of their Telegram id
    (``PersonalDataVault.hash_address``); the number or id itself, needed
    only to send, is kept here encrypted.
    """

    __tablename__ = "channel_addresses"
    __table_args__ = (UniqueConstraint("channel", "address_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    address_hash: Mapped[str] = mapped_column(String(128))
    address_enc: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class HandoffQueueEntry(Base):
    __tablename__ = "handoff_queue"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    reason: Mapped[str] = mapped_column(String(40))
    summary: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[HandoffStatus] = mapped_column(
        _enum(HandoffStatus), default=HandoffStatus.WAITING
    )
    out_of_hours: Mapped[bool] = mapped_column(Boolean, default=False)
    operator: Mapped[str | None] = mapped_column(String(100))
    # The operator who took it (the last one, after a transfer).
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), index=True)
    # What the bot already knew, for the operator's card: account number,
    # topic, the form's collected slots (redacted), the handoff reason.
    details: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    outcome: Mapped[HandoffOutcome | None] = mapped_column(_enum(HandoffOutcome))
    created_at: Mapped[datetime]
    taken_at: Mapped[datetime | None]
    # The first operator message after the handoff (first response time).
    first_response_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("channel", "chat_id", "topic"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    chat_id: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(40), default="news")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime]


# --------------------------------------------------------------------------
# Operators: accounts, console sessions, notes, canned responses, NPS
# --------------------------------------------------------------------------


class Operator(Base):
    """A person at the console (or in the operators' Telegram group)."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[OperatorRole] = mapped_column(_enum(OperatorRole))
    # argon2id hash (argon2-cffi's PasswordHasher); never the password.
    password_hash: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    presence: Mapped[Presence] = mapped_column(_enum(Presence), default=Presence.OFFLINE)
    # Chats at once; None means the OPERATOR_CAPACITY setting.
    capacity: Mapped[int | None] = mapped_column(Integer)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    # The operator's Telegram user id, as a keyed hash (storage.keys), to
    # recognise them in the operators' desk group.
    telegram_user_hash: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime]
    presence_changed_at: Mapped[datetime | None]


class OperatorSession(Base):
    """A console login: the cookie carries the token, this row its hash."""

    __tablename__ = "operator_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class OperatorNote(Base):
    """A private note on a conversation: operators see it, the customer never."""

    __tablename__ = "operator_notes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class CannedResponse(Base):
    """A ready answer, typed in the reply box as ``/shortcut``."""

    __tablename__ = "canned_responses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shortcut: Mapped[str] = mapped_column(String(40), unique=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class NpsResponse(Base):
    """The customer's answer to the NPS question after a resolved chat."""

    __tablename__ = "nps_responses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    handoff_id: Mapped[int | None] = mapped_column(ForeignKey("handoff_queue.id"))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    channel: Mapped[str] = mapped_column(String(20))
    score: Mapped[int] = mapped_column(Integer)  # 0..10
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
