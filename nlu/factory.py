"""Builds the configured NLU backend."""

from __future__ import annotations

from collections.abc import Callable

from config import Settings
from nlu.base import NluParser


def _embedded(settings: Settings) -> NluParser:
    from nlu.embedded import load_or_train

    return load_or_train(settings)


def _rasa(settings: Settings) -> NluParser:
    """Rasa behind a circuit breaker: the embedded parser answers while it is down."""
    from nlu.embedded import load_or_train
    from nlu.rasa import FallbackNluParser, RasaNluParser

    return FallbackNluParser(RasaNluParser.from_settings(settings), load_or_train(settings))


BACKENDS: dict[str, Callable[[Settings], NluParser]] = {
    "embedded": _embedded,
    "rasa": _rasa,
}


def build_parser(settings: Settings) -> NluParser:
    """The parser named by ``settings.nlu_backend`` (embedded trains on first use)."""
    return BACKENDS[settings.nlu_backend](settings)
