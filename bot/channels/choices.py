"""Buttons as a numbered list, for channels that can only show text.

The terminal chat and WhatsApp show a reply's buttons as numbered lines and
take a digit or the button's label back as a press. Numbering and resolving
live here only, so that "2" means the same button on both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from dialogs.messages import Button, Reply

# "2", "2.", "2)" and " 2 " press the second button.
_NUMBER: Final = re.compile(r"^\s*(\d{1,2})\s*[.)]?\s*$")
_SPACES: Final = re.compile(r"\s+")

WHATSAPP_STYLE: Final = "{number}. {title}"


def choice_lines(buttons: Sequence[Button], style: str = WHATSAPP_STYLE) -> list[str]:
    """One line per button, numbered from 1 (``style`` takes number and title)."""
    return [
        style.format(number=number, title=button.title)
        for number, button in enumerate(buttons, start=1)
    ]


def render_text(reply: Reply, style: str = WHATSAPP_STYLE) -> str:
    """The reply's text followed by its numbered choices, if any."""
    if not reply.buttons:
        return reply.text
    return reply.text.rstrip() + "\n\n" + "\n".join(choice_lines(reply.buttons, style))


def last_buttons(replies: Sequence[Reply]) -> tuple[Button, ...]:
    """The choices in force after these replies: the last reply that has any."""
    for reply in reversed(replies):
        if reply.buttons:
            return reply.buttons
    return ()


def _label(text: str) -> str:
    return _SPACES.sub(" ", text).strip().casefold().replace("ё", "е")


def resolve_choice(text: str, buttons: Sequence[Button]) -> Button | None:
    """The button an answer presses: its number or its label; None for free text.

    A number out of range is free text (a meter reading, say), never a press.
    """
    if not buttons:
        return None
    match = _NUMBER.match(text)
    if match is not None:
        number = int(match.group(1))
        return buttons[number - 1] if 1 <= number <= len(buttons) else None
    wanted = _label(text)
    if not wanted:
        return None
    for button in buttons:
        if _label(button.title) == wanted:
            return button
    return None
