"""NPS answers: the customer's 0-10 after an operator resolved their chat."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.pii import redact_text
from storage.models import NpsResponse

MIN_SCORE: Final = 0
MAX_SCORE: Final = 10
COMMENT_CHARS: Final = 2000


class InvalidScore(ValueError):
    """Not a score from 0 to 10."""


@dataclass(frozen=True, slots=True)
class NpsAnswer:
    conversation_id: int
    channel: str
    score: int
    comment: str | None = None
    handoff_id: int | None = None
    operator_id: int | None = None


async def record_nps(session: AsyncSession, answer: NpsAnswer, now: datetime) -> int:
    """Store one answer (the comment redacted and cut); its id."""
    if not MIN_SCORE <= answer.score <= MAX_SCORE:
        raise InvalidScore(str(answer.score))
    comment = (answer.comment or "").strip()
    row = NpsResponse(
        conversation_id=answer.conversation_id,
        handoff_id=answer.handoff_id,
        operator_id=answer.operator_id,
        channel=answer.channel,
        score=answer.score,
        comment=redact_text(comment[:COMMENT_CHARS]) if comment else None,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row.id
