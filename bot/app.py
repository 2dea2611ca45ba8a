"""The ASGI app: the company's demo page, the widget, health and metrics."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.channels.base import HttpEndpoint, SocketEndpoint
from bot.console.auth import require_role
from bot.console.chats import operator_error_handler
from bot.console.cli import first_operator_hint
from bot.console.kpi import make_router as make_kpi_router
from bot.console.router import make_console_router
from bot.container import Container
from bot.metrics import CONTENT_TYPE
from bot.operators import service as ops
from bot.security import SecurityHeaders, inline_style_hashes, metrics_allowed, page_csp
from config import Settings, load_settings
from storage.models import OperatorRole

STATIC_DIR = Path(__file__).resolve().parent / "static"

log = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    """Move what the start built (the NLU model, word vectors, SQLAlchemy's
    mappers, the modules) out of the garbage collector's sight.

    A server process holds some 330,000 tracked objects once started, and
    every full collection walked them all: in a bench/load.py run, 3.6-3.9 s
    of collections a process and pauses up to 0.37 s, every turn in flight
    waiting. Frozen after a collection of what the start left over, they are
    never walked again (2.0-2.7 s, pauses up to 0.14 s in the same run); they
    live as long as the process anyway. For server processes only: a test
    process that starts app after app would keep each one's objects.
    """
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings, container: Container | None = None, *, freeze_gc: bool = False
) -> FastAPI:
    """The app for these settings; its lifespan starts and stops ``container``
    (``freeze_gc``: a server process, see :func:`freeze_startup_heap`)."""
    c = container or Container(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            await c.start()
            await _hint_first_operator(settings, c)
            if freeze_gc:
                freeze_startup_heap()
            yield
        finally:
            await c.close()  # also after a failed start: no pool or task left behind

    app = FastAPI(
        title=f"{settings.company_name}: чат-бот",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.container = c
    demo_page_html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    app.add_middleware(SecurityHeaders, csp=page_csp(inline_style_hashes(demo_page_html)))
    metrics_token = settings.metrics_token.get_secret_value() if settings.metrics_token else None

    @app.get("/", include_in_schema=False)
    async def demo_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        """The database answers ``SELECT 1``; 503 otherwise.

        With Rasa as the NLU backend, ``nlu`` tells whether it answers or the
        embedded parser stands in (still ready: every message is understood).
        """
        nlu = c.nlu_status()
        extra = {"nlu": nlu} if nlu is not None else {}
        if await c.ping_database():
            return JSONResponse({"status": "ready", **extra})
        return JSONResponse({"status": "unavailable", "database": "unreachable", **extra}, 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: from the local network, or with ``Authorization: Bearer``."""
        client = request.client.host if request.client else None
        if not metrics_allowed(client, request.headers.get("authorization"), metrics_token):
            return JSONResponse({"detail": "metrics are served to the local network only"}, 403)
        return Response(c.metrics.render(), media_type=CONTENT_TYPE)

    sockets: dict[str, SocketEndpoint] = {}
    posts: dict[str, HttpEndpoint] = {}
    for adapter in c.channels.values():
        router = adapter.router(c)
        if router is not None:
            app.include_router(router)
        sockets.update(adapter.sockets(c))
        posts.update(adapter.endpoints(c))
    # Outermost of the app's own middleware (added last): a socket skips the rest.
    app.add_middleware(SocketShortcut, sockets=sockets, posts=posts)
    app.include_router(make_console_router())
    app.add_exception_handler(ops.OperatorError, operator_error_handler)
    # The KPI dashboard and its figures: supervisors and admins only.
    app.include_router(make_kpi_router(require_role(OperatorRole.SUPERVISOR)))
    return app


class SocketShortcut:
    """Takes the channels' WebSockets (the widget's) straight to their endpoint.

    An open socket keeps a suspended frame of every layer it passed through:
    the security headers (HTTP only), Starlette's exception handlers, FastAPI's
    body limit, its exit stacks and dependency solving, the router. For a
    socket that stays open for hours, by the thousand, that is about 10 KB each
    (bench/load.py --sockets-only) for layers it does not use: its endpoint
    checks the origin, refuses, catches and closes by itself. Everything else,
    the console's socket included, takes the usual way.

    A channel's webhook POST (Telegram's, once per customer message) goes the
    same short way: the routing, dependency solving, exit stacks and the
    page headers of those layers were a third of the request's own CPU
    (py-spy under bench/load.py), for an endpoint that checks its own secret,
    reads its own body and answers a machine. Other methods on its path
    (a GET: 405) take the usual way.
    """

    def __init__(
        self,
        app: ASGIApp,
        sockets: Mapping[str, SocketEndpoint],
        posts: Mapping[str, HttpEndpoint] | None = None,
    ) -> None:
        self.app = app
        self.sockets = dict(sockets)
        self.posts = dict(posts or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket" or (kind == "http" and scope["method"] == "POST" and self.posts):
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            path = path[len(root) :] if root and path.startswith(root) else path
            if kind == "websocket":
                endpoint = self.sockets.get(path)
                if endpoint is not None:
                    await endpoint(WebSocket(scope, receive, send))
                    return
            else:
                post = self.posts.get(path)
                if post is not None:
                    response = await post(Request(scope, receive))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def _hint_first_operator(settings: Settings, c: Container) -> None:
    # A database that is down at start-up must not stop it: the hint is a nicety.
    try:
        hint = await first_operator_hint(settings, c.session_factory)
    except Exception as exc:
        log.info("operator accounts not checked (%s)", type(exc).__name__)
        return
    if hint is not None:
        log.warning("%s", hint)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def create_app_from_env() -> FastAPI:
    """uvicorn's factory for worker processes (``--workers``): each process
    loads the settings from the environment, as ``python -m bot run`` did."""
    settings = load_settings()
    configure_logging(settings)  # a spawned worker inherits no logging set-up
    return create_app(settings, freeze_gc=True)
