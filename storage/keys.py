"""The one place Redis keys are built."""

from __future__ import annotations


class KeyBuilder:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def build(self, *parts: str | int) -> str:
        return ":".join([self.prefix, *(str(p) for p in parts)])

    def conversation_lock(self, channel: str, chat_id: str) -> str:
        return self.build("lock", "conv", channel, chat_id)

    def pubsub_channel(self, topic: str) -> str:
        """The Redis channel of a logical pub/sub topic (``webchat:<chat id>``)."""
        return self.build("pubsub", topic)
