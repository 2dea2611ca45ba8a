"""The dialog state of one conversation.

It is stored as JSON on ``Conversation.state`` (``model_dump(mode="json")``)
and committed in the same transaction as the replies, so it must stay small
and must never hold personal data in the clear: a form that asks for a SNILS
keeps only its keyed hash in its slots.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# How many recent intents are kept for the operator's summary.
RECENT_INTENTS = 6


class FormState(BaseModel):
    """One form in progress (or suspended): its slots and what it waits for."""

    model_config = ConfigDict(extra="ignore")

    name: str
    slots: dict[str, Any] = Field(default_factory=dict)
    # The slot the last prompt asked for; None before the first prompt.
    requested_slot: str | None = None
    # All slots are filled and the customer was asked "Да/Нет" to submit.
    awaiting_confirmation: bool = False
    # Re-prompts without progress, so a form can give up politely.
    misses: int = 0
    # Consecutive answers that were understood but refused by validation.
    invalid_answers: int = 0
    # Values found before the form could validate them: it waited for
    # link_account, or for the slots a value needs (Slot.needs); validated
    # when the form resumes or those slots are filled.
    pending: dict[str, Any] = Field(default_factory=dict)

    def has(self, slot: str) -> bool:
        return self.slots.get(slot) is not None


class DialogState(BaseModel):
    """Everything the engine remembers between two messages of a chat."""

    model_config = ConfigDict(extra="ignore")

    active: FormState | None = None
    # Forms interrupted by another question, the most recent last. The top one
    # is offered to continue once the interrupting question is answered.
    suspended: list[FormState] = Field(default_factory=list)
    # The bot asked "Продолжим ...?" about the top of ``suspended``.
    offered_resume: bool = False
    # A form that needs a linked account: link_account runs first, then this
    # form resumes with the slots it already had.
    resume_after_link: FormState | None = None
    # Consecutive turns the NLU did not understand.
    fallbacks: int = 0
    recent_intents: list[str] = Field(default_factory=list)
    # The customer was told once that an operator will answer (QUEUED).
    queued_notice_sent: bool = False
    # What the customer already told that a later form may reuse instead of
    # asking again (the address of an outage report). Flows read and write it
    # through FlowContext.facts.
    facts: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def load(cls, raw: dict[str, Any] | None) -> DialogState:
        """Read a stored state; an unreadable one starts afresh."""
        if not raw:
            return cls()
        try:
            return cls.model_validate(raw)
        except ValueError:
            return cls()

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def copy_deep(self) -> DialogState:
        """A copy sharing no container with this state: dumped and validated
        again by pydantic-core, a quarter of ``model_copy(deep=True)``'s cost
        (Python's deepcopy)."""
        return type(self).model_validate(self.model_dump())

    def remember_intent(self, intent: str) -> None:
        self.recent_intents = [*self.recent_intents, intent][-RECENT_INTENTS:]

    def clear_forms(self) -> None:
        self.active = None
        self.suspended = []
        self.offered_resume = False
        self.resume_after_link = None
