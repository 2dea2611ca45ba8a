from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.subscriptions import is_subscribed, subscribe, unsubscribe
from storage.models import Subscription
from tests.handlers.service_factories import NOW


async def test_subscribe_and_unsubscribe_are_idempotent(db_session: AsyncSession) -> None:
    assert not await is_subscribed(db_session, "telegram", "42")
    assert (await unsubscribe(db_session, "telegram", "42", NOW)).changed is False

    first = await subscribe(db_session, "telegram", "42", NOW)
    again = await subscribe(db_session, "telegram", "42", NOW)
    assert (first.active, first.changed) == (True, True)
    assert (again.active, again.changed) == (True, False)
    assert await is_subscribed(db_session, "telegram", "42")
    # Another chat and another channel are separate.
    assert not await is_subscribed(db_session, "whatsapp", "42")
    assert not await is_subscribed(db_session, "telegram", "43")

    later = NOW + timedelta(days=1)
    off = await unsubscribe(db_session, "telegram", "42", later)
    assert (off.active, off.changed) == (False, True)
    assert (await unsubscribe(db_session, "telegram", "42", later)).changed is False
    assert (await subscribe(db_session, "telegram", "42", later)).changed is True
    await db_session.commit()

    rows = (await db_session.execute(select(Subscription))).scalars().all()
    assert [(r.channel, r.chat_id, r.topic, r.active, r.updated_at) for r in rows] == [
        ("telegram", "42", "news", True, later)
    ]
