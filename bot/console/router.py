"""The operator console at ``/console``: pages, the JSON API, the live socket.

``/console`` serves the login form without a session and the console with
one; both are static files of this package (no inline script, so they live
under the app's CSP). Every ``/console/api/...`` call needs a session (401)
and the role it names (403); every call that changes something needs the
session's CSRF token too (403).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Request, Response, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from bot.console import texts
from bot.console.auth import (
    SESSION_COOKIE,
    CurrentSession,
    clear_session_cookie,
    container_of,
    csrf_protected,
    load_session,
    login_csrf_ok,
    require_role,
    set_login_cookie,
    set_session_cookie,
)
from bot.console.chats import make_chat_router
from bot.console.live import ConsoleHub, serve_socket
from bot.console.serialize import jsonable
from handlers import canned as canned_handlers
from handlers import operators as accounts
from storage.models import Operator, OperatorRole, Presence

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
_MEDIA: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
# The files a browser may fetch from /console/static/ (nothing else is served).
STATIC_FILES: Final = frozenset(p.name for p in STATIC_DIR.iterdir() if p.suffix in {".js", ".css"})

OperatorUser = Annotated[Operator, Depends(require_role(OperatorRole.OPERATOR))]
Supervisor = Annotated[Operator, Depends(require_role(OperatorRole.SUPERVISOR))]
Admin = Annotated[Operator, Depends(require_role(OperatorRole.ADMIN))]
Csrf = Depends(csrf_protected)


def _now() -> datetime:
    return datetime.now(UTC)


def _page(name: str) -> FileResponse:
    return FileResponse(
        STATIC_DIR / name,
        media_type=_MEDIA[".html"],
        headers={"Cache-Control": "no-store"},
    )


def operator_json(op: Operator | accounts.OperatorInfo) -> dict[str, Any]:
    return {
        "id": op.id,
        "login": op.login,
        "display_name": op.display_name,
        "role": op.role.value,
        "presence": op.presence.value,
        "active": op.active,
    }


class LoginBody(BaseModel):
    login: str = Field(max_length=64)
    password: str = Field(max_length=accounts.MAX_PASSWORD_CHARS)


class CannedBody(BaseModel):
    shortcut: str = Field(max_length=40)
    text: str = Field(max_length=canned_handlers.MAX_TEXT_CHARS)


class NewOperatorBody(BaseModel):
    login: str = Field(max_length=64)
    password: str = Field(max_length=accounts.MAX_PASSWORD_CHARS)
    role: OperatorRole = OperatorRole.OPERATOR
    display_name: str | None = Field(default=None, max_length=100)


def make_console_router() -> APIRouter:
    router = APIRouter(prefix="/console", tags=["console"])

    # ------------------------------------------------------------ pages

    @router.get("", include_in_schema=False)
    async def console_page(request: Request) -> FileResponse:
        active = await load_session(request)
        return _page("console.html" if active is not None else "login.html")

    @router.get("/static/{name}", include_in_schema=False)
    async def console_static(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(404)
        path = STATIC_DIR / name
        return FileResponse(
            path, media_type=_MEDIA[path.suffix], headers={"Cache-Control": "no-cache"}
        )

    # ------------------------------------------------------------ logging in

    @router.get("/api/login")
    async def login_token(request: Request) -> JSONResponse:
        """A fresh double-submit token for the login form (cookie and body)."""
        value = secrets.token_urlsafe(32)
        response = JSONResponse({"csrf_token": value}, headers={"Cache-Control": "no-store"})
        set_login_cookie(request, response, value)
        return response

    @router.post("/api/login")
    async def login(request: Request, body: LoginBody) -> JSONResponse:
        if not login_csrf_ok(request):
            raise HTTPException(403, texts.BAD_CSRF)
        c = container_of(request)
        now = _now()
        async with c.session_factory() as session:
            credentials = await accounts.check_credentials(session, body.login, body.password)
        async with c.conversations.transaction() as session:
            result = await accounts.record_login(
                session, c.settings, credentials, body.password, now
            )
            new = None
            if result.status is accounts.LoginStatus.OK and result.operator is not None:
                new = await accounts.open_session(session, c.settings, result.operator.id, now)
            await session.commit()
        if result.status is accounts.LoginStatus.LOCKED:
            until = result.locked_until or now
            local = until.astimezone(c.settings.tz).strftime("%H:%M")
            return JSONResponse(
                {"detail": texts.LOCKED.format(until=local), "locked_until": until.isoformat()},
                status_code=429,
                headers={"Retry-After": str(max(1, int((until - now).total_seconds())))},
            )
        if new is None or result.operator is None:
            return JSONResponse({"detail": texts.BAD_LOGIN}, status_code=401)
        response = JSONResponse(
            {"operator": operator_json(result.operator), "csrf_token": new.csrf_token}
        )
        max_age = int((new.expires_at - now).total_seconds())
        set_session_cookie(request, response, new.token, max_age)
        return response

    @router.post("/api/logout", dependencies=[Csrf])
    async def logout(request: Request, s: CurrentSession) -> JSONResponse:
        c = container_of(request)
        token = request.cookies.get(SESSION_COOKIE, "")
        async with c.conversations.transaction() as session:
            await accounts.close_session(session, token, _now())
            await session.commit()
        response = JSONResponse({"status": "logged_out"})
        clear_session_cookie(request, response)
        return response

    @router.get("/api/me")
    async def me(s: CurrentSession) -> dict[str, Any]:
        return {"operator": operator_json(s.operator), "csrf_token": s.csrf_token}

    # ------------------------------------------------------------ canned responses

    @router.get("/api/canned")
    async def canned_list(request: Request, _op: OperatorUser) -> dict[str, Any]:
        async with container_of(request).session_factory() as session:
            rows = await canned_handlers.list_canned(session)
        return {"canned": jsonable(rows)}

    @router.post("/api/canned", dependencies=[Csrf])
    async def canned_save(request: Request, body: CannedBody, _op: Supervisor) -> dict[str, Any]:
        c = container_of(request)
        async with c.conversations.transaction() as session:
            try:
                row = await canned_handlers.save_canned(
                    session, c.settings, body.shortcut, body.text, _now()
                )
            except canned_handlers.CannedError as exc:
                raise HTTPException(422, str(exc)) from exc
            await session.commit()
        return {"canned": jsonable(row)}

    @router.delete("/api/canned/{shortcut}", dependencies=[Csrf])
    async def canned_delete(request: Request, shortcut: str, _op: Supervisor) -> Response:
        c = container_of(request)
        async with c.conversations.transaction() as session:
            try:
                gone = await canned_handlers.delete_canned(session, shortcut)
            except canned_handlers.CannedError as exc:
                raise HTTPException(422, str(exc)) from exc
            await session.commit()
        if not gone:
            raise HTTPException(404)
        return Response(status_code=204)

    # ------------------------------------------------------------ operator accounts (admin)

    @router.get("/api/admin/operators")
    async def operators_list(request: Request, _op: Admin) -> dict[str, Any]:
        async with container_of(request).session_factory() as session:
            rows = await accounts.list_operators(session)
        return {"operators": [operator_json(o) for o in rows]}

    @router.post("/api/admin/operators", dependencies=[Csrf], status_code=201)
    async def operators_add(request: Request, body: NewOperatorBody, _op: Admin) -> dict[str, Any]:
        c = container_of(request)
        async with c.conversations.transaction() as session:
            try:
                info = await accounts.add_operator(
                    session,
                    c.vault,
                    accounts.NewOperator(
                        login=body.login,
                        password=body.password,
                        role=body.role,
                        display_name=body.display_name,
                    ),
                    _now(),
                )
            except accounts.OperatorExists as exc:
                raise HTTPException(409, "Такой логин уже есть.") from exc
            except accounts.OperatorAccountError as exc:
                raise HTTPException(422, exc.__doc__ or str(exc)) from exc
            await session.commit()
        return {"operator": operator_json(info)}

    @router.post("/api/admin/operators/{login}/disable", dependencies=[Csrf])
    async def operators_disable(request: Request, login: str, op: Admin) -> dict[str, Any]:
        c = container_of(request)
        async with c.conversations.transaction() as session:
            try:
                info = await accounts.set_active(session, login, False, _now())
            except accounts.OperatorAccountError as exc:
                raise HTTPException(404, texts.UNKNOWN_OPERATOR) from exc
            await session.commit()
        # Their chats go back to the queue, in their places: nobody waits on them.
        await c.operators.set_presence(info.id, Presence.OFFLINE)
        return {"operator": operator_json(info)}

    # ------------------------------------------------------------ live updates

    hub = ConsoleHub()

    @router.websocket("/ws")
    async def console_ws(ws: WebSocket) -> None:
        await serve_socket(hub, ws)

    router.include_router(make_chat_router())
    return router
