"""Rate limits at a channel's edge, over the shared :class:`RateLimiter`.

Every adapter keeps limits of its own (the widget: frames per session and per
IP; Telegram: sends per chat and overall; WhatsApp: sends per sender number)
over the container's limiter, which lives in Redis when ``REDIS_URL`` is set,
so every process counts against the same buckets. One policy for all of them:

- keys that would carry personal data (a chat id, a phone, an IP) carry a
  keyed hash of it instead (:meth:`Pacer.key`);
- a limiter that cannot be reached lets traffic through, with one warning a
  minute: the limits protect the service, a Redis outage should not stop
  customers (Telegram and Twilio still answer 429 themselves).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from typing import Final

from bot.errors import RetryAfter
from storage.ratelimit import MemoryRateLimiter, RateLimit, RateLimiter, RateLimiterUnavailable

log = logging.getLogger(__name__)

WARNING_INTERVAL_SECONDS: Final = 60.0
# A send waits for its limit up to this long; longer, the delivery worker
# reschedules it (RetryAfter) instead of holding its lease.
MAX_PACE_SECONDS: Final = 2.0

Check = tuple[str, RateLimit]


class Pacer:
    """One adapter's view of the shared limiter."""

    def __init__(self, channel: str, secret_key: str, limiter: RateLimiter | None = None) -> None:
        self.channel = channel
        # The container shares its own (Redis across processes) in place of this one.
        self.limiter: RateLimiter = limiter or MemoryRateLimiter()
        self._key_secret = hashlib.sha256(
            f"{channel}-rate-limit:".encode() + secret_key.encode()
        ).digest()
        self._warned_at = -math.inf

    def key(self, kind: str, value: str) -> str:
        """A limiter key for a personal value (chat id, phone, IP): a keyed hash."""
        digest = hmac.new(self._key_secret, value.encode(), hashlib.sha256).hexdigest()[:24]
        return f"{self.channel}:{kind}:{digest}"

    async def wait_for(self, *checks: Check) -> float:
        """0.0 when every bucket had a unit (taken); else the seconds to wait."""
        return (await self._hit(checks))[1]

    async def _hit(self, checks: tuple[Check, ...]) -> tuple[int, float]:
        """The limiter's ``hit_many`` (one round trip for all), failing open."""
        try:
            return await self.limiter.hit_many(checks)
        except RateLimiterUnavailable as exc:
            now = time.monotonic()
            if now - self._warned_at >= WARNING_INTERVAL_SECONDS:
                self._warned_at = now
                log.warning("%s: rate limiter unavailable (%s); not limiting", self.channel, exc)
            return len(checks), 0.0

    async def pace(self, *checks: Check, max_sleep: float = MAX_PACE_SECONDS) -> None:
        """Before a send: sleep a short wait, raise :class:`RetryAfter` for a long one.
        The buckets are taken in order; after a wait only the refusing one and
        those after it are asked again."""
        while checks:
            index, wait = await self._hit(checks)
            if wait <= 0:
                return
            if wait > max_sleep:
                raise RetryAfter(wait, f"{self.channel} rate limit (ours)")
            await asyncio.sleep(wait)
            checks = checks[index:]
