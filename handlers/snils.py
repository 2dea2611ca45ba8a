"""SNILS: parsing and the official checksum.

The check number is computed over the first nine digits with weights 9..1
(the first digit weighs 9): a sum below 100 is the check number itself,
100 and 101 give 00, a larger sum is taken mod 101 and the same rule applied.
Numbers up to 001-001-998 were issued before the checksum and are not checked.
A SNILS is personal data: never log it, never echo it back, never store it in
the clear (storage.crypto.PersonalDataVault.hash_snils).
"""

from __future__ import annotations

import re
from typing import Final

_UNCHECKED_MAX: Final = 1001998
# 11 digits, optionally written 123-456-789 01 (dashes or spaces).
SNILS_PATTERN: Final = re.compile(r"(?<!\d)(\d{3})[- ]?(\d{3})[- ]?(\d{3})[- ]?(\d{2})(?!\d)")


def snils_digits(text: str) -> str | None:
    """The 11 digits of the first SNILS-shaped number in ``text``, if any."""
    match = SNILS_PATTERN.search(text)
    return "".join(match.groups()) if match else None


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


def redact_snils(text: str) -> str:
    """Replace SNILS-shaped numbers so the text can be stored or shown."""
    return SNILS_PATTERN.sub("***-***-*** **", text)
