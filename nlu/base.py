"""The parser interface every NLU backend implements."""

from __future__ import annotations

import abc

from nlu.types import ParseResult


class NluError(Exception):
    """Root of the NLU errors."""


class NluUnavailable(NluError):
    """The NLU backend cannot answer now (a Rasa server down or timing out)."""


class ModelNotTrained(NluError):
    """No trained model is available for the embedded parser."""


class NluParser(abc.ABC):
    """Turns a customer's text into intent and entities."""

    @abc.abstractmethod
    async def parse(self, text: str) -> ParseResult:
        """Parse one message. Raises :class:`NluUnavailable` if it cannot."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (HTTP clients, ...)."""
