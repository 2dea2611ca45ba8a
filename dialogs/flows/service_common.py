"""Parsing helpers shared by the service flows (formatting is dialogs/format.py)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum

from dialogs.forms import Validated, refuse
from handlers.outages import parse_address


def address_from_text(text: str) -> str | None:
    """A typed address for an address slot (button payloads are not addresses)."""
    if text.startswith("/"):
        return None
    if parse_address(text) is not None:
        return text.strip()
    # A bare house number ("10") is an attempt at an address: validate()
    # asks for the street instead of the bot taking it for a reading.
    return text.strip() if re.fullmatch(r"[\d\s/\-.,]{1,12}", text.strip()) else None


def validate_address(value: object, *, bad: str, no_house: str) -> Validated:
    """An address slot's validator: a street with a house number, in each flow's words."""
    parsed = parse_address(str(value))
    if parsed is None:
        return refuse(bad)
    if parsed.house is None:
        return refuse(no_house)
    return {"address": str(value).strip()}


def choice_from_words(text: str, table: Sequence[tuple[str, Enum]]) -> str | None:
    """The first choice whose word pattern occurs in a typed answer."""
    if text.startswith("/"):
        return None
    lowered = text.lower()
    for pattern, choice in table:
        if re.search(pattern, lowered):
            return str(choice.value)
    return None
