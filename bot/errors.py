"""Errors of the outer shell: one root, a subtree per area, typed data.

Adapters translate their platform's exceptions at the boundary
(``raise DeliveryError(...) from exc``), so the delivery worker only catches
these types.
"""

from __future__ import annotations


class BotError(Exception):
    """Root of the errors raised by ``bot/``."""


class DeliveryError(BotError):
    """A reply could not be delivered; the worker retries with backoff."""


class RetryAfter(DeliveryError):
    """The platform asked us to slow down (Telegram's 429 ``retry_after``)."""

    def __init__(self, retry_after: float, message: str = "") -> None:
        super().__init__(message or f"retry after {retry_after:g} s")
        self.retry_after = retry_after


class RecipientOffline(DeliveryError):
    """Nobody is connected to receive it now (a web chat with no open tab).

    Not a failure: the entry stays pending and reaches the customer with the
    history when they come back.
    """


class HandedOver(RecipientOffline):
    """Another process holds the recipient's socket and was asked to push it;
    that process marks the entry sent. Looked at again only if it did not."""


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help (the chat blocked the bot, say): fail at once."""


class UnknownChannel(DeliveryError):
    """No adapter is configured for the entry's channel."""
