"""Rate limits, in memory and in the real Redis, on one contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from storage.keys import KeyBuilder
from storage.ratelimit import (
    MemoryRateLimiter,
    RateLimit,
    RateLimiter,
    RateLimiterUnavailable,
    RedisRateLimiter,
)

PER_SECOND = RateLimit(rate_per_second=1.0, burst=5)


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# Makes a limiter on the shared clock: the one shared limiter in memory, a
# limiter with its own Redis client for Redis (as another process would).
LimiterMaker = Callable[[], RateLimiter]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def redis_or_memory(request: pytest.FixtureRequest) -> str | None:
    """The Redis URL, or None for the in-memory limiter."""
    if request.param == "memory":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def make_limiter(
    redis_or_memory: str | None, clock: FakeClock
) -> AsyncIterator[LimiterMaker]:
    made: list[RateLimiter] = []
    url = redis_or_memory
    if url is None:
        shared = MemoryRateLimiter(clock=clock)

        def make() -> RateLimiter:
            return shared

    else:

        def make() -> RateLimiter:
            limiter = RedisRateLimiter(Redis.from_url(url), KeyBuilder("test"), clock=clock)
            made.append(limiter)
            return limiter

    yield make
    for limiter in made:
        await limiter.close()


class TestRateLimiter:
    async def test_a_burst_passes_then_the_next_waits_one_interval(
        self, make_limiter: LimiterMaker
    ) -> None:
        limiter = make_limiter()
        assert [await limiter.hit("webchat:s1", PER_SECOND) for _ in range(5)] == [0.0] * 5
        assert await limiter.hit("webchat:s1", PER_SECOND) == pytest.approx(1.0)

    async def test_units_come_back_at_the_rate(
        self, make_limiter: LimiterMaker, clock: FakeClock
    ) -> None:
        limiter = make_limiter()
        for _ in range(5):
            await limiter.hit("k", PER_SECOND)
        clock.advance(0.25)
        assert await limiter.hit("k", PER_SECOND) == pytest.approx(0.75)
        clock.advance(0.75)
        assert await limiter.hit("k", PER_SECOND) == 0.0
        assert await limiter.hit("k", PER_SECOND) == pytest.approx(1.0)
        clock.advance(60)  # idle: the whole burst is back, no more
        assert [await limiter.hit("k", PER_SECOND) for _ in range(6)][-2:] == [0.0, 1.0]

    async def test_a_refused_hit_takes_nothing(
        self, make_limiter: LimiterMaker, clock: FakeClock
    ) -> None:
        limiter = make_limiter()
        for _ in range(5):
            await limiter.hit("k", PER_SECOND)
        for _ in range(100):  # hammering while refused does not push the wait out
            assert await limiter.hit("k", PER_SECOND) == pytest.approx(1.0)
        clock.advance(1.0)
        assert await limiter.hit("k", PER_SECOND) == 0.0

    async def test_keys_and_limits_are_independent(self, make_limiter: LimiterMaker) -> None:
        limiter = make_limiter()
        slow = RateLimit(rate_per_second=0.1, burst=1)
        assert await limiter.hit("chat:1", slow) == 0.0
        assert await limiter.hit("chat:1", slow) == pytest.approx(10.0)
        assert await limiter.hit("chat:2", slow) == 0.0
        overall = RateLimit(rate_per_second=30, burst=30)
        assert [await limiter.hit("overall", overall) for _ in range(31)][-2:] == [
            0.0,
            pytest.approx(1 / 30),
        ]

    async def test_a_cost_takes_several_units(self, make_limiter: LimiterMaker) -> None:
        limiter = make_limiter()
        assert await limiter.hit("k", PER_SECOND, cost=3) == 0.0
        assert await limiter.hit("k", PER_SECOND, cost=3) == pytest.approx(1.0)
        assert await limiter.hit("k", PER_SECOND, cost=2) == 0.0

    async def test_concurrent_hits_share_one_bucket(self, make_limiter: LimiterMaker) -> None:
        waits = await asyncio.gather(*(make_limiter().hit("k", PER_SECOND) for _ in range(20)))
        assert sorted(waits)[:5] == [0.0] * 5
        assert all(w > 0 for w in sorted(waits)[5:])

    async def test_several_buckets_are_taken_in_order_up_to_the_first_refusal(
        self, make_limiter: LimiterMaker, clock: FakeClock
    ) -> None:
        limiter = make_limiter()
        chat, overall = RateLimit(rate_per_second=1.0, burst=2), RateLimit(0.5, burst=1)
        checks = (("chat:1", chat), ("all", overall))
        assert await limiter.hit_many(checks) == (2, 0.0)
        # The chat has a unit left and gives it; the overall bucket refuses.
        index, wait = await limiter.hit_many(checks)
        assert index == 1
        assert wait == pytest.approx(2.0)
        index, wait = await limiter.hit_many(checks)  # now the chat refuses: nothing taken
        assert index == 0
        assert wait == pytest.approx(1.0)
        assert await limiter.hit("all", overall) == pytest.approx(2.0)
        clock.advance(2.0)
        assert await limiter.hit_many(checks[1:]) == (1, 0.0)


def test_a_limit_must_be_positive() -> None:
    for rate, burst in ((0.0, 1), (-1.0, 1), (float("inf"), 1), (1.0, 0)):
        with pytest.raises(ValueError, match="must be"):
            RateLimit(rate_per_second=rate, burst=burst)


async def test_memory_limiter_forgets_idle_keys() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for i in range(1000):
        await limiter.hit(f"ip:{i}", PER_SECOND)
    assert len(limiter) == 1000
    clock.advance(10)  # every bucket full again
    for _ in range(24):
        await limiter.hit("ip:busy", PER_SECOND)
    assert len(limiter) == 1


async def test_redis_keys_expire_once_the_bucket_is_full(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    limiter = RedisRateLimiter(Redis.from_url(redis_url), KeyBuilder("test"))
    try:
        await limiter.hit("webchat:s1", PER_SECOND, cost=3)
        ttl = await redis.pttl("test:ratelimit:webchat:s1")
        assert 0 < ttl <= 3_001
    finally:
        await limiter.close()
        await redis.aclose()


async def test_redis_limiter_uses_the_server_clock(redis_url: str) -> None:
    limiter = RedisRateLimiter(Redis.from_url(redis_url), KeyBuilder("test"))
    slow = RateLimit(rate_per_second=0.01, burst=2)
    try:
        assert await limiter.hit("k", slow) == 0.0
        assert await limiter.hit("k", slow) == 0.0
        assert 0 < await limiter.hit("k", slow) <= 100.0
    finally:
        await limiter.close()


async def test_an_unreachable_redis_is_a_typed_error() -> None:
    limiter = RedisRateLimiter(
        Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1), KeyBuilder("test")
    )
    try:
        with pytest.raises(RateLimiterUnavailable):
            await limiter.hit("k", PER_SECOND)
    finally:
        await limiter.close()
