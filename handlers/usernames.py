"""Messenger usernames a customer types: a Telegram ``@name`` or a
``t.me/name`` link is their address on that platform, personal data like a
phone number, so redaction (handlers/pii.py) removes it.

Telegram's rules for a username: 5 to 32 characters, Latin letters, digits
and ``_``, beginning with a letter. A WhatsApp address is a phone number
(``wa.me/79...``, ``whatsapp:+79...``): the phone recognizer takes it.
"""

from __future__ import annotations

import re
from typing import Final

USERNAME_MARK: Final = "[ник скрыт]"
_NAME = r"[A-Za-z][A-Za-z0-9_]{4,31}"
USERNAME_PATTERN: Final = re.compile(
    # A link, with or without the scheme, or an @name standing alone (after a
    # space or an opening mark, not inside "i***@yandex.ru": a masked e-mail).
    rf"(?:(?:https?://)?(?:www\.)?(?:t|telegram)\.me/@?{_NAME}"
    rf"|(?<![^\s(«\"'“„:,;])@{_NAME})(?![\w@]|\.\w)",
    re.IGNORECASE,
)


def redact_usernames(text: str) -> str:
    if "@" not in text and ".me/" not in text.lower():
        return text
    return USERNAME_PATTERN.sub(USERNAME_MARK, text)
