"""``python -m bot``: serve, chat in a terminal, migrate, demo data, operator
accounts, NLU tools.

Settings are loaded once here and passed down; a configuration error prints
what is wrong and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from bot import messages as say
from bot.channels.choices import choice_lines, last_buttons, resolve_choice
from config.settings import ConfigError, Settings, load_settings
from dialogs.messages import Button, InboundMessage, Reply

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot", description="Heatdesk: the contact-center bot."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="serve the app (default): widget, health, metrics")
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: WEB_CONCURRENCY, else 1); >1 needs PostgreSQL and Redis",
    )
    chat = sub.add_parser("chat", help="talk to the bot in this terminal")
    chat.add_argument(
        "--chat-id", default=None, help="conversation to continue (default: per OS user)"
    )
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations")
    up.add_argument("revision", nargs="?", default="head")
    sub.add_parser("demo-data", help="load the demo accounts (once)")
    from bot.console.cli import add_arguments as operators_arguments

    operators_arguments(sub.add_parser("operators", help="console accounts: add | list | disable"))
    nlu = sub.add_parser(
        "nlu",
        help="train | parse TEXT | eval PATH [--report FILE]",
        add_help=False,
        prefix_chars="\0",  # everything after "nlu" belongs to nlu.cli
    )
    nlu.add_argument("nlu_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    command = args.command or "run"
    if command == "run":
        return run_server(settings, getattr(args, "workers", None))
    if command == "chat":
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        chat_id = args.chat_id or f"local-{getpass.getuser()}"
        return asyncio.run(chat(settings, chat_id, sys.stdin, sys.stdout))
    if command == "db":
        from storage.migrate import upgrade

        upgrade(settings, args.revision)
        print(f"database upgraded to {args.revision}")
        return 0
    if command == "demo-data":
        return asyncio.run(demo_data(settings))
    if command == "operators":
        from bot.console.cli import run as operators_main

        return asyncio.run(operators_main(settings, args))
    if command == "nlu":
        from nlu.cli import main as nlu_main

        return int(nlu_main(list(args.nlu_args), settings))
    raise AssertionError(command)


def multiprocess_problem(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` processes cannot serve with these settings, if they cannot."""
    if workers < 1:
        return "--workers must be at least 1"
    if workers == 1:
        return None
    if settings.is_sqlite:
        return (
            f"{workers} workers need PostgreSQL: SQLite (embedded mode) serves one process; "
            "set DATABASE_URL, or run one worker"
        )
    if settings.redis_url is None:
        return (
            f"{workers} workers need REDIS_URL: in-process locks do not keep two processes "
            "off one conversation"
        )
    return None


def run_server(settings: Settings, workers: int | None = None) -> int:
    import uvicorn
    from fastapi import FastAPI

    from bot.app import configure_logging, create_app
    from bot.websocket import PROTOCOL

    workers = settings.web_concurrency if workers is None else workers
    problem = multiprocess_problem(settings, workers)
    if problem is not None:
        print(f"configuration error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings)
    # Several processes need an import string: each worker builds its own app
    # from the environment (bot.app.create_app_from_env).
    app: FastAPI | str = (
        create_app(settings, freeze_gc=True) if workers == 1 else "bot.app:create_app_from_env"
    )
    uvicorn.run(
        app,
        factory=workers > 1,
        workers=workers,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        # uvicorn's websockets-sansio protocol, minus the handshake kept per socket.
        ws=PROTOCOL,
        # Frames up to 1 MiB reach the app, which answers anything over its own
        # 64 KiB limit with an error frame and keeps the socket open.
        ws_max_size=1024 * 1024,
        # No permessage-deflate: its zlib state is most of an idle widget
        # socket's memory (bench/load.py --sockets-only), and the widget's
        # frames are a few hundred bytes of JSON.
        ws_per_message_deflate=False,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        lifespan="on",
    )
    return 0


async def demo_data(settings: Settings) -> int:
    from bot.container import Container

    container = Container(settings)
    try:
        if settings.is_sqlite:
            from storage.migrate import upgrade_async

            await upgrade_async(settings)
        loaded = await container.load_demo_data()
    finally:
        await container.close()
    print("demo data loaded" if loaded else "demo data already present")
    return 0


# --------------------------------------------------------------------------
# The terminal chat
# --------------------------------------------------------------------------


CLI_CHOICE_STYLE = "  [{number}] {title}"


def render_replies(replies: Sequence[Reply], out: TextIO) -> tuple[Button, ...]:
    """Print replies with numbered buttons; the buttons of the last one that has any."""
    for reply in replies:
        lines = reply.text.splitlines() or [""]
        out.write(f"{say.CLI_BOT}: {lines[0]}\n")
        for line in lines[1:]:
            out.write(f"     {line}\n")
        for line in choice_lines(reply.buttons, CLI_CHOICE_STYLE):
            out.write(line + "\n")
    out.flush()
    return last_buttons(replies)


async def chat(settings: Settings, chat_id: str, stdin: TextIO, out: TextIO) -> int:
    from bot.channels import InlineChannel
    from bot.container import Container

    container = Container(settings, extra_channels=[InlineChannel("cli")])
    interactive = stdin.isatty()
    try:
        await container.start(worker=False)
        out.write(say.CLI_WELCOME.format(company=settings.company_name) + "\n")
        out.flush()
        buttons: tuple[Button, ...] = ()
        while True:
            if interactive:
                out.write(f"{say.CLI_YOU}: ")
                out.flush()
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                break
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            payload: str | None = None
            # A number or a label presses that button; any other number (a reading) is text.
            pressed = resolve_choice(text, buttons)
            if pressed is not None:
                if not interactive and text != pressed.title:
                    out.write(f"{say.CLI_YOU}: {pressed.title}\n")
                text, payload = pressed.title, pressed.payload
            msg = InboundMessage(
                channel="cli",
                chat_id=chat_id,
                user_id=chat_id,
                text=text,
                platform_message_id=uuid.uuid4().hex,
                received_at=datetime.now(UTC),
                payload=payload,
            )
            try:
                result = await container.handle(msg)
            except Exception as exc:
                out.write(say.CLI_ERROR.format(error=type(exc).__name__) + "\n")
                out.flush()
                continue
            buttons = render_replies(result.replies, out) or ()
        if interactive:
            out.write("\n" + say.CLI_BYE + "\n")
    except KeyboardInterrupt:
        out.write("\n" + say.CLI_BYE + "\n")
    finally:
        await container.close()
    return 0
