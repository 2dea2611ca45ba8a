"""Personal text made safe to store: SNILS, phone numbers, e-mail
addresses and messenger usernames redacted.

Every text the bot keeps (messages, outbox bodies, appeal descriptions,
operator summaries) goes through :func:`redact_text`; button payloads go
through :func:`redact_payload`. The recognizers are handlers.snils.find_snils,
handlers.contacts.find_phones and handlers.emails.find_emails, the same ones
the flows take a SNILS, a phone or an e-mail address from, so what the bot
accepts as personal data is what is removed; and handlers.usernames (a
Telegram ``@name`` or ``t.me/name``: a platform address).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config import Settings
from handlers.contacts import PHONE_MARK, InvalidPhone, find_phones, normalize_phone, redact_phones
from handlers.emails import EMAIL_MARK, redact_emails
from handlers.snils import SNILS_MARK, redact_snils
from handlers.usernames import redact_usernames
from storage.crypto import PersonalDataVault
from storage.models import Office

# Payload keys whose value is personal whatever it looks like (when it has
# digits: ``{"phone": "skip"}`` is a button, not a number).
_PERSONAL_KEYS: Final = {"snils": SNILS_MARK, "phone": PHONE_MARK, "contact_phone": PHONE_MARK}
# Keys whose value is an e-mail address whatever it looks like.
_EMAIL_KEYS: Final = frozenset({"email"})
_MAX_DEPTH: Final = 20
# What a SNILS and a phone number are made of: a text without it has neither.
_DIGIT: Final = re.compile(r"\d")
# The examples the flows' wording gives ("например 123-456-789 01",
# "+7 910 123-45-67"): nobody's data, and a reply must keep them.
WORDING_EXAMPLES: Final = frozenset({"12345678901", "+79101234567"})


def redact_text(text: str, keep: frozenset[str] = frozenset()) -> str:
    """``text`` without SNILS, phone numbers and e-mail addresses (``keep``:
    numbers to leave, normalised as ``+78001001900`` or 11 SNILS digits: the company's hotline
    and the wording's examples in the bot's own replies)."""
    # Formatted SNILS first: its groups must not be read as a phone; then
    # phones, so that 89051234567 is marked as the phone it is; then plain
    # 11-digit runs, which linking may take for a SNILS, and written SNILS of
    # a wrong length (after phones: 471 200 000 0 may be a phone's ten digits).
    # E-mail addresses go first of all: their digits are no phone or SNILS,
    # and their ``@`` is no username.
    text = redact_usernames(redact_emails(text))
    if _DIGIT.search(text) is None:
        return text  # a SNILS and a phone are digits (\d, as in their patterns)
    text = redact_snils(text, formatted_only=True, keep=keep)
    text = redact_phones(text, keep)
    return redact_snils(text, keep=keep)


def _redact_value(key: str | None, value: object, depth: int) -> object:
    if depth > _MAX_DEPTH:
        return None
    if isinstance(value, dict):
        return {str(k): _redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(key, v, depth + 1) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    text = str(value)
    if key in _EMAIL_KEYS:
        return EMAIL_MARK
    if key in _PERSONAL_KEYS and any(ch.isdigit() for ch in text):
        return _PERSONAL_KEYS[key]
    redacted = redact_text(text)
    return value if redacted == text else redacted


def redact_values(values: Mapping[str, object]) -> dict[str, object]:
    """A mapping (a form's slots) safe to show and store: personal keys and
    anything shaped like a SNILS, phone or e-mail address redacted."""
    return {str(k): _redact_value(str(k), v, 0) for k, v in values.items()}


def redact_payload(payload: str) -> str:
    """A button payload (``/intent{"slot": "value"}``) safe to store: the
    values of personal keys and anything shaped like a SNILS or phone go."""
    brace = payload.find("{")
    if brace >= 0:
        try:
            data = json.loads(payload[brace:])
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            clean = _redact_value(None, data, 0)
            if clean == data:
                return payload  # as the button sent it
            return payload[:brace] + json.dumps(clean, ensure_ascii=False)
    return redact_text(payload)


def _normalised(phone: str) -> str | None:
    try:
        return normalize_phone(phone)
    except InvalidPhone:
        return None


async def company_phones(session: AsyncSession, settings: Settings) -> frozenset[str]:
    """The company's own numbers (hotline, offices) and the wording's
    examples: public, never redacted."""
    raw = [settings.hotline_phone, *(await session.scalars(select(Office.phone)))]
    return WORDING_EXAMPLES | {p for p in map(_normalised, raw) if p is not None}


async def redact_outbound(
    session: AsyncSession, settings: Settings, texts: Sequence[str]
) -> list[str]:
    """The bot's reply texts as they may be stored and sent: a customer's
    SNILS or phone never, the company's own numbers kept."""
    keep = WORDING_EXAMPLES
    if any(_DIGIT.search(t) and next(find_phones(t), None) is not None for t in texts):
        # Only replies with a number cost the look-up.
        keep = await company_phones(session, settings)
    return [redact_text(t, keep) for t in texts]


def decrypt_payload(vault: PersonalDataVault, body: dict[str, object]) -> str | None:
    """The button payload of an inbox body: encrypted (``payload_enc``), or in
    the clear in entries written before it was (read, never written)."""
    token = body.get("payload_enc")
    if isinstance(token, str):
        return vault.decrypt(token)
    legacy = body.get("payload")
    return legacy if isinstance(legacy, str) else None
