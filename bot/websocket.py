"""The WebSocket protocol the server runs: uvicorn's websockets-sansio one,
without the handshake kept for the life of the socket.

uvicorn keeps the handshake's parsed request and response (their headers
twice over, as websockets' ``Headers`` and as lists) on the protocol object
until the socket closes, though it reads them only to answer the handshake.
An idle widget socket stays open for hours, by the thousand: about 5 KB each
(bench/load.py --sockets-only). The ASGI scope keeps its own copy of the
request headers, which is what the app reads.
"""

from __future__ import annotations

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

# For uvicorn's ``ws`` setting: an import string, so that worker processes load it too.
PROTOCOL = "bot.websocket:WidgetSocketProtocol"


class WidgetSocketProtocol(WebSocketsSansIOProtocol):
    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if self.handshake_complete:
            # Both are read only while answering the handshake (accept or reject).
            self.__dict__.pop("request", None)
            self.__dict__.pop("response", None)
