"""SNILS: the one recognizer, the official checksum, and redaction.

The check number is computed over the first nine digits with weights 9..1
(the first digit weighs 9): a sum below 100 is the check number itself,
100 and 101 give 00, a larger sum is taken mod 101 and the same rule applied.
Numbers up to 001-001-998 were issued before the checksum and are not checked.
A SNILS is personal data: never log it, never echo it back, never store it in
the clear (storage.crypto.PersonalDataVault.hash_snils).

:func:`find_snils` is the only place that says what a SNILS looks like in a
text: the link_account flow takes its SNILS from it, and :func:`redact_snils`
removes exactly its matches, so what linking accepts can never be stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

_UNCHECKED_MAX: Final = 1001998
# Hyphen, non-breaking hyphen, figure dash, en and em dashes, minus sign.
DASHES: Final = "\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
# Spaces (not a line break: two lines are two numbers), at most one mark.
# Possessive, and never two space runs side by side: a message of 4,000
# spaces took 117 ms with backtracking between them, now about 1 ms.
SPACES = r"[^\S\n]*+"
_SEP = rf"{SPACES}(?:[{DASHES}./]{SPACES})?"
# 11 digits grouped 3-3-3-2 however a customer separates them:
# 112-233-445 95, 112.233.445.95, 112 - 233 - 445 - 95, 112—233—445 95,
# 112/233/445/95, 11223344595; never after a "+", which starts a phone.
SNILS_PATTERN: Final = re.compile(
    rf"(?<![\d+])(\d{{3}}){_SEP}(\d{{3}}){_SEP}(\d{{3}}){_SEP}(\d{{2}})(?!\d)"
)
# The same grouping with a last group of one to three digits: a SNILS with
# a typo in its length, redacted as well (written ones only, see redact_snils).
_SNILS_LIKE: Final = re.compile(
    rf"(?<![\d+])(\d{{3}}){_SEP}(\d{{3}}){_SEP}(\d{{3}}){_SEP}(\d{{1,3}})(?!\d)"
)
SNILS_MARK: Final = "***-***-*** **"


@dataclass(frozen=True, slots=True)
class SnilsMatch:
    digits: str  # the 11 digits
    start: int
    end: int
    # Written with separators: a plain run of 11 digits may be something else
    # (a phone, an 11-digit account), the flow decides by context.
    formatted: bool


def find_snils(text: str) -> Iterator[SnilsMatch]:
    """Every SNILS-shaped number in ``text``, left to right."""
    for match in SNILS_PATTERN.finditer(text):
        digits = "".join(match.groups())
        yield SnilsMatch(digits, match.start(), match.end(), match.group(0) != digits)


def snils_digits(text: str) -> str | None:
    """The 11 digits of the first SNILS-shaped number in ``text``, if any."""
    return next((m.digits for m in find_snils(text)), None)


def check_number(first9: str) -> int:
    total = sum(int(d) * w for d, w in zip(first9, range(9, 0, -1), strict=True))
    while total > 101:
        total %= 101
    return 0 if total in (100, 101) else total


def is_valid_snils(digits: str) -> bool:
    """The checksum of an 11-digit SNILS (formatting is ignored)."""
    digits = re.sub(r"\D", "", digits)
    if len(digits) != 11:
        return False
    if int(digits[:9]) <= _UNCHECKED_MAX:
        return True
    return check_number(digits[:9]) == int(digits[9:])


def redact_snils(
    text: str, *, formatted_only: bool = False, keep: frozenset[str] = frozenset()
) -> str:
    """Replace every SNILS :func:`find_snils` sees (with ``formatted_only``,
    not plain runs of 11 digits nor the wrong lengths below) so the text can
    be stored or shown; ``keep`` lists digits to leave (the example in the
    bot's own wording).

    A written SNILS with one digit too few or too many at its end
    (``112-233-445 9``) goes too: linking refuses it with "В СНИЛС 11 цифр",
    yet it is still most of someone's SNILS."""

    def mark(match: re.Match[str]) -> str:
        digits = "".join(match.groups())
        if digits in keep or (formatted_only and match.group(0) == digits):
            return match.group(0)
        return SNILS_MARK

    def mark_written(match: re.Match[str]) -> str:
        return match.group(0) if match.group(0).isdigit() else mark(match)

    text = SNILS_PATTERN.sub(mark, text)
    return text if formatted_only else _SNILS_LIKE.sub(mark_written, text)
