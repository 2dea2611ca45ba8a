"""A Rasa Open Source server as the NLU backend (``POST /model/parse``)."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from config import Settings
from nlu.base import NluParser, NluUnavailable
from nlu.types import FALLBACK_INTENT, Intent, ParseResult


class RasaNluParser(NluParser):
    """Asks a Rasa server; its answer already has our ParseResult shape."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_seconds: float = 3.0,
        fallback_threshold: float = 0.45,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.fallback_threshold = fallback_threshold
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_seconds))

    @classmethod
    def from_settings(cls, settings: Settings) -> RasaNluParser:
        return cls(
            settings.rasa_url,
            token=settings.rasa_token.get_secret_value() if settings.rasa_token else None,
            timeout_seconds=settings.rasa_timeout_seconds,
            fallback_threshold=settings.nlu_fallback_threshold,
        )

    async def parse(self, text: str) -> ParseResult:
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
    return body
