"""Who is at the console: the session cookie, roles and CSRF.

- :func:`require_role` is a FastAPI dependency that returns the current
  :class:`~storage.models.Operator`: 401 without a live session, 403 when the
  operator's role is below the one asked for (roles are ranked: an admin may
  do what a supervisor may, a supervisor what an operator may).
- :func:`csrf_protected` goes on every call that changes something: the
  session's CSRF token must come back in the ``X-CSRF-Token`` header (403
  otherwise). The cookie is SameSite=Strict as well; the token is what holds
  when a browser or a proxy does not honour that.
- Logging in has no session yet: its CSRF token is a double-submit one, a
  random value in an HttpOnly cookie of its own that the page reads from
  ``GET /console/api/login`` and sends back in the header.

The session is read once per request (FastAPI caches :func:`current_session`
within a request), so a route with both dependencies asks the database once.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Final

from fastapi import Depends, HTTPException, Request, Response
from starlette.requests import HTTPConnection

from bot.console import texts
from handlers.operators import ActiveSession, session_of
from storage.models import Operator, OperatorRole

if TYPE_CHECKING:
    from bot.container import Container

SESSION_COOKIE: Final = "heatdesk_console"
LOGIN_COOKIE: Final = "heatdesk_console_login"
CSRF_HEADER: Final = "X-CSRF-Token"
COOKIE_PATH: Final = "/console"
LOGIN_COOKIE_SECONDS: Final = 3600


def container_of(conn: HTTPConnection) -> Container:
    container: Container = conn.app.state.container
    return container


def _now() -> datetime:
    return datetime.now(UTC)


async def load_session(conn: HTTPConnection) -> ActiveSession | None:
    """The live session of the request's cookie, if any (HTTP and WebSocket)."""
    token = conn.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    async with container_of(conn).session_factory() as session:
        return await session_of(session, token, _now())


@dataclass(frozen=True)
class ConsoleSession:
    id: int
    operator: Operator
    csrf_token: str


async def current_session(request: Request) -> ConsoleSession:
    """401 without a live session."""
    active = await load_session(request)
    if active is None:
        raise HTTPException(401, texts.NOT_LOGGED_IN)
    return ConsoleSession(active.id, active.operator, active.csrf_token)


CurrentSession = Annotated[ConsoleSession, Depends(current_session)]


def has_role(operator: Operator, role: OperatorRole) -> bool:
    return operator.role.rank >= role.rank


def require_role(role: OperatorRole) -> Callable[..., Awaitable[Operator]]:
    """A dependency: the current operator if their role is at least ``role``."""

    async def dependency(s: CurrentSession) -> Operator:
        if not has_role(s.operator, role):
            raise HTTPException(403, texts.WRONG_ROLE)
        return s.operator

    dependency.__name__ = f"require_{role.value}"
    return dependency


async def csrf_protected(request: Request, s: CurrentSession) -> None:
    """403 unless the ``X-CSRF-Token`` header carries the session's token."""
    given = request.headers.get(CSRF_HEADER, "")
    if not given or not hmac.compare_digest(given.encode(), s.csrf_token.encode()):
        raise HTTPException(403, texts.BAD_CSRF)


def login_csrf_ok(request: Request) -> bool:
    """The login form's double-submit token: header equal to its cookie."""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    given = request.headers.get(CSRF_HEADER, "")
    return bool(cookie) and bool(given) and hmac.compare_digest(cookie.encode(), given.encode())


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request)
    )


def set_login_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        value,
        max_age=LOGIN_COOKIE_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
