"""Channel adapters and the registry the composition root builds them from.

A later channel (Telegram, WhatsApp) adds one entry to
:data:`CHANNEL_FACTORIES`; the core never lists channels itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from bot.channels.base import ChannelAdapter, ChannelHost, InlineChannel
from bot.channels.webchat import WebchatAdapter
from bot.channels.whatsapp import WhatsAppAdapter
from config import Settings

# A factory returns None when its channel is off in these settings (no token...).
ChannelFactory = Callable[[Settings], ChannelAdapter | None]


def _telegram(settings: Settings) -> ChannelAdapter | None:
    if settings.telegram_bot_token is None:
        return None
    # Imported only when on: building aiogram's ~300 pydantic types costs
    # seconds at every start of a process that does not use Telegram.
    from bot.channels.telegram import TelegramAdapter

    return TelegramAdapter.from_settings(settings)


CHANNEL_FACTORIES: Mapping[str, ChannelFactory] = {
    "webchat": WebchatAdapter.from_settings,
    "telegram": _telegram,
    "whatsapp": WhatsAppAdapter.from_settings,
}


class ChannelRegistry(Mapping[str, ChannelAdapter]):
    """The adapters enabled by the settings, by channel name."""

    def __init__(self, adapters: Mapping[str, ChannelAdapter]) -> None:
        self._adapters = dict(adapters)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        factories: Mapping[str, ChannelFactory] = CHANNEL_FACTORIES,
        extra: Sequence[ChannelAdapter] = (),
    ) -> ChannelRegistry:
        """The enabled channels, plus ``extra`` ones the caller brings (the terminal)."""
        adapters: dict[str, ChannelAdapter] = {}
        for name, factory in factories.items():
            adapter = factory(settings)
            if adapter is not None:
                adapters[name] = adapter
        for adapter in extra:
            adapters[adapter.name] = adapter
        return cls(adapters)

    def __getitem__(self, name: str) -> ChannelAdapter:
        return self._adapters[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._adapters)

    def __len__(self) -> int:
        return len(self._adapters)

    async def close(self) -> None:
        for adapter in self._adapters.values():
            await adapter.close()


__all__ = [
    "CHANNEL_FACTORIES",
    "ChannelAdapter",
    "ChannelFactory",
    "ChannelHost",
    "ChannelRegistry",
    "InlineChannel",
    "WebchatAdapter",
    "WhatsAppAdapter",
]
