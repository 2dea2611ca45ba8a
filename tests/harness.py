"""A transcript test client (errbot's test backend, in our terms).

``ChatClient.say("...")`` sends a line as the customer through the real
Pipeline (real NLU, real storage) and returns the bot's replies;
``press("title")`` presses a button of the last replies. Tests then read
like the chat itself.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.pipeline import HandleResult, Pipeline
from dialogs.messages import Button, InboundMessage, Reply

DEMO_ACCOUNT = "1002003001"
DEMO_SNILS = "112-233-445 95"
DEMO_ACCOUNT_2 = "1002003002"
DEMO_SNILS_2 = "987-654-321 83"
DEMO_ACCOUNT_3 = "1002003003"  # the same owner as DEMO_ACCOUNT

# Tuesday 24 November 2026, 10:00 Moscow time: the contact center is open,
# readings taken today count in November's charges.
DEFAULT_NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)


class Clock:
    """A settable clock for the pipeline (tests never read the wall clock)."""

    def __init__(self, now: datetime = DEFAULT_NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def plain(text: str) -> str:
    """Reply text with non-breaking spaces made plain, for easy asserts."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")


class ChatClient:
    _ids = itertools.count(1)

    def __init__(
        self,
        pipeline: Pipeline,
        session_factory: async_sessionmaker[AsyncSession],
        clock: Clock,
        channel: str = "test",
        chat_id: str = "chat-1",
        user_id: str = "user-1",
    ) -> None:
        self.pipeline = pipeline
        self.sessions = session_factory
        self.clock = clock
        self.channel = channel
        self.chat_id = chat_id
        self.user_id = user_id
        self.last_replies: list[Reply] = []
        self.last_result: HandleResult | None = None

    def message(self, text: str, payload: str | None = None) -> InboundMessage:
        return InboundMessage(
            channel=self.channel,
            chat_id=self.chat_id,
            user_id=self.user_id,
            text=text,
            platform_message_id=f"m{next(self._ids)}",
            received_at=self.clock(),
            payload=payload,
        )

    async def send(self, msg: InboundMessage) -> list[Reply]:
        self.last_result = await self.pipeline.handle(msg)
        self.last_replies = list(self.last_result.replies)
        return self.last_replies

    async def say(self, text: str) -> list[Reply]:
        """Write ``text`` as the customer; the bot's replies."""
        return await self.send(self.message(text))

    async def press(self, title: str) -> list[Reply]:
        """Press the button titled ``title`` (or starting with it) of the last replies."""
        button = self.button(title)
        return await self.send(self.message(button.title, payload=button.payload))

    def button(self, title: str) -> Button:
        buttons = self.last_buttons
        for b in buttons:
            if b.title == title:
                return b
        for b in buttons:
            if b.title.startswith(title):
                return b
        raise AssertionError(f"no button {title!r} in {[b.title for b in buttons]}")

    @property
    def last_buttons(self) -> list[Button]:
        return [b for r in self.last_replies for b in r.buttons]

    @property
    def button_titles(self) -> list[str]:
        return [b.title for b in self.last_buttons]

    @property
    def texts(self) -> list[str]:
        return [plain(r.text) for r in self.last_replies]

    @property
    def last_text(self) -> str:
        """All texts of the last replies, joined by newlines, spaces made plain."""
        return "\n".join(self.texts)

    async def link(self, account: str = DEMO_ACCOUNT, snils: str = DEMO_SNILS) -> None:
        """Link a demo account the way a customer does it, in one message."""
        await self.press_payload(f'/link_account{{"account_number":"{account}"}}')
        if "СНИЛС" in self.last_text:
            await self.say(snils)
        assert "привязан" in self.last_text or "Переключился" in self.last_text, self.last_text

    async def press_payload(self, payload: str, title: str = "") -> list[Reply]:
        return await self.send(self.message(title or payload, payload=payload))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as s:
            yield s
