"""The customer card: one customer across Telegram, WhatsApp and the widget."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.customers import UnknownCustomerConversation, customer_card
from storage.models import (
    Account,
    AccountLink,
    ChannelIdentity,
    Conversation,
    Direction,
    HandoffOutcome,
    HandoffQueueEntry,
    HandoffStatus,
    Message,
    Sender,
)
from tests.conftest import DemoContext


async def _chat(
    session: AsyncSession,
    channel: str,
    user: str,
    name: str,
    now_minus: timedelta,
    ctx: DemoContext,
    accounts: tuple[str, ...] = (),
    current: str | None = None,
) -> Conversation:
    at = ctx.now - now_minus
    identity = ChannelIdentity(channel=channel, user_id=user, display_name=name)
    session.add(identity)
    await session.flush()
    for number in accounts:
        account_id = await session.scalar(select(Account.id).where(Account.number == number))
        assert account_id is not None
        session.add(AccountLink(identity_id=identity.id, account_id=account_id, linked_at=at))
        if number == current:
            identity.current_account_id = account_id
    conv = Conversation(
        channel=channel, chat_id=user, identity_id=identity.id, last_customer_message_at=at
    )
    session.add(conv)
    await session.flush()
    session.add_all(
        [
            Message(
                conversation_id=conv.id,
                direction=Direction.IN,
                sender=Sender.CUSTOMER,
                text="Здравствуйте",
                created_at=at,
            ),
            Message(
                conversation_id=conv.id,
                direction=Direction.OUT,
                sender=Sender.BOT,
                text="Добрый день!",
                created_at=at + timedelta(seconds=1),
            ),
        ]
    )
    await session.flush()
    return conv


async def test_one_customer_on_three_channels_is_one_card(demo_data: DemoContext) -> None:
    async with demo_data.session_factory() as session:
        widget = await _chat(
            session, "webchat", "w-1", "Гость сайта", timedelta(minutes=5), demo_data,
            accounts=("1002003001",), current="1002003001",
        )  # fmt: skip
        telegram = await _chat(
            session, "telegram", "100500", "Иван", timedelta(days=3), demo_data,
            accounts=("1002003003",),
        )  # fmt: skip
        whatsapp = await _chat(
            session, "whatsapp", "hash-of-a-phone", "Иван П.", timedelta(days=10), demo_data,
            accounts=("1002003001",),
        )  # fmt: skip
        stranger = await _chat(
            session, "telegram", "777", "Анна", timedelta(days=1), demo_data,
            accounts=("1002003002",),
        )  # fmt: skip
        session.add(
            HandoffQueueEntry(
                conversation_id=telegram.id,
                reason="operator",
                summary="…",
                status=HandoffStatus.CLOSED,
                outcome=HandoffOutcome.RESOLVED,
                created_at=demo_data.now - timedelta(days=3),
            )
        )
        await session.commit()

        card = await customer_card(session, widget.id)

    assert card.names == ("Иванов Иван Петрович",)
    assert card.phone_masked == "+7 *** ***-**-67"
    numbers = {a.number: a for a in card.accounts}
    # 1002003003 is linked from Telegram only: the same customer, so it is here.
    assert set(numbers) == {"1002003001", "1002003003"}
    assert numbers["1002003001"].current
    assert not numbers["1002003003"].current
    assert numbers["1002003001"].balance == Decimal("3456.78")
    assert numbers["1002003003"].balance == Decimal("0.00")
    heating = next(m for m in numbers["1002003001"].meters if m.serial == "ТЭМ-104 №310522")
    assert len(heating.readings) == 3
    assert heating.readings[0].value == Decimal("148.620")  # the latest first
    assert heating.readings[0].taken_at > heating.readings[1].taken_at

    assert [c.channel for c in card.conversations] == ["webchat", "telegram", "whatsapp"]
    assert [c.id for c in card.conversations if c.current] == [widget.id]
    assert stranger.id not in {c.id for c in card.conversations}
    assert all(c.messages == 2 for c in card.conversations)
    assert whatsapp.id in {c.id for c in card.conversations}

    # The demo appeals of 1002003001: the open one first.
    assert [a.status.value for a in card.appeals] == ["in_review", "resolved"]
    assert [a.number for a in card.open_appeals] == [card.appeals[0].number]
    assert card.appeals[0].account_number == "1002003001"
    assert [(h.channel, h.outcome) for h in card.handoffs] == [
        ("telegram", HandoffOutcome.RESOLVED)
    ]


async def test_an_unlinked_chat_has_a_card_of_its_own(demo_data: DemoContext) -> None:
    async with demo_data.session_factory() as session:
        conv = await _chat(session, "webchat", "w-2", "Гость", timedelta(0), demo_data)
        await session.commit()
        card = await customer_card(session, conv.id)
        with pytest.raises(UnknownCustomerConversation):
            await customer_card(session, conv.id + 1000)
    assert not card.linked
    assert card.names == ()
    assert card.accounts == ()
    assert card.appeals == ()
    assert [c.id for c in card.conversations] == [conv.id]
    assert card.last_customer_message_at is not None
