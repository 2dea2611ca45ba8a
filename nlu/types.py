"""The NLU result, shaped like Rasa's ``/model/parse`` response.

A Rasa server can replace the embedded classifier without changes elsewhere:
``ParseResult.model_validate(rasa_json)`` reads its answer as is.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FALLBACK_INTENT = "nlu_fallback"

INTENTS: tuple[str, ...] = (
    "greet",
    "goodbye",
    "thanks",
    "affirm",
    "deny",
    "link_account",
    "submit_reading",
    "check_balance",
    "pay_bill",
    "file_appeal",
    "appeal_status",
    "report_outage",
    "connection_request",
    "contacts_hours",
    "office_appointment",
    "tariff_info",
    "bonus_balance",
    "subscribe_news",
    "human_handoff",
    "out_of_scope",
)

ENTITIES: tuple[str, ...] = (
    "account_number",
    "snils",
    "reading_value",
    "appeal_number",
    "meter_type",
    "address",
    "phone",
    "date",
)


class Intent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    confidence: float


class Entity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    entity: str
    start: int
    end: int
    # Normalised value: digits only for numbers, "heating"/"hot_water" for
    # meter_type, a decimal string with a point for reading_value...
    value: Any
    extractor: str | None = None
    confidence_entity: float | None = None


class ParseResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    text: str
    intent: Intent
    entities: tuple[Entity, ...] = ()
    intent_ranking: tuple[Intent, ...] = Field(default=())

    def entity(self, name: str) -> Entity | None:
        """The first entity of that name, if any."""
        return next((e for e in self.entities if e.entity == name), None)
