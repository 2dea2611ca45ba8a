"""A circuit breaker: Rasa while it answers, the embedded parser while it does not.

Closed: every parse goes to the primary (Rasa). Its first ``NluUnavailable``
opens the circuit: that message and the following ones are answered by the
fallback (the embedded parser) at once, without waiting on a dead or slow
server. Every ``retry_seconds`` one message probes the primary again; when it
answers, the circuit closes. One warning when it opens, one info line when it
closes; :attr:`degraded` and :meth:`status` say it all along (``/metrics``,
``/readyz``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from nlu.base import NluParser, NluUnavailable
from nlu.types import ParseResult

log = logging.getLogger(__name__)

DEFAULT_RETRY_SECONDS = 10.0


class FallbackNluParser(NluParser):
    """``primary`` behind a circuit breaker, ``fallback`` answering while it is open."""

    def __init__(
        self,
        primary: NluParser,
        fallback: NluParser,
        *,
        primary_name: str = "rasa",
        fallback_name: str = "embedded",
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.primary_name = primary_name
        self.fallback_name = fallback_name
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._opened_at: float | None = None
        self._next_probe = 0.0
        self.fallback_parses = 0  # answered by the fallback since start
        self.outages = 0  # times the circuit opened

    @property
    def degraded(self) -> bool:
        """True while the fallback answers (the circuit is open)."""
        return self._opened_at is not None

    @property
    def answering(self) -> str:
        return self.fallback_name if self.degraded else self.primary_name

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "backend": self.primary_name,
            "answering": self.answering,
            "degraded": self.degraded,
        }
        if self._opened_at is not None:
            status["degraded_seconds"] = round(self._clock() - self._opened_at, 1)
        return status

    async def parse(self, text: str) -> ParseResult:
        if self._opened_at is not None and self._clock() < self._next_probe:
            return await self._from_fallback(text)
        try:
            result = await self.primary.parse(text)
        except NluUnavailable as exc:
            self._open(exc)
            return await self._from_fallback(text)
        self._close()
        return result

    async def _from_fallback(self, text: str) -> ParseResult:
        self.fallback_parses += 1
        return await self.fallback.parse(text)

    def _open(self, exc: NluUnavailable) -> None:
        now = self._clock()
        self._next_probe = now + self.retry_seconds
        if self._opened_at is None:
            self._opened_at = now
            self.outages += 1
            log.warning(
                "NLU backend %s unavailable (%s); answering from the %s parser, "
                "retrying every %.0f s",
                self.primary_name,
                exc,
                self.fallback_name,
                self.retry_seconds,
            )

    def _close(self) -> None:
        if self._opened_at is not None:
            log.info(
                "NLU backend %s is back after %.0f s; %d messages were answered by the %s parser",
                self.primary_name,
                self._clock() - self._opened_at,
                self.fallback_parses,
                self.fallback_name,
            )
            self._opened_at = None

    async def close(self) -> None:
        try:
            await self.primary.close()
        finally:
            await self.fallback.close()
