"""Prometheus metrics of one app instance (its own registry: no globals)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "BotMetrics"]

TURN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BotMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.inbound = Counter(
            "heatdesk_inbound_messages",
            "Customer messages received, by channel (duplicates included).",
            ["channel"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "heatdesk_duplicate_messages",
            "Inbound deliveries dropped as duplicates, by channel.",
            ["channel"],
            registry=self.registry,
        )
        self.replies = Counter(
            "heatdesk_replies",
            "Bot replies produced, by channel.",
            ["channel"],
            registry=self.registry,
        )
        self.turn_seconds = Histogram(
            "heatdesk_turn_seconds",
            "Time to handle one inbound message (inbox, lock, NLU, engine, commit).",
            ["channel"],
            buckets=TURN_BUCKETS,
            registry=self.registry,
        )
        self.turn_errors = Counter(
            "heatdesk_turn_errors",
            "Inbound messages whose handling raised, by channel.",
            ["channel"],
            registry=self.registry,
        )
        self.handoffs = Counter(
            "heatdesk_handoffs",
            "Conversations put in the operators' queue, by channel.",
            ["channel"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "heatdesk_deliveries",
            "Outbox delivery attempts by channel and outcome.",
            ["channel", "outcome"],
            registry=self.registry,
        )

        self.nlu_degraded = Gauge(
            "heatdesk_nlu_degraded",
            "1 while the NLU backend (Rasa) is unavailable and the embedded parser answers.",
            registry=self.registry,
        )
        self.nlu_fallback_parses = Gauge(
            "heatdesk_nlu_fallback_parses",
            "Messages answered by the embedded parser because the NLU backend was down.",
            registry=self.registry,
        )

    def watch_nlu(self, degraded: Callable[[], bool], fallback_parses: Callable[[], int]) -> None:
        """Read the NLU circuit breaker's state at each scrape."""
        self.nlu_degraded.set_function(lambda: float(degraded()))
        self.nlu_fallback_parses.set_function(lambda: float(fallback_parses()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
