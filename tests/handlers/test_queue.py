"""handlers/queue.py: the queue's order, places, and who gets the next chat."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers import queue
from storage.models import (
    ChannelIdentity,
    Conversation,
    HandoffQueueEntry,
    HandoffStatus,
    Operator,
    OperatorRole,
    Owner,
    Presence,
)
from tests.harness import DEFAULT_NOW


async def _chat(s: AsyncSession, n: int, *, priority: int = 0, minutes: int = 0) -> int:
    identity = ChannelIdentity(channel="test", user_id=f"u{n}", failed_link_attempts=0)
    s.add(identity)
    await s.flush()
    conv = Conversation(
        channel="test", chat_id=f"c{n}", identity_id=identity.id, state={}, owner=Owner.QUEUE
    )
    s.add(conv)
    await s.flush()
    s.add(
        HandoffQueueEntry(
            conversation_id=conv.id,
            reason="customer_request",
            summary="",
            priority=priority,
            created_at=DEFAULT_NOW + timedelta(minutes=minutes),
        )
    )
    await s.flush()
    return conv.id


async def _operator(
    s: AsyncSession,
    login: str,
    *,
    presence: Presence = Presence.ONLINE,
    capacity: int | None = None,
    since: int = 0,
    active: bool = True,
) -> int:
    op = Operator(
        login=login,
        display_name=login,
        role=OperatorRole.OPERATOR,
        password_hash="-",
        active=active,
        presence=presence,
        capacity=capacity,
        created_at=DEFAULT_NOW,
        presence_changed_at=DEFAULT_NOW + timedelta(minutes=since),
    )
    s.add(op)
    await s.flush()
    return op.id


async def _own(s: AsyncSession, conversation_id: int, operator_id: int) -> None:
    conv = await s.get(Conversation, conversation_id)
    assert conv is not None
    conv.owner = Owner.OPERATOR
    conv.owner_operator_id = operator_id
    entry = (await queue.waiting_entries(s))[0]
    entry.status = HandoffStatus.TAKEN
    await s.flush()


async def test_positions_follow_priority_then_waiting_time(db_session: AsyncSession) -> None:
    a = await _chat(db_session, 1, minutes=0)
    b = await _chat(db_session, 2, minutes=1)
    c = await _chat(db_session, 3, minutes=2, priority=1)
    assert [await queue.position(db_session, x) for x in (a, b, c)] == [2, 3, 1]
    assert [e.conversation_id for e in await queue.waiting_entries(db_session)] == [c, a, b]


async def test_no_position_for_a_chat_that_does_not_wait(db_session: AsyncSession) -> None:
    a = await _chat(db_session, 1)
    op = await _operator(db_session, "anna")
    await _own(db_session, a, op)
    assert await queue.position(db_session, a) is None


async def test_nobody_online_means_no_assignment(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    await _chat(db_session, 1)
    await _operator(db_session, "away", presence=Presence.AWAY)
    await _operator(db_session, "off", presence=Presence.OFFLINE)
    await _operator(db_session, "disabled", active=False)
    assert await queue.next_assignment(db_session, db_settings) is None


async def test_the_least_busy_operator_with_room_gets_the_head(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    busy = await _operator(db_session, "busy", since=0)
    full = await _operator(db_session, "full", capacity=1, since=1)
    free = await _operator(db_session, "free", since=2)
    owned = await _chat(db_session, 1)
    await _own(db_session, owned, busy)
    owned = await _chat(db_session, 2)
    await _own(db_session, owned, full)
    later = await _chat(db_session, 3, minutes=5)
    head = await _chat(db_session, 4, minutes=1)
    loads = {load.operator_id: load for load in await queue.loads(db_session, db_settings)}
    assert (loads[busy].chats, loads[busy].free) == (1, 2)
    assert loads[full].free == 0
    pick = await queue.next_assignment(db_session, db_settings)
    assert pick is not None
    assert (pick.conversation_id, pick.operator_id) == (head, free)
    pick = await queue.next_assignment(db_session, db_settings, skip={head})
    assert pick is not None
    assert pick.conversation_id == later


async def test_ties_go_to_the_one_online_longest(
    db_session: AsyncSession, db_settings: Settings
) -> None:
    await _operator(db_session, "late", since=5)
    early = await _operator(db_session, "early", since=1)
    await _chat(db_session, 1)
    pick = await queue.next_assignment(db_session, db_settings)
    assert pick is not None
    assert pick.operator_id == early
