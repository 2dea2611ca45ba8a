"""A small history with hand-computed KPIs, shared by the handler and console tests.

The range is Monday 23 to Thursday 26 November 2026 (Moscow), i.e. the days
``[2026-11-23, 2026-11-27)``; ``NOW`` is Friday 27th, 10:00 Moscow. Every
time below is Moscow time. The expected figures are worked out by hand in the
comments of :func:`load_history` and in ``tests/handlers/test_kpi.py``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    Appeal,
    AppealCategory,
    AppealStatus,
    Conversation,
    Direction,
    HandoffOutcome,
    HandoffQueueEntry,
    HandoffStatus,
    Message,
    NpsResponse,
    Operator,
    OperatorRole,
    Sender,
)
from tests.handlers.service_factories import make_identity

START = date(2026, 11, 23)
END = date(2026, 11, 27)


MSK = timezone(timedelta(hours=3))  # Moscow has kept UTC+3 since 2014


def msk(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of November 2026 given in Moscow time, as UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=MSK).astimezone(UTC)


NOW = msk(27, 10)


class History:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.operators: dict[str, int] = {}
        self._chats = 0

    async def operator(
        self, login: str, name: str, role: OperatorRole = OperatorRole.OPERATOR, active: bool = True
    ) -> int:
        row = Operator(
            login=login,
            display_name=name,
            role=role,
            password_hash="-",
            active=active,
            created_at=msk(1, 9),
        )
        self.session.add(row)
        await self.session.flush()
        self.operators[login] = row.id
        return row.id

    async def conversation(self, channel: str) -> int:
        self._chats += 1
        identity = await make_identity(self.session, f"user-{self._chats}", channel)
        row = Conversation(channel=channel, chat_id=f"chat-{self._chats}", identity_id=identity)
        self.session.add(row)
        await self.session.flush()
        return row.id

    def message(
        self, conversation: int, sender: Sender, at: datetime, operator: str | None = None
    ) -> None:
        self.session.add(
            Message(
                conversation_id=conversation,
                direction=Direction.IN if sender == Sender.CUSTOMER else Direction.OUT,
                sender=sender,
                text="…",
                operator_id=self.operators[operator] if operator else None,
                created_at=at,
            )
        )

    async def handoff(
        self,
        conversation: int,
        created: datetime,
        taken: datetime | None = None,
        first_response: datetime | None = None,
        closed: datetime | None = None,
        outcome: HandoffOutcome | None = None,
        operator: str | None = None,
    ) -> int:
        row = HandoffQueueEntry(
            conversation_id=conversation,
            reason="operator",
            summary="",
            status=HandoffStatus.CLOSED if closed else HandoffStatus.WAITING,
            operator_id=self.operators[operator] if operator else None,
            outcome=outcome,
            created_at=created,
            taken_at=taken,
            first_response_at=first_response,
            closed_at=closed,
        )
        self.session.add(row)
        await self.session.flush()
        return row.id

    def appeal(
        self, number: int, created: datetime, status: AppealStatus, resolved: datetime | None
    ) -> None:
        self.session.add(
            Appeal(
                number=f"A-2026-{number:06d}",
                category=AppealCategory.CHARGES,
                description="…",
                status=status,
                created_at=created,
                review_due_at=created,
                decision_due_at=created,
                resolved_at=resolved,
            )
        )

    def nps(
        self, conversation: int, channel: str, score: int, at: datetime, operator: str | None
    ) -> None:
        self.session.add(
            NpsResponse(
                conversation_id=conversation,
                operator_id=self.operators[operator] if operator else None,
                channel=channel,
                score=score,
                created_at=at,
            )
        )


async def load_history(session: AsyncSession) -> dict[str, int]:
    """Insert the history; returns the operators' ids by login."""
    h = History(session)
    await h.operator("anna", "Анна")
    await h.operator("boris", "Борис")
    await h.operator("vera", "Вера", OperatorRole.SUPERVISOR)  # active, no activity: a zero row
    await h.operator("gleb", "Глеб", active=False)  # inactive, no activity: no row

    C, B, OP = Sender.CUSTOMER, Sender.BOT, Sender.OPERATOR

    # c1 telegram, 23rd: the bot alone.
    c1 = await h.conversation("telegram")
    h.message(c1, C, msk(23, 10))
    h.message(c1, B, msk(23, 10, 1))
    # c2 telegram, 23rd: Anna; wait 120 s, first response 240 s, handling 1320 s.
    c2 = await h.conversation("telegram")
    h.message(c2, C, msk(23, 11))
    await h.handoff(
        c2,
        msk(23, 11, 1),
        msk(23, 11, 3),
        msk(23, 11, 5),
        msk(23, 11, 25),
        HandoffOutcome.RESOLVED,
        "anna",
    )
    h.message(c2, OP, msk(23, 11, 5), "anna")
    # c3 whatsapp, 24th: Boris; wait 600, first response 660, handling 1860.
    c3 = await h.conversation("whatsapp")
    h.message(c3, C, msk(24, 9))
    await h.handoff(
        c3,
        msk(24, 9),
        msk(24, 9, 10),
        msk(24, 9, 11),
        msk(24, 9, 41),
        HandoffOutcome.RESOLVED,
        "boris",
    )
    h.message(c3, OP, msk(24, 9, 11), "boris")
    h.message(c3, OP, msk(24, 9, 20), "boris")
    # c4 whatsapp, 24th: the bot alone.
    c4 = await h.conversation("whatsapp")
    h.message(c4, C, msk(24, 12))
    # c5 webchat, 25th: Anna hands it back; wait 60, first response 120, handling 600.
    c5 = await h.conversation("webchat")
    h.message(c5, C, msk(25, 14))
    await h.handoff(
        c5,
        msk(25, 14),
        msk(25, 14, 1),
        msk(25, 14, 2),
        msk(25, 14, 11),
        HandoffOutcome.RETURNED,
        "anna",
    )
    h.message(c5, OP, msk(25, 14, 2), "anna")
    # c6 webchat, 26th: the customer leaves the queue before anyone takes it.
    c6 = await h.conversation("webchat")
    h.message(c6, C, msk(26, 19))
    await h.handoff(c6, msk(26, 19), closed=msk(26, 19, 5), outcome=HandoffOutcome.LEFT)
    # c7 webchat: at 00:00 on the 23rd exactly, the first instant of the range.
    c7 = await h.conversation("webchat")
    h.message(c7, C, msk(23, 0))
    # c8 telegram: the customer wrote at 23:59 on the 22nd and was queued
    # then (outside); only the bot wrote inside the range: not counted.
    c8 = await h.conversation("telegram")
    h.message(c8, C, msk(22, 23, 59))
    await h.handoff(c8, msk(22, 23, 59), msk(23, 0, 5), msk(23, 0, 6), None, None, "boris")
    h.message(c8, B, msk(23, 0, 1))
    # c9 telegram: 00:00 on the 27th, the first instant after the range.
    c9 = await h.conversation("telegram")
    h.message(c9, C, msk(27, 0))
    await h.handoff(c9, msk(27, 0), msk(27, 0, 1), msk(27, 0, 2), None, None, "anna")
    h.message(c9, OP, msk(27, 0, 2), "anna")
    # c10 telegram: writes on the 23rd (the bot answers) and on the 25th,
    # when Anna takes it; wait 240, first response 360, handling 1920.
    c10 = await h.conversation("telegram")
    h.message(c10, C, msk(23, 16))
    h.message(c10, C, msk(25, 10))
    await h.handoff(
        c10,
        msk(25, 10),
        msk(25, 10, 4),
        msk(25, 10, 6),
        msk(25, 10, 36),
        HandoffOutcome.RESOLVED,
        "anna",
    )
    h.message(c10, OP, msk(25, 10, 6), "anna")

    # Appeals, at NOW = 27th 10:00.
    h.appeal(1, msk(23, 10), AppealStatus.RESOLVED, msk(23, 18))  # 8 h: within
    h.appeal(2, msk(23, 12), AppealStatus.REJECTED, msk(24, 12))  # 24 h exactly: within
    h.appeal(3, msk(24, 9), AppealStatus.RESOLVED, msk(25, 9, 1))  # 24 h 1 min: late
    h.appeal(4, msk(25, 10), AppealStatus.IN_REVIEW, None)  # open, 48 h old: late
    h.appeal(5, msk(26, 15), AppealStatus.REGISTERED, None)  # open, 19 h old: not counted
    h.appeal(6, msk(22, 23), AppealStatus.RESOLVED, msk(23, 1))  # outside the range
    h.appeal(7, msk(26, 11), AppealStatus.CLOSED, msk(26, 12))  # 1 h: within

    # NPS answers: Anna 10, 10, 5; Boris 9, 8; one outside the range.
    h.nps(c2, "telegram", 10, msk(23, 11, 30), "anna")
    h.nps(c3, "whatsapp", 9, msk(24, 9, 45), "boris")
    h.nps(c10, "telegram", 10, msk(25, 10, 40), "anna")
    h.nps(c5, "webchat", 5, msk(25, 14, 15), "anna")
    h.nps(c3, "whatsapp", 8, msk(26, 12), "boris")
    h.nps(c9, "telegram", 0, msk(27, 0, 10), "anna")

    await session.commit()
    return h.operators
