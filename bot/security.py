"""HTTP hardening: security headers on every response, and who may read /metrics."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_INLINE_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)

# Loopback and private ranges: a Prometheus on the same host or network.
LOCAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::1/128",
        "fc00::/7",
    )
)

# FastAPI's Swagger UI and ReDoc load their bundles from a CDN and boot with an
# inline script; those pages take no customer input, so only they get this.
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
DOCS_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net",
        "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com",
        "font-src https://fonts.gstatic.com",
        "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.jsdelivr.net",
        "connect-src 'self'",
        "worker-src blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)


def inline_style_hashes(html: str) -> list[str]:
    """CSP sources for the page's own ``<style>`` blocks, so no 'unsafe-inline'."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode() + "'"
        for css in _INLINE_STYLE.findall(html)
    ]


def page_csp(style_hashes: list[str]) -> str:
    """The policy of the demo page and everything else we serve.

    The widget is a script of ours with a stylesheet of ours and a WebSocket
    back to this host ('self' covers ws:/wss: of the same host in CSP 3).
    Nobody may frame our pages (the operator console, later, above all).
    """
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            " ".join(("style-src 'self'", *style_hashes)),
            "img-src 'self' data:",  # the demo page's favicon is a data: URL
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


class SecurityHeaders:
    """Adds CSP, nosniff and a referrer policy to every HTTP response.

    A response that sets a header itself keeps its own value.
    """

    def __init__(self, app: ASGIApp, csp: str, docs_csp: str = DOCS_CSP) -> None:
        self.app = app
        self.csp = csp
        self.docs_csp = docs_csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.docs_csp if scope["path"] in DOCS_PATHS else self.csp

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", policy)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def is_local_address(host: str | None) -> bool:
    """``host`` is a loopback or private-network IP address."""
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # not an IP (a unix socket, a test client's name)
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in LOCAL_NETWORKS)


def metrics_allowed(client_host: str | None, authorization: str | None, token: str | None) -> bool:
    """The local network may read /metrics; anyone else needs the bearer token."""
    if is_local_address(client_host):
        return True
    if not token or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
