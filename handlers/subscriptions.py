"""News subscriptions of a chat (channel + chat id); every call idempotent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Subscription

NEWS = "news"


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    topic: str
    active: bool
    changed: bool  # False when it already was so


async def _find(
    session: AsyncSession, channel: str, chat_id: str, topic: str
) -> Subscription | None:
    return (
        await session.execute(
            select(Subscription).where(
                Subscription.channel == channel,
                Subscription.chat_id == chat_id,
                Subscription.topic == topic,
            )
        )
    ).scalar_one_or_none()


async def is_subscribed(
    session: AsyncSession, channel: str, chat_id: str, topic: str = NEWS
) -> bool:
    row = await _find(session, channel, chat_id, topic)
    return row is not None and row.active


async def _set(
    session: AsyncSession, channel: str, chat_id: str, topic: str, active: bool, now: datetime
) -> SubscriptionStatus:
    row = await _find(session, channel, chat_id, topic)
    if row is None:
        if not active:
            return SubscriptionStatus(topic=topic, active=False, changed=False)
        try:
            async with session.begin_nested():
                session.add(
                    Subscription(
                        channel=channel, chat_id=chat_id, topic=topic, active=True, updated_at=now
                    )
                )
        except IntegrityError:
            # The same chat subscribed at the same moment elsewhere: it is done.
            return SubscriptionStatus(topic=topic, active=True, changed=False)
        return SubscriptionStatus(topic=topic, active=True, changed=True)
    if row.active == active:
        return SubscriptionStatus(topic=topic, active=active, changed=False)
    row.active = active
    row.updated_at = now
    await session.flush()
    return SubscriptionStatus(topic=topic, active=active, changed=True)


async def subscribe(
    session: AsyncSession, channel: str, chat_id: str, now: datetime, topic: str = NEWS
) -> SubscriptionStatus:
    return await _set(session, channel, chat_id, topic, True, now)


async def unsubscribe(
    session: AsyncSession, channel: str, chat_id: str, now: datetime, topic: str = NEWS
) -> SubscriptionStatus:
    return await _set(session, channel, chat_id, topic, False, now)
