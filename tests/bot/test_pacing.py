"""The channels' shared pacing over the rate limiter (bot/channels/pacing.py)."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis

from bot.channels.pacing import MAX_PACE_SECONDS, Pacer
from bot.errors import RetryAfter
from storage.keys import KeyBuilder
from storage.ratelimit import MemoryRateLimiter, RateLimit, RedisRateLimiter
from tests.servers import free_port


async def test_a_short_wait_is_slept_and_a_long_one_handed_back() -> None:
    pacer = Pacer("telegram", "k", MemoryRateLimiter())
    brisk = ("telegram:chat:a", RateLimit(rate_per_second=50.0, burst=1))
    for _ in range(3):  # 20 ms apart: slept, never raised
        await pacer.pace(brisk)
    slow = ("telegram:chat:b", RateLimit(rate_per_second=0.01, burst=1))
    await pacer.pace(slow)
    with pytest.raises(RetryAfter) as later:
        await pacer.pace(slow)
    assert later.value.retry_after > MAX_PACE_SECONDS


async def test_keys_carry_a_keyed_hash_of_personal_values() -> None:
    one, other = Pacer("whatsapp", "key-one"), Pacer("whatsapp", "key-two")
    key = one.key("sender", "whatsapp:+79051234567")
    assert key.startswith("whatsapp:sender:")
    assert "9051234567" not in key
    assert key == one.key("sender", "whatsapp:+79051234567")
    assert key != other.key("sender", "whatsapp:+79051234567")  # no guessing without the secret


async def test_an_unreachable_limiter_lets_traffic_through_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    pacer = Pacer("webchat", "k", RedisRateLimiter(dead, KeyBuilder("heatdesk")))
    limit = ("webchat:msg:s", RateLimit(rate_per_second=0.01, burst=1))
    with caplog.at_level(logging.WARNING, logger="bot.channels.pacing"):
        for _ in range(3):
            assert await pacer.wait_for(limit) == 0.0
            await pacer.pace(limit)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "rate limiter unavailable" in warnings[0].getMessage()
    await dead.aclose()
