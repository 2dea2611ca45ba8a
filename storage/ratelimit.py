"""Rate limits shared by the channels: the widget's edge (per session, per IP),
and later the outbound sends of Telegram and WhatsApp (per chat, overall).

Both backends run the same GCRA (the generic cell rate algorithm, a token
bucket kept as one timestamp per key): a key holds its "theoretical arrival
time"; a hit moves it on by one emission interval, and is refused when that
would put it more than ``burst`` intervals ahead of now. One number per key,
so the Redis side is a single atomic script and a key expires as soon as its
bucket is full again.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from storage.keys import KeyBuilder

Clock = Callable[[], float]

# Sweep the memory backend's idle keys every this many hits.
_SWEEP_EVERY = 1024


class RateLimiterUnavailable(Exception):
    """The limiter's store could not be reached; the caller decides (fail open)."""


@dataclass(frozen=True)
class RateLimit:
    """``burst`` units at once, refilled at ``rate_per_second``."""

    rate_per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not self.rate_per_second > 0 or not math.isfinite(self.rate_per_second):
            raise ValueError("rate_per_second must be a positive number")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")

    @property
    def interval(self) -> float:
        """Seconds one unit takes to come back."""
        return 1.0 / self.rate_per_second


def _gcra(tat: float | None, now: float, limit: RateLimit, cost: int) -> tuple[float, float]:
    """(seconds to wait, new arrival time); a wait of 0.0 means allowed."""
    start = now if tat is None or tat < now else tat
    new_tat = start + limit.interval * cost
    allow_at = new_tat - limit.interval * limit.burst
    if allow_at > now:
        return allow_at - now, start
    return 0.0, new_tat


class RateLimiter(abc.ABC):
    @abc.abstractmethod
    async def hit(self, key: str, limit: RateLimit, cost: int = 1) -> float:
        """Take ``cost`` units of ``key``'s bucket.

        Returns 0.0 when allowed (the units are taken), otherwise the seconds
        until they would be available (nothing is taken). Raises
        :class:`RateLimiterUnavailable` if the store cannot be reached.
        """

    async def hit_many(self, checks: Sequence[tuple[str, RateLimit]]) -> tuple[int, float]:
        """Take one unit of each bucket in order, stopping at the first refusal.

        Returns ``(len(checks), 0.0)`` when all allowed, otherwise the index of
        the refusing bucket and its wait (the buckets before it are taken, it
        and those after it are not): the same as :meth:`hit` in turn.
        """
        for index, (key, limit) in enumerate(checks):
            wait = await self.hit(key, limit)
            if wait > 0:
                return index, wait
        return len(checks), 0.0

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class MemoryRateLimiter(RateLimiter):
    """In-process buckets for embedded mode (one process)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._hits = 0

    async def hit(self, key: str, limit: RateLimit, cost: int = 1) -> float:
        now = self._clock()
        wait, tat = _gcra(self._tat.get(key), now, limit, cost)
        if wait == 0.0:
            self._tat[key] = tat
        self._hits += 1
        if self._hits % _SWEEP_EVERY == 0:
            # A bucket full again is the same as no entry: forget it.
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        return wait

    def __len__(self) -> int:
        return len(self._tat)


# KEYS[1] the bucket; ARGV: now (empty: the server's clock), interval, burst, cost.
# Numbers come back as strings: Lua numbers become Redis integers otherwise.
_GCRA_LUA = """
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - interval * burst
if allow_at > now then
  return string.format('%.17g', allow_at - now)
end
redis.call('SET', KEYS[1], string.format('%.17g', new_tat),
           'PX', math.ceil((new_tat - now) * 1000) + 1)
return '0'
"""


# Several buckets in one round trip, taken in order up to the first refusal
# (KEYS[i], ARGV: now, then interval and burst of each key; cost 1). Returns
# {index of the refusal (0-based; #KEYS when none), wait}.
_GCRA_MANY_LUA = """
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - interval * burst
  if allow_at > now then
    return {i - 1, string.format('%.17g', allow_at - now)}
  end
  redis.call('SET', KEYS[i], string.format('%.17g', new_tat),
             'PX', math.ceil((new_tat - now) * 1000) + 1)
end
return {#KEYS, '0'}
"""


class RedisRateLimiter(RateLimiter):
    """Buckets in Redis shared by all processes, one atomic script per hit.

    The server's clock is used unless a ``clock`` is given (tests), so that
    processes with skewed clocks agree.
    """

    def __init__(self, redis: Redis, keys: KeyBuilder, clock: Clock | None = None) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._script = redis.register_script(_GCRA_LUA)
        self._many = redis.register_script(_GCRA_MANY_LUA)

    async def hit(self, key: str, limit: RateLimit, cost: int = 1) -> float:
        now = "" if self._clock is None else repr(self._clock())
        try:
            raw = await self._script(
                keys=[self._keys.rate_limit(key)],
                args=[now, repr(limit.interval), limit.burst, cost],
            )
        except RedisError as exc:
            raise RateLimiterUnavailable(type(exc).__name__) from exc
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return max(0.0, float(text))

    async def hit_many(self, checks: Sequence[tuple[str, RateLimit]]) -> tuple[int, float]:
        if len(checks) < 2:
            return await super().hit_many(checks)
        now = "" if self._clock is None else repr(self._clock())
        args: list[str | int] = [now]
        for _key, limit in checks:
            args += [repr(limit.interval), limit.burst]
        try:
            index, raw = await self._many(
                keys=[self._keys.rate_limit(key) for key, _limit in checks], args=args
            )
        except RedisError as exc:
            raise RateLimiterUnavailable(type(exc).__name__) from exc
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return int(index), max(0.0, float(text))

    async def close(self) -> None:
        await self._redis.aclose()
