"""The one place Redis keys are built.

Every key is ``<prefix>:<role>:<name>``, built once, by the store that owns the
role; callers pass logical names only. The per-conversation lock, for example,
is ``heatdesk:lock:conv:<channel>:<chat_id>`` (see :func:`conversation_lock_name`).
"""

from __future__ import annotations


def conversation_lock_name(channel: str, chat_id: str) -> str:
    """The logical name of a conversation's lock (the store adds the prefix)."""
    return f"conv:{channel}:{chat_id}"


class KeyBuilder:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def build(self, *parts: str | int) -> str:
        return ":".join([self.prefix, *(str(p) for p in parts)])

    def lock(self, name: str) -> str:
        return self.build("lock", name)

    def pubsub_channel(self, topic: str) -> str:
        """The Redis channel of a logical pub/sub topic (``webchat:<chat id>``)."""
        return self.build("pubsub", topic)

    def rate_limit(self, key: str) -> str:
        return self.build("ratelimit", key)
