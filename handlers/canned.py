"""Canned responses: ready answers an operator types as ``/shortcut``.

A canned text is stored redacted like every other text: a customer's SNILS,
phone or username pasted into one is not kept (the company's own numbers are).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.errors import HandlerError
from handlers.pii import company_phones, redact_text
from storage.models import CannedResponse

SHORTCUT_PATTERN = re.compile(r"[a-zа-яё0-9_-]{1,39}")
MAX_TEXT_CHARS = 2000

# What a fresh installation offers; a supervisor edits the list in the console.
DEFAULT_CANNED: tuple[tuple[str, str], ...] = (
    ("привет", "Здравствуйте! Меня зовут {operator}, я оператор контакт-центра. Чем помочь?"),
    ("минуту", "Пожалуйста, подождите минуту: уточняю информацию."),
    ("счёт", "Подскажите, пожалуйста, номер вашего лицевого счёта."),
    ("спасибо", "Спасибо за обращение! Если появятся вопросы, пишите в любое время."),
)


class CannedError(HandlerError):
    """A canned response cannot be saved as given."""


@dataclass(frozen=True)
class Canned:
    id: int
    shortcut: str
    text: str


def normalize_shortcut(shortcut: str) -> str:
    value = shortcut.strip().lstrip("/").lower()
    if not SHORTCUT_PATTERN.fullmatch(value):
        raise CannedError("a shortcut is 1-39 letters, digits, '_' or '-'")
    return value


async def list_canned(session: AsyncSession) -> list[Canned]:
    rows = await session.scalars(select(CannedResponse).order_by(CannedResponse.shortcut))
    return [Canned(r.id, r.shortcut, r.text) for r in rows]


async def save_canned(
    session: AsyncSession, settings: Settings, shortcut: str, text: str, now: datetime
) -> Canned:
    """Add a canned response, or replace the text of an existing shortcut."""
    key = normalize_shortcut(shortcut)
    body = redact_text(text.strip(), await company_phones(session, settings))
    if not body or len(body) > MAX_TEXT_CHARS:
        raise CannedError(f"a canned response has 1-{MAX_TEXT_CHARS} characters")
    row = await session.scalar(select(CannedResponse).where(CannedResponse.shortcut == key))
    if row is None:
        row = CannedResponse(shortcut=key, text=body, created_at=now)
        session.add(row)
    else:
        row.text = body
    await session.flush()
    return Canned(row.id, row.shortcut, row.text)


async def delete_canned(session: AsyncSession, shortcut: str) -> bool:
    result = await session.execute(
        delete(CannedResponse).where(CannedResponse.shortcut == normalize_shortcut(shortcut))
    )
    return bool(getattr(result, "rowcount", 0))


async def ensure_default_canned(session: AsyncSession, now: datetime) -> int:
    """The default set, when there is no canned response at all (a new install)."""
    if await session.scalar(select(CannedResponse.id).limit(1)) is not None:
        return 0
    session.add_all(CannedResponse(shortcut=k, text=t, created_at=now) for k, t in DEFAULT_CANNED)
    await session.flush()
    return len(DEFAULT_CANNED)
