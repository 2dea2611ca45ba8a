"""Operator accounts on SQLite and PostgreSQL: hashing, lockout, sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers import operators as accounts
from storage.crypto import PersonalDataVault
from storage.models import Operator, OperatorRole, OperatorSession

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
PASSWORD = "a-long-enough-password"


async def _add(session: AsyncSession, vault: PersonalDataVault, login: str = "anna") -> int:
    info = await accounts.add_operator(
        session,
        vault,
        accounts.NewOperator(
            login=login, password=PASSWORD, role=OperatorRole.SUPERVISOR, telegram_user_id=4242
        ),
        NOW,
    )
    await session.commit()
    return info.id


async def test_the_password_and_telegram_id_are_kept_only_as_hashes(
    db_session: AsyncSession, vault: PersonalDataVault
) -> None:
    await _add(db_session, vault, "Anna")
    op = await db_session.scalar(select(Operator))
    assert op is not None
    assert op.login == "anna"  # logins are lower case
    assert op.password_hash.startswith("$argon2id$")
    assert PASSWORD not in op.password_hash
    assert op.telegram_user_hash == accounts.telegram_user_hash(vault, 4242)
    assert "4242" not in (op.telegram_user_hash or "")
    with pytest.raises(accounts.OperatorExists):
        await _add(db_session, vault, "anna")
    with pytest.raises(accounts.WeakPassword):
        await accounts.add_operator(
            db_session, vault, accounts.NewOperator(login="boris", password="short"), NOW
        )
    with pytest.raises(accounts.InvalidLogin):
        await accounts.add_operator(
            db_session, vault, accounts.NewOperator(login="не латиница", password=PASSWORD), NOW
        )


async def test_lockout_after_five_failures_and_it_is_not_extended(
    db_session: AsyncSession, db_settings: Settings, vault: PersonalDataVault
) -> None:
    await _add(db_session, vault)
    statuses = []
    for i in range(5):
        result = await accounts.authenticate(db_session, db_settings, "anna", f"bad-{i}", NOW)
        statuses.append(result.status)
    await db_session.commit()
    assert statuses[:4] == [accounts.LoginStatus.INVALID] * 4
    assert statuses[4] is accounts.LoginStatus.LOCKED
    until = NOW + timedelta(minutes=db_settings.operator_lockout_minutes)
    later = NOW + timedelta(minutes=10)
    # Guessing on while locked neither gets in nor moves the end of the lock.
    for password in ("bad-again", PASSWORD):
        result = await accounts.authenticate(db_session, db_settings, "anna", password, later)
        assert result.status is accounts.LoginStatus.LOCKED
        assert result.locked_until == until
    after = until + timedelta(seconds=1)
    ok = await accounts.authenticate(db_session, db_settings, "anna", PASSWORD, after)
    assert ok.status is accounts.LoginStatus.OK
    assert ok.operator is not None
    assert ok.operator.role is OperatorRole.SUPERVISOR
    op = await db_session.scalar(select(Operator))
    assert op is not None
    assert op.failed_logins == 0
    assert op.locked_until is None


async def test_sessions_expire_and_end_on_logout_or_when_the_account_is_disabled(
    db_session: AsyncSession, db_settings: Settings, vault: PersonalDataVault
) -> None:
    op_id = await _add(db_session, vault)
    first = await accounts.open_session(db_session, db_settings, op_id, NOW)
    second = await accounts.open_session(db_session, db_settings, op_id, NOW)
    await db_session.commit()
    stored = list(await db_session.scalars(select(OperatorSession.token_hash)))
    assert first.token not in stored
    assert accounts.token_hash(first.token) in stored

    live = await accounts.session_of(db_session, first.token, NOW + timedelta(hours=1))
    assert live is not None
    assert live.operator.id == op_id
    assert live.csrf_token == first.csrf_token
    expired = NOW + timedelta(hours=db_settings.console_session_hours, seconds=1)
    assert await accounts.session_of(db_session, first.token, expired) is None

    assert await accounts.close_session(db_session, first.token, NOW)
    await db_session.commit()
    assert await accounts.session_of(db_session, first.token, NOW) is None
    assert await accounts.session_of(db_session, second.token, NOW) is not None

    await accounts.set_active(db_session, "anna", False, NOW)
    await db_session.commit()
    assert await accounts.session_of(db_session, second.token, NOW) is None
    refused = await accounts.authenticate(db_session, db_settings, "anna", PASSWORD, NOW)
    assert refused.status is accounts.LoginStatus.INVALID
    await accounts.set_active(db_session, "anna", True, NOW)
    again = await accounts.authenticate(db_session, db_settings, "anna", PASSWORD, NOW)
    assert again.status is accounts.LoginStatus.OK
