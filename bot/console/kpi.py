"""The supervisors' KPI dashboard: a page with charts, its JSON and CSV.

``make_router(guard)`` gives the routes; the console mounts them with
``guard=require_role(OperatorRole.SUPERVISOR)`` (401 without a session, 403
for a plain operator). The paths are absolute (``/console/...``): include
the router in the app, not under a prefixed router.

- ``GET /console/kpi``: the page (static HTML, its script draws the charts
  with a vendored Chart.js; no inline script, so the site's CSP holds);
  without a session it redirects to the console's login form;
- ``GET /console/api/kpi?from=YYYY-MM-DD&to=YYYY-MM-DD``: every figure of
  :func:`handlers.kpi.compute_kpis` as JSON; ``to`` is exclusive (the first
  day after the range), both are Moscow days; without them, the last 7 days
  up to today;
- ``GET /console/api/kpi.csv?from=...&to=...&table=days|operators``: the daily
  series (with a total row) or the per-operator table, for Excel in a Russian
  locale: UTF-8 with a BOM, ``;`` between fields, a decimal comma;
- ``GET /console/kpi/assets/{name}``: the page's script, stylesheet and the
  charting library (no data in them, so no guard).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.kpi import MAX_RANGE_DAYS, MOSCOW, KpiReport, compute_kpis

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_DAYS = 7
LOGIN_PAGE = "/console"  # the console's page shows its login form without a session

# name -> (file under STATIC_DIR, media type)
ASSETS: dict[str, tuple[str, str]] = {
    "kpi.js": ("kpi.js", "text/javascript; charset=utf-8"),
    "kpi.css": ("kpi.css", "text/css; charset=utf-8"),
    "chart.umd.min.js": ("vendor/chart.umd.min.js", "text/javascript; charset=utf-8"),
}

CHANNEL_NAMES = {"telegram": "Telegram", "whatsapp": "WhatsApp", "webchat": "Сайт"}

DAY_COLUMNS = (
    "День",
    "Диалогов",
    "Передано операторам",
    "Бот справился сам, %",
    "Постановок в очередь",
    "Ожидание в очереди (медиана), с",
    "Первый ответ (медиана), с",
    "Обработка (медиана), с",
    "Обращений",
    "Решено за 24 ч, %",
    "Ответов NPS",
    "NPS",
)
OPERATOR_COLUMNS = (
    "Оператор",
    "Логин",
    "Чатов",
    "Решено",
    "Возвращено боту",
    "Первый ответ (медиана), с",
    "Первый ответ (среднее), с",
    "Обработка (медиана), с",
    "Обработка (среднее), с",
    "Сообщений",
    "Ответов NPS",
    "NPS",
)

SessionFactory = async_sessionmaker[AsyncSession]


def channel_name(channel: str) -> str:
    return CHANNEL_NAMES.get(channel, channel)


def moscow_today(now: datetime) -> date:
    return now.astimezone(MOSCOW).date()


def resolve_range(start: date | None, end: date | None, now: datetime) -> tuple[date, date]:
    """The requested ``[start, end)``, or the last 7 days up to today; 422 if invalid."""
    if end is None:
        end = (start + timedelta(days=DEFAULT_DAYS)) if start else moscow_today(now) + timedelta(1)
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS)
    if end <= start:
        raise HTTPException(422, "Конец периода должен быть позже его начала.")
    if (end - start).days > MAX_RANGE_DAYS:
        raise HTTPException(422, f"Период — не больше {MAX_RANGE_DAYS} дней.")
    return start, end


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}".replace(".", ",")


def _seconds(value: float | None) -> str:
    return _number(value, 0)


def _pct(value: float | None) -> str:
    return _number(value, 1)


def days_csv_rows(report: KpiReport) -> list[list[str]]:
    """The daily series, a column per channel after the total, then a total row."""
    channels = sorted({c.channel for c in report.channels})
    header = [*DAY_COLUMNS[:2], *(f"{DAY_COLUMNS[1]}: {channel_name(c)}" for c in channels)]
    header += DAY_COLUMNS[2:]
    rows = [header]
    for d in report.days:
        rows.append(
            [
                d.day.isoformat(),
                str(d.conversations),
                *(str(d.by_channel.get(c, 0)) for c in channels),
                str(d.handed_off),
                _pct(d.bot_alone_pct),
                str(d.handoffs),
                _seconds(d.queue_wait_median_s),
                _seconds(d.first_response_median_s),
                _seconds(d.handling_median_s),
                str(d.appeals),
                _pct(d.appeals_within_24h_pct),
                str(d.nps_responses),
                _pct(d.nps),
            ]
        )
    by_channel = {c.channel: c.conversations for c in report.channels}
    rows.append(
        [
            "Итого",
            str(report.conversations),
            *(str(by_channel.get(c, 0)) for c in channels),
            str(report.handed_off),
            _pct(report.bot_alone_pct),
            str(report.handoffs),
            _seconds(report.queue_wait.median_s),
            _seconds(report.first_response.median_s),
            _seconds(report.handling.median_s),
            str(report.appeals.registered),
            _pct(report.appeals.within_24h_pct),
            str(report.nps.responses),
            _pct(report.nps.score),
        ]
    )
    return rows


def operators_csv_rows(report: KpiReport) -> list[list[str]]:
    rows = [list(OPERATOR_COLUMNS)]
    for o in report.operators:
        rows.append(
            [
                o.display_name,
                o.login,
                str(o.chats),
                str(o.resolved),
                str(o.returned),
                _seconds(o.first_response.median_s),
                _seconds(o.first_response.avg_s),
                _seconds(o.handling.median_s),
                _seconds(o.handling.avg_s),
                str(o.messages),
                str(o.nps.responses),
                _pct(o.nps.score),
            ]
        )
    return rows


def to_csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerows(rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


class _LoginFirstRoute(APIRoute):
    """A page route: without a session (401) the browser goes to the login form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                if exc.status_code == 401:
                    return RedirectResponse(LOGIN_PAGE, status_code=303)
                raise

        return handle


def make_router(
    guard: Callable[..., Any],
    session_factory: SessionFactory | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> APIRouter:
    """The KPI routes behind ``guard`` (a FastAPI dependency that refuses
    anyone but a supervisor). The database is ``session_factory``, or the
    app's container's when not given."""
    router = APIRouter(tags=["kpi"])
    guarded = [Depends(guard)]

    def sessions(request: Request) -> SessionFactory:
        if session_factory is not None:
            return session_factory
        factory: SessionFactory = request.app.state.container.session_factory
        return factory

    async def report_for(request: Request, start: date | None, end: date | None) -> KpiReport:
        now = clock()
        start, end = resolve_range(start, end, now)
        async with sessions(request)() as session:
            return await compute_kpis(session, start, end, now)

    @router.get("/console/api/kpi", dependencies=guarded)
    async def kpi_json(
        request: Request,
        start: Annotated[date | None, Query(alias="from")] = None,
        end: Annotated[date | None, Query(alias="to")] = None,
    ) -> KpiReport:
        """Every KPI of the Moscow days ``[from, to)``: see handlers/kpi.py for the definitions."""
        return await report_for(request, start, end)

    @router.get("/console/api/kpi.csv", dependencies=guarded)
    async def kpi_csv(
        request: Request,
        start: Annotated[date | None, Query(alias="from")] = None,
        end: Annotated[date | None, Query(alias="to")] = None,
        table: Literal["days", "operators"] = "days",
    ) -> Response:
        """The daily series or the per-operator table as CSV."""
        report = await report_for(request, start, end)
        rows = days_csv_rows(report) if table == "days" else operators_csv_rows(report)
        last = report.end - timedelta(days=1)
        name = f"kpi-{table}-{report.start.isoformat()}-{last.isoformat()}.csv"
        return Response(
            to_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def kpi_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "kpi.html", media_type="text/html; charset=utf-8")

    router.add_api_route(
        "/console/kpi",
        kpi_page,
        methods=["GET"],
        dependencies=guarded,
        include_in_schema=False,
        route_class_override=_LoginFirstRoute,
    )

    @router.get("/console/kpi/assets/{name}", include_in_schema=False)
    async def kpi_asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404)
        path, media_type = ASSETS[name]
        return FileResponse(STATIC_DIR / path, media_type=media_type)

    return router
