"""E-mail addresses a customer types: the one recognizer the flows take an
address from and that redaction removes (handlers/pii.py), and its mask.

A recognizer, not a validator: it has to find addresses inside free text
("пришлите на ivan.petrov@mail.ru, пожалуйста"), which a validation library
does not do; it accepts the usual shape (local part, @, a dotted domain with
a letter TLD), Cyrillic domains included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from handlers.errors import HandlerError

EMAIL_MARK: Final = "[e-mail скрыт]"
_LOCAL = r"[\w.+\-]{1,64}"
_LABEL = r"[^\W_](?:[\w\-]{0,61}[^\W_])?"
EMAIL_PATTERN: Final = re.compile(
    rf"(?<![\w.+\-@])(?P<local>{_LOCAL})@(?P<domain>(?:{_LABEL}\.)+[^\W\d_]{{2,24}})(?![\w\-@])"
)


class InvalidEmail(HandlerError):
    """Not an e-mail address."""


@dataclass(frozen=True, slots=True)
class EmailMatch:
    email: str  # normalised: the domain in lower case
    start: int
    end: int


def _normal(match: re.Match[str]) -> str:
    return f"{match.group('local')}@{match.group('domain').lower()}"


def find_emails(text: str) -> Iterator[EmailMatch]:
    """Every e-mail address in ``text``, left to right."""
    for match in EMAIL_PATTERN.finditer(text):
        local = match.group("local")
        if local.startswith(".") or local.endswith(".") or ".." in local:
            continue
        yield EmailMatch(_normal(match), match.start(), match.end())


def normalize_email(text: str) -> str:
    """The one address ``text`` consists of; :class:`InvalidEmail` otherwise."""
    stripped = text.strip().strip("<>.,;")
    found = next(find_emails(stripped), None)
    if found is None or (found.start, found.end) != (0, len(stripped)):
        raise InvalidEmail(stripped[:80])
    return found.email


def redact_emails(text: str) -> str:
    return EMAIL_PATTERN.sub(EMAIL_MARK, text) if "@" in text else text


def mask_email(email: str) -> str:
    """``ivan.petrov@mail.ru`` -> ``i***@mail.ru``: enough to recognise it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"
