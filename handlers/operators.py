"""Operator accounts: passwords, logins with a lockout, console sessions.

Passwords are hashed with argon2id (argon2-cffi's ``PasswordHasher`` with its
RFC 9106 defaults) and never kept or logged. A console session is a random
token in an HttpOnly cookie; the database keeps only its SHA-256 (the token
has 256 bits of entropy, so a plain hash is enough) and the session's CSRF
token, which the console sends back in a header on every call that changes
something.

Handlers flush, never commit: the caller commits.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.errors import HandlerError
from storage.crypto import PersonalDataVault
from storage.models import Operator, OperatorRole, OperatorSession, Presence

LOGIN_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 256  # argon2 takes any length; a megabyte "password" is an attack
MAX_DISPLAY_NAME_CHARS = 100

_hasher = PasswordHasher()


class OperatorAccountError(HandlerError):
    """Root of the operator account errors."""


class InvalidLogin(OperatorAccountError):
    """A login must be 2-64 characters: lower-case latin letters, digits, ``._-``."""


class WeakPassword(OperatorAccountError):
    """The password is shorter than :data:`MIN_PASSWORD_CHARS` (or absurdly long)."""


class OperatorExists(OperatorAccountError):
    """That login (or Telegram user) already has an account."""


class UnknownOperator(OperatorAccountError):
    """No account with that login."""


@dataclass(frozen=True)
class NewOperator:
    login: str
    password: str
    role: OperatorRole = OperatorRole.OPERATOR
    display_name: str | None = None
    telegram_user_id: int | None = None  # kept only as a keyed hash
    capacity: int | None = None


@dataclass(frozen=True)
class OperatorInfo:
    id: int
    login: str
    display_name: str
    role: OperatorRole
    active: bool
    presence: Presence
    capacity: int | None
    locked_until: datetime | None
    telegram_linked: bool

    def has_role(self, role: OperatorRole) -> bool:
        """At least ``role``: an admin may do what a supervisor may."""
        return self.role.rank >= role.rank


def operator_info(op: Operator) -> OperatorInfo:
    return OperatorInfo(
        id=op.id,
        login=op.login,
        display_name=op.display_name,
        role=op.role,
        active=op.active,
        presence=op.presence,
        capacity=op.capacity,
        locked_until=op.locked_until,
        telegram_linked=op.telegram_user_hash is not None,
    )


def normalize_login(login: str) -> str:
    value = login.strip().lower()
    if not LOGIN_PATTERN.fullmatch(value):
        raise InvalidLogin(login[:64])
    return value


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS or len(password) > MAX_PASSWORD_CHARS:
        raise WeakPassword(f"a password has {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def telegram_user_hash(vault: PersonalDataVault, telegram_user_id: int) -> str:
    """The keyed hash that stands for an operator's Telegram user id
    (``Operator.telegram_user_hash``): the operators' desk looks them up by it."""
    return vault.hash_identity(f"telegram-operator:{telegram_user_id}")


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    # Verified against when the login is unknown, so that an unknown login
    # takes as long to refuse as a wrong password.
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify_now(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def _verify(password_hash: str, password: str) -> bool:
    # argon2 takes a few hundred milliseconds of CPU by design: off the event loop.
    return await asyncio.to_thread(_verify_now, password_hash, password)


async def _hash(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def add_operator(
    session: AsyncSession,
    vault: PersonalDataVault,
    new: NewOperator,
    now: datetime,
) -> OperatorInfo:
    login = normalize_login(new.login)
    check_password_strength(new.password)
    display = (new.display_name or login).strip()[:MAX_DISPLAY_NAME_CHARS] or login
    tg_hash = (
        telegram_user_hash(vault, new.telegram_user_id)
        if new.telegram_user_id is not None
        else None
    )
    taken = await session.scalar(select(Operator.id).where(Operator.login == login))
    if taken is not None:
        raise OperatorExists(login)
    if tg_hash is not None:
        tg_taken = await session.scalar(
            select(Operator.id).where(Operator.telegram_user_hash == tg_hash)
        )
        if tg_taken is not None:
            raise OperatorExists("telegram user")
    op = Operator(
        login=login,
        display_name=display,
        role=new.role,
        password_hash=await _hash(new.password),
        active=True,
        presence=Presence.OFFLINE,
        capacity=new.capacity,
        failed_logins=0,
        telegram_user_hash=tg_hash,
        created_at=now,
    )
    session.add(op)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent add of the same login
        raise OperatorExists(login) from exc
    return operator_info(op)


async def list_operators(session: AsyncSession) -> list[OperatorInfo]:
    rows = await session.scalars(select(Operator).order_by(Operator.login))
    return [operator_info(op) for op in rows]


async def get_operator(session: AsyncSession, operator_id: int) -> OperatorInfo | None:
    op = await session.get(Operator, operator_id)
    return operator_info(op) if op is not None else None


async def active_operator_count(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Operator).where(Operator.active.is_(True))
    )
    return int(count or 0)


async def set_active(
    session: AsyncSession, login: str, active: bool, now: datetime
) -> OperatorInfo:
    """Disable (or enable again) an account. Disabling ends its console
    sessions at once and takes it offline."""
    op = await session.scalar(select(Operator).where(Operator.login == normalize_login(login)))
    if op is None:
        raise UnknownOperator(login[:64])
    op.active = active
    if not active:
        op.presence = Presence.OFFLINE
        op.presence_changed_at = now
        await session.execute(
            update(OperatorSession)
            .where(OperatorSession.operator_id == op.id, OperatorSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    else:
        op.failed_logins = 0
        op.locked_until = None
    await session.flush()
    return operator_info(op)


async def set_password(session: AsyncSession, login: str, password: str) -> OperatorInfo:
    check_password_strength(password)
    op = await session.scalar(select(Operator).where(Operator.login == normalize_login(login)))
    if op is None:
        raise UnknownOperator(login[:64])
    op.password_hash = await _hash(password)
    op.failed_logins = 0
    op.locked_until = None
    await session.flush()
    return operator_info(op)


# --------------------------------------------------------------------------
# Logging in
# --------------------------------------------------------------------------


class LoginStatus(StrEnum):
    OK = "ok"
    INVALID = "invalid"  # unknown login, wrong password or a disabled account: one answer
    LOCKED = "locked"  # too many wrong passwords; wait until ``locked_until``


@dataclass(frozen=True)
class LoginResult:
    status: LoginStatus
    operator: OperatorInfo | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Credentials:
    """What a login attempt showed, before it is recorded."""

    operator_id: int | None  # None: no such login
    password_ok: bool


async def check_credentials(session: AsyncSession, login: str, password: str) -> Credentials:
    """Read-only: the account and whether the password fits it.

    The hash is checked off the event loop and outside any write transaction
    (it takes a few hundred milliseconds by design); an unknown login is
    checked against a decoy hash, so that it takes as long to refuse.
    """
    try:
        value: str | None = normalize_login(login)
    except InvalidLogin:
        value = None
    row = (
        (
            await session.execute(
                select(Operator.id, Operator.password_hash).where(Operator.login == value)
            )
        ).first()
        if value is not None and len(password) <= MAX_PASSWORD_CHARS
        else None
    )
    if row is None:
        await _verify(await asyncio.to_thread(_decoy_hash), password[:MAX_PASSWORD_CHARS])
        return Credentials(None, False)
    return Credentials(row[0], await _verify(row[1], password))


async def record_login(
    session: AsyncSession,
    settings: Settings,
    credentials: Credentials,
    password: str,
    now: datetime,
) -> LoginResult:
    """Decide and record a login attempt checked by :func:`check_credentials`.

    ``settings.operator_login_attempts`` wrong passwords in a row lock the
    account for ``settings.operator_lockout_minutes``; while it is locked even
    the right password is refused, and guesses then do not extend the lock
    (nobody can keep an operator out for ever by guessing). A disabled
    account gets the same answer as a wrong password.
    """
    if credentials.operator_id is None:
        return LoginResult(LoginStatus.INVALID)
    op = await session.get(Operator, credentials.operator_id, with_for_update=True)
    if op is None:
        return LoginResult(LoginStatus.INVALID)
    if op.locked_until is not None and op.locked_until > now:
        return LoginResult(LoginStatus.LOCKED, locked_until=op.locked_until)
    if not op.active:
        return LoginResult(LoginStatus.INVALID)
    if not credentials.password_ok:
        op.failed_logins = (op.failed_logins or 0) + 1
        if op.failed_logins >= settings.operator_login_attempts:
            op.failed_logins = 0
            op.locked_until = now + timedelta(minutes=settings.operator_lockout_minutes)
            await session.flush()
            return LoginResult(LoginStatus.LOCKED, locked_until=op.locked_until)
        await session.flush()
        return LoginResult(LoginStatus.INVALID)
    op.failed_logins = 0
    op.locked_until = None
    if _hasher.check_needs_rehash(op.password_hash):
        op.password_hash = await _hash(password)
    await session.flush()
    return LoginResult(LoginStatus.OK, operator=operator_info(op))


async def authenticate(
    session: AsyncSession,
    settings: Settings,
    login: str,
    password: str,
    now: datetime,
) -> LoginResult:
    """:func:`check_credentials` then :func:`record_login` in one session."""
    credentials = await check_credentials(session, login, password)
    return await record_login(session, settings, credentials, password, now)


# --------------------------------------------------------------------------
# Console sessions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class NewSession:
    token: str  # for the cookie; never stored
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class ActiveSession:
    id: int
    operator: Operator  # loaded; still readable once its database session is closed
    csrf_token: str
    expires_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(
    session: AsyncSession, settings: Settings, operator_id: int, now: datetime
) -> NewSession:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=settings.console_session_hours)
    session.add(
        OperatorSession(
            token_hash=token_hash(token),
            operator_id=operator_id,
            csrf_token=csrf,
            created_at=now,
            expires_at=expires,
        )
    )
    await session.flush()
    return NewSession(token, csrf, expires)


async def session_of(session: AsyncSession, token: str, now: datetime) -> ActiveSession | None:
    """The live session of a cookie's token: not expired, not revoked, and
    its operator's account still active."""
    if not token or len(token) > 128:
        return None
    row = (
        await session.execute(
            select(OperatorSession, Operator)
            .join(Operator, Operator.id == OperatorSession.operator_id)
            .where(
                OperatorSession.token_hash == token_hash(token),
                OperatorSession.revoked_at.is_(None),
                OperatorSession.expires_at > now,
                Operator.active.is_(True),
            )
        )
    ).first()
    if row is None:
        return None
    s, op = row
    return ActiveSession(s.id, op, s.csrf_token, s.expires_at)


async def close_session(session: AsyncSession, token: str, now: datetime) -> bool:
    result = await session.execute(
        update(OperatorSession)
        .where(
            OperatorSession.token_hash == token_hash(token), OperatorSession.revoked_at.is_(None)
        )
        .values(revoked_at=now)
    )
    return bool(getattr(result, "rowcount", 0))
