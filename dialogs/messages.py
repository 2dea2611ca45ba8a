"""Normalised message types shared by every channel.

Nothing below ``bot/`` knows which channel a message came from beyond its
name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dialogs.state import DialogState


@dataclass(frozen=True, slots=True)
class Attachment:
    kind: str  # "photo", "document", "location", ...
    url: str | None = None
    file_id: str | None = None
    mime_type: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One customer message as an adapter hands it to the pipeline.

    ``payload`` is set when the customer pressed a button: it carries the
    button's payload (``/intent{"slot": "value"}`` in Rasa's style, or a
    flow-specific token), and ``text`` then carries the button's title.
    """

    channel: str  # "webchat", "telegram", "whatsapp", "cli"
    chat_id: str
    user_id: str
    text: str
    platform_message_id: str
    received_at: datetime
    payload: str | None = None
    attachments: tuple[Attachment, ...] = ()
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class Button:
    title: str
    payload: str


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    buttons: tuple[Button, ...] = ()
    # The reply asks for a phone number: a channel that can (Telegram) offers
    # a "share my number" button; the others ignore it.
    ask_contact: bool = False

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "text": self.text,
            "buttons": [{"title": b.title, "payload": b.payload} for b in self.buttons],
        }
        if self.ask_contact:
            data["ask_contact"] = True
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Reply:
        raw = data.get("buttons") or []
        assert isinstance(raw, list)
        return cls(
            text=str(data["text"]),
            buttons=tuple(Button(title=str(b["title"]), payload=str(b["payload"])) for b in raw),
            ask_contact=data.get("ask_contact") is True,
        )


@dataclass(frozen=True, slots=True)
class HandoffRequest:
    """The engine asks to put the conversation in the operators' queue."""

    reason: str  # "customer_request", "repeated_fallback", "error", ...
    summary: str
    priority: int = 0  # higher first


@dataclass(frozen=True, slots=True)
class Turn:
    """What one step of the engine decided."""

    replies: tuple[Reply, ...]
    state: DialogState  # the next dialog state (the engine's own copy)
    handoff: HandoffRequest | None = None
    intent: str | None = None  # what the step understood, for logs and KPIs
    events: tuple[str, ...] = field(default=())
