"""The supervisors' KPIs for a range of days.

A range is ``[start, end)`` in Europe/Moscow calendar days: ``start`` is the
first day included, ``end`` the first day after it. Every figure counts what
happened inside the range, by the time of the row that the figure is about
(a message, a queue entry, an appeal, an NPS answer):

- **conversations**: conversations with at least one customer message in the
  range, by channel.
- **handed off**: those of them with a queue entry (``handoff_queue``)
  created in the range; **handoff rate** = handed off / conversations.
- **resolved by the bot alone**: conversations with customer messages in the
  range and no queue entry created in the range; its share = bot alone /
  conversations (so it is 100 % minus the handoff rate).
- **queue wait**: ``taken_at - created_at`` of the queue entries created in
  the range that an operator took.
- **first response time**: ``first_response_at - created_at`` of those
  entries that an operator answered: measured from the handoff, so the queue
  wait is part of it.
- **handling time**: ``closed_at - taken_at`` of those entries that were
  taken and closed (resolved or handed back to the bot).
- **appeals resolved within 24 hours**: appeals registered in the range that
  reached a final status (resolved, rejected, closed) within 24 hours of
  registration, out of the appeals registered in the range whose outcome is
  known: an appeal still open and younger than 24 hours (at ``now``) is left
  out, one still open and older counts as a miss.
- **NPS**: over the answers given in the range, % promoters (9-10) minus %
  detractors (0-6), from -100 to 100.
- **per operator**: the queue entries created in the range whose operator
  (the last one, after a transfer) is that operator; their NPS answers and
  the messages they wrote in the range.

Durations are seconds, shares are percentages (0-100); a figure with nothing
to count is ``None``, not zero. Medians have no portable SQL aggregate, so
the queue entries, appeals and NPS answers of the range are read as narrow
rows (a few timestamps each) and summarised here; the messages, by far the
largest table, are reduced in SQL to one row per conversation and day (and a
count per operator). bench/kpi.py times it on a month at the company's scale.
"""

from __future__ import annotations

import functools
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Date, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage.models import (
    Appeal,
    AppealStatus,
    Conversation,
    HandoffOutcome,
    HandoffQueueEntry,
    Message,
    NpsResponse,
    Operator,
    Sender,
)

MOSCOW = ZoneInfo("Europe/Moscow")
APPEAL_TARGET = timedelta(hours=24)
MAX_RANGE_DAYS = 366
PROMOTER_MIN = 9
DETRACTOR_MAX = 6


class KpiRangeError(ValueError):
    """The date range is empty, reversed or too long."""


@dataclass(frozen=True)
class DurationStats:
    """Seconds: how many were measured, their median and mean."""

    count: int
    median_s: float | None
    avg_s: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> DurationStats:
        if not values:
            return cls(0, None, None)
        return cls(len(values), float(statistics.median(values)), sum(values) / len(values))


@dataclass(frozen=True)
class NpsFigures:
    responses: int
    promoters: int
    passives: int
    detractors: int
    score: float | None  # % promoters - % detractors

    @classmethod
    def of(cls, scores: Iterable[int]) -> NpsFigures:
        values = list(scores)
        promoters = sum(1 for s in values if s >= PROMOTER_MIN)
        detractors = sum(1 for s in values if s <= DETRACTOR_MAX)
        n = len(values)
        score = 100 * (promoters - detractors) / n if n else None
        return cls(n, promoters, n - promoters - detractors, detractors, score)


@dataclass(frozen=True)
class ChannelFigures:
    channel: str
    conversations: int
    handed_off: int
    bot_alone: int


@dataclass(frozen=True)
class DayFigures:
    """One Moscow day of the charts' series."""

    day: date
    conversations: int
    by_channel: dict[str, int]
    handed_off: int
    bot_alone_pct: float | None
    handoffs: int
    queue_wait_median_s: float | None
    first_response_median_s: float | None
    handling_median_s: float | None
    appeals: int
    appeals_within_24h_pct: float | None
    nps: float | None
    nps_responses: int


@dataclass(frozen=True)
class OperatorFigures:
    operator_id: int
    display_name: str
    login: str
    chats: int  # queue entries they took
    resolved: int
    returned: int  # handed back to the bot
    first_response: DurationStats
    handling: DurationStats
    messages: int
    nps: NpsFigures


@dataclass(frozen=True)
class AppealFigures:
    registered: int
    counted: int  # registered minus those still open and younger than 24 h
    within_24h: int
    within_24h_pct: float | None


@dataclass(frozen=True)
class KpiReport:
    start: date
    end: date  # exclusive
    conversations: int
    channels: list[ChannelFigures]
    handed_off: int
    handoff_rate_pct: float | None
    bot_alone: int
    bot_alone_pct: float | None
    handoffs: int  # queue entries created in the range
    handoffs_taken: int
    handoffs_left: int  # the customer left the queue before anyone took it
    queue_wait: DurationStats
    first_response: DurationStats
    handling: DurationStats
    appeals: AppealFigures
    nps: NpsFigures
    days: list[DayFigures] = field(default_factory=list)
    operators: list[OperatorFigures] = field(default_factory=list)


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """UTC instants of ``start`` 00:00 and ``end`` 00:00, Moscow time."""
    if end <= start:
        raise KpiRangeError("the range must end after it starts")
    if (end - start).days > MAX_RANGE_DAYS:
        raise KpiRangeError(f"the range may span at most {MAX_RANGE_DAYS} days")
    return (
        datetime.combine(start, time(0), MOSCOW).astimezone(UTC),
        datetime.combine(end, time(0), MOSCOW).astimezone(UTC),
    )


def moscow_day(moment: datetime) -> date:
    return moment.astimezone(MOSCOW).date()


def _pct(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole else None


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds()


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


@functools.lru_cache(maxsize=1024)  # a few distinct days, one per row of a month
def _as_date(value: object) -> date:
    # PostgreSQL gives a date, SQLite's date() a 'YYYY-MM-DD' string.
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _local_day(
    column: InstrumentedAttribute[datetime], dialect: str, start: datetime
) -> ColumnElement[date]:
    """The Moscow calendar day of a UTC timestamp column, in SQL."""
    if dialect == "postgresql":
        return cast(func.timezone(MOSCOW.key, column), Date)
    # SQLite has no time zones: shift by Moscow's offset (fixed at UTC+3
    # since 2014; taken at the range start in case that ever changes).
    offset = MOSCOW.utcoffset(start.replace(tzinfo=None))
    minutes = int(offset.total_seconds() // 60) if offset else 0
    return func.date(column, f"{minutes:+d} minutes")


@dataclass
class _HandoffRow:
    conversation_id: int
    operator_id: int | None
    day: date
    taken: bool
    outcome: HandoffOutcome | None
    wait_s: float | None
    first_response_s: float | None
    handling_s: float | None


async def compute_kpis(session: AsyncSession, start: date, end: date, now: datetime) -> KpiReport:
    """Every KPI of the days ``[start, end)`` (Moscow), as defined in this module's docstring."""
    since, until = day_bounds(start, end)
    dialect = session.get_bind().dialect.name
    # Plain Core rows: the ORM's per-row loading costs more than the queries.
    db = await session.connection()

    # --- conversations: each one with customer messages, and on which days --
    day_m = _local_day(Message.created_at, dialect, since)
    active_rows = await db.execute(
        select(Message.conversation_id, day_m, Conversation.channel)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Message.sender == Sender.CUSTOMER,
            Message.created_at >= since,
            Message.created_at < until,
        )
        .distinct()
    )
    active_days = [(conv, _as_date(day), channel) for conv, day, channel in active_rows.all()]

    # --- the queue ---------------------------------------------------------
    entries = await db.execute(
        select(
            HandoffQueueEntry.conversation_id,
            HandoffQueueEntry.operator_id,
            HandoffQueueEntry.created_at,
            HandoffQueueEntry.taken_at,
            HandoffQueueEntry.first_response_at,
            HandoffQueueEntry.closed_at,
            HandoffQueueEntry.outcome,
        ).where(HandoffQueueEntry.created_at >= since, HandoffQueueEntry.created_at < until)
    )
    handoffs = [
        _HandoffRow(
            conversation_id=conv,
            operator_id=op,
            day=moscow_day(created),
            taken=taken is not None,
            outcome=outcome,
            wait_s=_seconds(taken, created),
            first_response_s=_seconds(first, created),
            handling_s=_seconds(closed, taken),
        )
        for conv, op, created, taken, first, closed, outcome in entries.all()
    ]
    handed_convs = {h.conversation_id for h in handoffs}
    handed_on = {(h.conversation_id, h.day) for h in handoffs}
    channel_convs: dict[str, set[int]] = defaultdict(set)
    day_channels: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    day_handed: dict[date, int] = defaultdict(int)
    for conv, day, channel in active_days:
        channel_convs[channel].add(conv)
        day_channels[day][channel] += 1
        if (conv, day) in handed_on:
            day_handed[day] += 1
    channels = []
    for channel, convs in sorted(channel_convs.items()):
        handed = len(convs & handed_convs)
        channels.append(ChannelFigures(channel, len(convs), handed, len(convs) - handed))

    # --- appeals and NPS ---------------------------------------------------
    appeal_rows = (
        await db.execute(
            select(Appeal.created_at, Appeal.resolved_at, Appeal.status).where(
                Appeal.created_at >= since, Appeal.created_at < until
            )
        )
    ).all()
    nps_rows = (
        await db.execute(
            select(NpsResponse.operator_id, NpsResponse.score, NpsResponse.created_at).where(
                NpsResponse.created_at >= since, NpsResponse.created_at < until
            )
        )
    ).all()

    # --- operators ---------------------------------------------------------
    written_rows = await db.execute(
        select(Message.operator_id, func.count())
        .where(
            Message.sender == Sender.OPERATOR,
            Message.operator_id.is_not(None),
            Message.created_at >= since,
            Message.created_at < until,
        )
        .group_by(Message.operator_id)
    )
    written: dict[int | None, int] = {row[0]: row[1] for row in written_rows}
    involved = {h.operator_id for h in handoffs} | {r.operator_id for r in nps_rows} | set(written)
    operator_rows = (
        await db.execute(
            select(Operator.id, Operator.display_name, Operator.login)
            .where(or_(Operator.id.in_([i for i in involved if i is not None]), Operator.active))
            .order_by(Operator.display_name, Operator.id)
        )
    ).all()

    # --- summarise ---------------------------------------------------------
    def appeal_figures(
        rows: Sequence[tuple[datetime, datetime | None, AppealStatus]],
    ) -> AppealFigures:
        counted = within = 0
        for created, resolved, status in rows:
            final = resolved is not None and not status.is_open
            if not final and now - created < APPEAL_TARGET:
                continue  # still open and not yet late: its outcome is unknown
            counted += 1
            if final and resolved is not None and resolved - created <= APPEAL_TARGET:
                within += 1
        return AppealFigures(len(rows), counted, within, _pct(within, counted))

    appeals_by_day: dict[date, list[tuple[datetime, datetime | None, AppealStatus]]] = defaultdict(
        list
    )
    for created, resolved, status in appeal_rows:
        appeals_by_day[moscow_day(created)].append((created, resolved, status))
    nps_by_day: dict[date, list[int]] = defaultdict(list)
    nps_by_operator: dict[int | None, list[int]] = defaultdict(list)
    for op, score, created in nps_rows:
        nps_by_day[moscow_day(created)].append(score)
        nps_by_operator[op].append(score)
    handoffs_by_day: dict[date, list[_HandoffRow]] = defaultdict(list)
    handoffs_by_operator: dict[int | None, list[_HandoffRow]] = defaultdict(list)
    for h in handoffs:
        handoffs_by_day[h.day].append(h)
        if h.taken:
            handoffs_by_operator[h.operator_id].append(h)

    days = []
    for offset in range((end - start).days):
        day = start + timedelta(days=offset)
        by_channel = dict(day_channels.get(day, {}))
        total = sum(by_channel.values())
        hs = handoffs_by_day.get(day, [])
        ap = appeal_figures(appeals_by_day.get(day, []))
        nps = NpsFigures.of(nps_by_day.get(day, []))
        days.append(
            DayFigures(
                day=day,
                conversations=total,
                by_channel=dict(sorted(by_channel.items())),
                handed_off=day_handed.get(day, 0),
                bot_alone_pct=_pct(total - day_handed.get(day, 0), total),
                handoffs=len(hs),
                queue_wait_median_s=_median([h.wait_s for h in hs if h.wait_s is not None]),
                first_response_median_s=_median(
                    [h.first_response_s for h in hs if h.first_response_s is not None]
                ),
                handling_median_s=_median([h.handling_s for h in hs if h.handling_s is not None]),
                appeals=ap.registered,
                appeals_within_24h_pct=ap.within_24h_pct,
                nps=nps.score,
                nps_responses=nps.responses,
            )
        )

    operators = []
    for op_id, name, login in operator_rows:
        mine = handoffs_by_operator.get(op_id, [])
        operators.append(
            OperatorFigures(
                operator_id=op_id,
                display_name=name,
                login=login,
                chats=len(mine),
                resolved=sum(1 for h in mine if h.outcome == HandoffOutcome.RESOLVED),
                returned=sum(1 for h in mine if h.outcome == HandoffOutcome.RETURNED),
                first_response=DurationStats.of(
                    [h.first_response_s for h in mine if h.first_response_s is not None]
                ),
                handling=DurationStats.of([h.handling_s for h in mine if h.handling_s is not None]),
                messages=written.get(op_id, 0),
                nps=NpsFigures.of(nps_by_operator.get(op_id, [])),
            )
        )

    conversations = sum(c.conversations for c in channels)
    handed_off = sum(c.handed_off for c in channels)
    return KpiReport(
        start=start,
        end=end,
        conversations=conversations,
        channels=channels,
        handed_off=handed_off,
        handoff_rate_pct=_pct(handed_off, conversations),
        bot_alone=conversations - handed_off,
        bot_alone_pct=_pct(conversations - handed_off, conversations),
        handoffs=len(handoffs),
        handoffs_taken=sum(1 for h in handoffs if h.taken),
        handoffs_left=sum(1 for h in handoffs if h.outcome == HandoffOutcome.LEFT and not h.taken),
        queue_wait=DurationStats.of([h.wait_s for h in handoffs if h.wait_s is not None]),
        first_response=DurationStats.of(
            [h.first_response_s for h in handoffs if h.first_response_s is not None]
        ),
        handling=DurationStats.of([h.handling_s for h in handoffs if h.handling_s is not None]),
        appeals=appeal_figures([(c, r, s) for c, r, s in appeal_rows]),
        nps=NpsFigures.of(score for _, score, _ in nps_rows),
        days=days,
        operators=operators,
    )
