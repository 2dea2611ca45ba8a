"""Every KPI against the hand-computed figures of tests/handlers/kpi_history.py."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.kpi import (
    ChannelFigures,
    DurationStats,
    KpiRangeError,
    NpsFigures,
    compute_kpis,
    day_bounds,
)
from tests.handlers.kpi_history import END, NOW, START, load_history, msk


async def test_range_figures_match_the_hand_computed_history(db_session: AsyncSession) -> None:
    await load_history(db_session)
    report = await compute_kpis(db_session, START, END, NOW)

    # Active: c1 c2 c10 (telegram), c3 c4 (whatsapp), c5 c6 c7 (webchat);
    # c8 wrote just before the range, c9 just after it.
    assert report.conversations == 8
    assert report.channels == [
        ChannelFigures("telegram", conversations=3, handed_off=2, bot_alone=1),
        ChannelFigures("webchat", conversations=3, handed_off=2, bot_alone=1),
        ChannelFigures("whatsapp", conversations=2, handed_off=1, bot_alone=1),
    ]
    assert (report.handed_off, report.handoff_rate_pct) == (5, 62.5)
    assert (report.bot_alone, report.bot_alone_pct) == (3, 37.5)
    # Queue entries of c2 c3 c5 c6 c10; c6 left before anyone took it.
    assert (report.handoffs, report.handoffs_taken, report.handoffs_left) == (5, 4, 1)
    # Waits 120 600 60 240; first responses 240 660 120 360; handling 1320 1860 600 1920.
    assert report.queue_wait == DurationStats(4, median_s=180.0, avg_s=255.0)
    assert report.first_response == DurationStats(4, median_s=300.0, avg_s=345.0)
    assert report.handling == DurationStats(4, median_s=1590.0, avg_s=1425.0)
    # Appeals 1 2 3 4 5 7 registered in range; 5 is open and 19 h old (left
    # out); 1 2 7 within 24 h, 3 and 4 late: 3 of 5.
    assert report.appeals.registered == 6
    assert report.appeals.counted == 5
    assert report.appeals.within_24h == 3
    assert report.appeals.within_24h_pct == 60.0
    # 10 9 10 5 8: 3 promoters, 1 passive, 1 detractor: 60 % - 20 % = 40.
    assert report.nps == NpsFigures(5, promoters=3, passives=1, detractors=1, score=40.0)


async def test_per_operator_rows(db_session: AsyncSession) -> None:
    ids = await load_history(db_session)
    report = await compute_kpis(db_session, START, END, NOW)

    rows = {r.login: r for r in report.operators}
    assert [r.login for r in report.operators] == ["anna", "boris", "vera"]  # Глеб is inactive
    anna, boris, vera = rows["anna"], rows["boris"], rows["vera"]
    assert anna.operator_id == ids["anna"]
    assert anna.display_name == "Анна"
    # c2 c5 c10: first responses 240 120 360, handling 1320 600 1920.
    assert (anna.chats, anna.resolved, anna.returned) == (3, 2, 1)
    assert anna.first_response == DurationStats(3, median_s=240.0, avg_s=240.0)
    assert anna.handling == DurationStats(3, median_s=1320.0, avg_s=1280.0)
    assert anna.messages == 3  # her reply in c9 is after the range
    assert anna.nps.responses == 3
    assert anna.nps.score == pytest.approx(100 / 3)  # 10 10 5: 2/3 - 1/3
    # c3 only: c8's entry was created before the range.
    assert (boris.chats, boris.resolved, boris.returned) == (1, 1, 0)
    assert boris.first_response == DurationStats(1, median_s=660.0, avg_s=660.0)
    assert boris.handling == DurationStats(1, median_s=1860.0, avg_s=1860.0)
    assert boris.messages == 2
    assert boris.nps == NpsFigures(2, promoters=1, passives=1, detractors=0, score=50.0)
    assert (vera.chats, vera.messages, vera.nps.responses, vera.nps.score) == (0, 0, 0, None)
    assert vera.first_response == DurationStats(0, None, None)


async def test_daily_series(db_session: AsyncSession) -> None:
    await load_history(db_session)
    report = await compute_kpis(db_session, START, END, NOW)

    days = {d.day: d for d in report.days}
    assert list(days) == [date(2026, 11, d) for d in (23, 24, 25, 26)]
    d23, d24, d25, d26 = days.values()
    # 23rd: c1 c2 c10 (telegram), c7 (webchat); c2 handed off.
    assert (d23.conversations, d23.by_channel) == (4, {"telegram": 3, "webchat": 1})
    assert (d23.handed_off, d23.bot_alone_pct, d23.handoffs) == (1, 75.0, 1)
    assert (d23.queue_wait_median_s, d23.first_response_median_s, d23.handling_median_s) == (
        120.0,
        240.0,
        1320.0,
    )
    assert (d23.appeals, d23.appeals_within_24h_pct) == (2, 100.0)
    assert (d23.nps, d23.nps_responses) == (100.0, 1)
    # 24th: c3 c4 (whatsapp); c3 handed off.
    assert (d24.conversations, d24.by_channel) == (2, {"whatsapp": 2})
    assert (d24.handed_off, d24.bot_alone_pct) == (1, 50.0)
    assert (d24.queue_wait_median_s, d24.first_response_median_s) == (600.0, 660.0)
    assert (d24.appeals, d24.appeals_within_24h_pct) == (1, 0.0)
    assert (d24.nps, d24.nps_responses) == (100.0, 1)
    # 25th: c10 (telegram, handed off this day), c5 (webchat).
    assert (d25.conversations, d25.by_channel) == (2, {"telegram": 1, "webchat": 1})
    assert (d25.handed_off, d25.bot_alone_pct, d25.handoffs) == (2, 0.0, 2)
    assert (d25.queue_wait_median_s, d25.first_response_median_s, d25.handling_median_s) == (
        150.0,
        240.0,
        1260.0,
    )
    assert (d25.appeals, d25.appeals_within_24h_pct) == (1, 0.0)
    assert (d25.nps, d25.nps_responses) == (0.0, 2)
    # 26th: c6 left the queue: a handoff with no wait measured.
    assert (d26.conversations, d26.handed_off, d26.handoffs) == (1, 1, 1)
    assert d26.queue_wait_median_s is None
    assert (d26.appeals, d26.appeals_within_24h_pct) == (2, 100.0)  # appeal 5 not counted yet
    assert (d26.nps, d26.nps_responses) == (0.0, 1)


async def test_range_boundaries_are_moscow_midnights(db_session: AsyncSession) -> None:
    await load_history(db_session)
    first_day = await compute_kpis(db_session, START, date(2026, 11, 24), NOW)
    # c7 at 00:00 on the 23rd is in; c8 at 23:59 on the 22nd is not.
    assert first_day.conversations == 4
    assert first_day.handoffs == 1
    day_before = await compute_kpis(db_session, date(2026, 11, 22), START, NOW)
    assert day_before.conversations == 1  # c8
    assert day_before.handoffs == 1
    assert day_before.appeals.registered == 1  # appeal 6 at 23:00
    day_after = await compute_kpis(db_session, END, date(2026, 11, 28), NOW)
    assert (day_after.conversations, day_after.handoffs, day_after.nps.responses) == (1, 1, 1)
    assert day_after.operators[0].messages == 1  # Anna's reply in c9


async def test_an_empty_range_has_no_figures_rather_than_zeros(db_session: AsyncSession) -> None:
    report = await compute_kpis(db_session, START, END, NOW)
    assert report.conversations == 0
    assert report.handoff_rate_pct is None
    assert report.bot_alone_pct is None
    assert report.first_response == DurationStats(0, None, None)
    assert report.appeals.within_24h_pct is None
    assert report.nps.score is None
    assert len(report.days) == 4
    assert report.operators == []


def test_range_bounds_and_refusals() -> None:
    since, until = day_bounds(START, END)
    assert (since, until) == (msk(23, 0), msk(27, 0))
    with pytest.raises(KpiRangeError):
        day_bounds(END, START)
    with pytest.raises(KpiRangeError):
        day_bounds(START, START)
    with pytest.raises(KpiRangeError):
        day_bounds(date(2025, 1, 1), date(2026, 1, 3))
