"""``python -m bot operators add|list|disable|enable|password``: console accounts."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from typing import TextIO

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers import canned as canned_handlers
from handlers import operators as accounts
from storage.crypto import PersonalDataVault
from storage.db import create_engine, create_session_factory
from storage.models import OperatorRole, Presence

FIRST_OPERATOR_HINT = (
    "No operator accounts yet. Create the first one:\n"
    "  python -m bot operators add admin --role admin --password-stdin\n"
    "(type the password and press Enter, or pipe it in), then open {url}/console"
)

ROLE_NAMES = {
    OperatorRole.OPERATOR: "оператор",
    OperatorRole.SUPERVISOR: "супервизор",
    OperatorRole.ADMIN: "администратор",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="operators_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create an account")
    add.add_argument("login")
    add.add_argument(
        "--role", choices=[r.value for r in OperatorRole], default=OperatorRole.OPERATOR.value
    )
    add.add_argument("--name", dest="display_name", default=None, help="shown to colleagues")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (else it is asked twice)",
    )
    add.add_argument(
        "--telegram-id",
        type=int,
        default=None,
        help="the operator's Telegram user id, for the operators' Telegram group",
    )
    add.add_argument("--capacity", type=int, default=None, help="chats at once")
    sub.add_parser("list", help="list the accounts")
    disable = sub.add_parser("disable", help="disable an account and end its sessions")
    disable.add_argument("login")
    enable = sub.add_parser("enable", help="enable a disabled account again")
    enable.add_argument("login")
    password = sub.add_parser("password", help="set a new password")
    password.add_argument("login")
    password.add_argument("--password-stdin", action="store_true")


def read_password(use_stdin: bool, stdin: TextIO, err: TextIO) -> str | None:
    if use_stdin:
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        print("the passwords differ", file=err)
        return None
    return first


async def run(
    settings: Settings,
    args: argparse.Namespace,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    if settings.is_sqlite:
        from storage.migrate import upgrade_async

        await upgrade_async(settings)
    engine = create_engine(settings)
    factory = create_session_factory(engine)
    vault = PersonalDataVault(settings.secret_key.get_secret_value())
    now = datetime.now(UTC)
    action = args.operators_command
    try:
        async with factory() as session:
            if action == "list":
                rows = await accounts.list_operators(session)
                if not rows:
                    print("no operator accounts", file=out)
                for op in rows:
                    flags = [] if op.active else ["disabled"]
                    if op.locked_until is not None and op.locked_until > now:
                        flags.append("locked")
                    if op.telegram_linked:
                        flags.append("telegram")
                    print(
                        f"{op.login}\t{op.role.value}\t{op.presence.value}\t{op.display_name}"
                        + (f"\t{','.join(flags)}" if flags else ""),
                        file=out,
                    )
                return 0
            if action in {"add", "password"}:
                password = read_password(args.password_stdin, stdin, err)
                if password is None:
                    return 1
                if action == "password":
                    info = await accounts.set_password(session, args.login, password)
                    await session.commit()
                    print(f"password changed for {info.login}", file=out)
                    return 0
                info = await accounts.add_operator(
                    session,
                    vault,
                    accounts.NewOperator(
                        login=args.login,
                        password=password,
                        role=OperatorRole(args.role),
                        display_name=args.display_name,
                        telegram_user_id=args.telegram_id,
                        capacity=args.capacity,
                    ),
                    now,
                )
                # A new install gets the default canned responses with its first account.
                await canned_handlers.ensure_default_canned(session, now)
                await session.commit()
                print(f"operator {info.login} added ({info.role.value})", file=out)
                return 0
            if action in {"disable", "enable"}:
                info = await accounts.set_active(session, args.login, action == "enable", now)
                await session.commit()
                if action == "disable":
                    await hand_back_chats(settings, info.id)
                print(f"operator {info.login} {action}d", file=out)
                return 0
    except accounts.OperatorExists as exc:
        print(f"an account for {exc} exists already", file=err)
        return 1
    except accounts.UnknownOperator as exc:
        print(f"no operator {exc}", file=err)
        return 1
    except accounts.OperatorAccountError as exc:
        print((exc.__doc__ or str(exc)).strip(), file=err)
        return 1
    finally:
        await engine.dispose()
    raise AssertionError(action)


async def hand_back_chats(settings: Settings, operator_id: int) -> None:
    """A disabled operator's chats go back to the queue, in their places."""
    from bot.container import Container

    container = Container(settings)  # nothing connects until it is used
    try:
        await container.operators.set_presence(operator_id, Presence.OFFLINE)
    finally:
        await container.close()


async def first_operator_hint(
    settings: Settings, session_factory: async_sessionmaker[AsyncSession]
) -> str | None:
    """What to print at start-up while no active operator account exists."""
    async with session_factory() as session:
        if await accounts.active_operator_count(session) > 0:
            return None
    url = settings.public_base_url or f"http://localhost:{settings.port}"
    return FIRST_OPERATOR_HINT.format(url=url.rstrip("/"))
