"""A Rasa Open Source server as the NLU backend (``POST /model/parse``).

Rasa finds the intent and the entity spans; the values are then normalised by
the project's own rules (:mod:`nlu.entities`), so a flow gets ``"1234.5"`` for
a reading whichever backend read ``"1 234,5"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from config import Settings
from nlu.base import NluParser, NluUnavailable
from nlu.data_loader import load_training_data
from nlu.entities import DEFAULT_STREETS, EntityExtractor, normalise_phone, normalise_reading
from nlu.payload import parse_payload
from nlu.types import FALLBACK_INTENT, Entity, Intent, ParseResult

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
RASA_EXTRACTOR = "DIETClassifier"


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


class EntityNormaliser:
    """Gives a Rasa entity the value the embedded extractor would give its span.

    A rule match of the same entity overlapping the span lends its value (that
    covers dates, appeal numbers, spelled meter types, keyword-dependent
    numbers); otherwise the entity's own normaliser runs on the span. An
    entity whose span holds no usable value (DIET tagging the word "лс" as an
    account number) is dropped: the flows rely on normalised values.
    """

    def __init__(self, extractor: EntityExtractor) -> None:
        self._extractor = extractor

    @classmethod
    def from_data(cls, data_dir: Path = DATA_DIR) -> EntityNormaliser:
        data = load_training_data(data_dir)
        streets = data.lookups.get("address") or list(DEFAULT_STREETS)
        return cls(EntityExtractor(streets=streets, synonyms=data.synonyms))

    def normalise(self, text: str, entities: Iterable[Entity]) -> tuple[Entity, ...]:
        entities = list(entities)
        if not entities:
            return ()
        rules = self._extractor.extract(text)
        out: list[Entity] = []
        for entity in entities:
            value = self._value(text, entity, rules)
            if value is not None:
                out.append(entity.model_copy(update={"value": value}))
        return tuple(out)

    def _value(self, text: str, entity: Entity, rules: list[Entity]) -> str | None:
        for rule in rules:
            if rule.entity == entity.entity and rule.start < entity.end and entity.start < rule.end:
                return str(rule.value)
        span = text[entity.start : entity.end]
        name = entity.entity
        if name in {"account_number", "snils"}:
            digits = _digits(span)
            wanted = range(8, 13) if name == "account_number" else range(11, 12)
            return digits if len(digits) in wanted else None
        if name == "phone":
            return normalise_phone(span)
        if name == "reading_value":
            value = normalise_reading(span)
            try:
                float(value)
            except ValueError:
                return None
            return value
        if name == "meter_type":
            value = str(entity.value)
            return value if value in {"heating", "hot_water"} else None
        if name == "address":
            address = self._extractor.normalize_address(span.strip(" ,"))
            return address.text if address is not None else None
        # date, appeal_number: only the rules know their format.
        own = [r for r in self._extractor.extract(span) if r.entity == name]
        return str(own[0].value) if own else None


class RasaNluParser(NluParser):
    """Asks a Rasa server and reads its answer as our ParseResult."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_seconds: float = 3.0,
        fallback_threshold: float = 0.25,
        client: httpx.AsyncClient | None = None,
        normaliser: EntityNormaliser | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.fallback_threshold = fallback_threshold
        self.normaliser = normaliser
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 1.0))
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RasaNluParser:
        return cls(
            settings.rasa_url,
            token=settings.rasa_token.get_secret_value() if settings.rasa_token else None,
            timeout_seconds=settings.rasa_timeout_seconds,
            fallback_threshold=settings.nlu_fallback_threshold,
            normaliser=EntityNormaliser.from_data(),
        )

    async def parse(self, text: str) -> ParseResult:
        payload = parse_payload(text)
        if payload is not None:
            return payload  # a button: no need to ask anyone
        params = {"token": self.token} if self.token else None
        try:
            response = await self._client.post(
                f"{self.base_url}/model/parse", json={"text": text}, params=params
            )
            response.raise_for_status()
            body: Any = response.json()
        except httpx.TimeoutException as exc:
            raise NluUnavailable(f"Rasa did not answer in time: {exc!r}") from exc
        except httpx.HTTPStatusError as exc:
            raise NluUnavailable(f"Rasa answered HTTP {exc.response.status_code}") from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise NluUnavailable(f"Rasa is unreachable or answered garbage: {exc!r}") from exc
        try:
            result = ParseResult.model_validate(_with_text(body, text))
        except ValidationError as exc:
            raise NluUnavailable("Rasa answered an unexpected shape") from exc
        if self.normaliser is not None:
            result = result.model_copy(
                update={"entities": self.normaliser.normalise(result.text, result.entities)}
            )
        return self._apply_threshold(result)

    def _apply_threshold(self, result: ParseResult) -> ParseResult:
        if (
            result.intent.name != FALLBACK_INTENT
            and result.intent.confidence < self.fallback_threshold
        ):
            fallback = Intent(name=FALLBACK_INTENT, confidence=self.fallback_threshold)
            return result.model_copy(update={"intent": fallback})
        return result

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()


def _with_text(body: Any, text: str) -> Any:
    if isinstance(body, dict):
        body = dict(body)
        body.setdefault("text", text)
        # Rasa answers {"intent": {"name": null, ...}} for an empty message.
        intent = body.get("intent")
        if isinstance(intent, dict) and intent.get("name") is None:
            body["intent"] = {"name": FALLBACK_INTENT, "confidence": 0.0}
        # Rasa's FallbackClassifier puts nlu_fallback on top of the ranking;
        # the embedded parser's ranking holds the real intents only.
        ranking = body.get("intent_ranking")
        if isinstance(ranking, list):
            body["intent_ranking"] = [
                r for r in ranking if not (isinstance(r, dict) and r.get("name") == FALLBACK_INTENT)
            ]
    return body
