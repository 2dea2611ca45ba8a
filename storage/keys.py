"""The one place Redis keys are built."""

from __future__ import annotations


class KeyBuilder:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def build(self, *parts: str | int) -> str:
        return ":".join([self.prefix, *(str(p) for p in parts)])

    def conversation_lock(self, channel: str, chat_id: str) -> str:
        return self.build("lock", "conv", channel, chat_id)

    def channel(self, name: str) -> str:
        return self.build("pubsub", name)

    def rate_limit(self, key: str) -> str:
        return self.build("ratelimit", key)
