from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from hub.errors import Unavailable
from hub.locks import LocksUnavailable, MemoryLocks, RedisLocks, SlotLocks

REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL")
KINDS = ["memory", *(["redis"] if REDIS_URL else [])]
UNREACHABLE = "redis://127.0.0.1:1/0"
TTL_MS = 10_000


@pytest.fixture(params=KINDS)
async def locks(request: pytest.FixtureRequest) -> AsyncIterator[SlotLocks]:
    if request.param == "memory":
        yield MemoryLocks()
        return
    assert REDIS_URL is not None
    redis = Redis.from_url(REDIS_URL)
    try:
        yield RedisLocks(redis, timeout=2.0, prefix=f"hub-test:{secrets.token_hex(4)}:")
    finally:
        await redis.aclose()


@pytest.fixture
def key() -> str:
    return f"slot:{secrets.token_hex(4)}:20300107T1000"


async def test_acquire_returns_a_token(locks: SlotLocks, key: str) -> None:
    token = await locks.acquire(key, TTL_MS)
    assert isinstance(token, str)
    assert token


async def test_a_held_key_cannot_be_acquired_again(locks: SlotLocks, key: str) -> None:
    assert await locks.acquire(key, TTL_MS) is not None
    assert await locks.acquire(key, TTL_MS) is None


async def test_locks_on_different_keys_are_independent(locks: SlotLocks, key: str) -> None:
    assert await locks.acquire(key, TTL_MS) is not None
    assert await locks.acquire(key + "-other", TTL_MS) is not None


async def test_release_with_a_wrong_token_is_refused_and_keeps_the_lock(
    locks: SlotLocks, key: str
) -> None:
    assert await locks.acquire(key, TTL_MS) is not None
    assert await locks.release(key, "not-the-token") is False
    assert await locks.acquire(key, TTL_MS) is None


async def test_release_with_the_right_token_frees_the_key(locks: SlotLocks, key: str) -> None:
    token = await locks.acquire(key, TTL_MS)
    assert token is not None
    assert await locks.release(key, token) is True
    assert await locks.acquire(key, TTL_MS) is not None


async def test_releasing_a_key_nobody_holds_is_false(locks: SlotLocks, key: str) -> None:
    assert await locks.release(key, "any-token") is False


async def test_a_lock_expires_after_its_ttl(locks: SlotLocks, key: str) -> None:
    assert await locks.acquire(key, 50) is not None
    await asyncio.sleep(0.2)
    assert await locks.acquire(key, TTL_MS) is not None


async def test_the_first_owner_cannot_release_an_expired_lock_taken_by_another(
    locks: SlotLocks, key: str
) -> None:
    first = await locks.acquire(key, 50)
    assert first is not None
    await asyncio.sleep(0.2)
    second = await locks.acquire(key, TTL_MS)
    assert second is not None
    assert await locks.release(key, first) is False
    assert await locks.acquire(key, TTL_MS) is None


async def test_acquire_on_an_unreachable_redis_raises_locks_unavailable() -> None:
    redis = Redis.from_url(UNREACHABLE, socket_connect_timeout=0.2, socket_timeout=0.2)
    try:
        with pytest.raises(LocksUnavailable):
            await RedisLocks(redis, timeout=0.5).acquire("slot:1:20300107T1000", TTL_MS)
    finally:
        await redis.aclose()


async def test_release_on_an_unreachable_redis_raises_locks_unavailable() -> None:
    redis = Redis.from_url(UNREACHABLE, socket_connect_timeout=0.2, socket_timeout=0.2)
    try:
        with pytest.raises(LocksUnavailable):
            await RedisLocks(redis, timeout=0.5).release("slot:1:20300107T1000", "token")
    finally:
        await redis.aclose()


def test_locks_unavailable_is_answered_as_503() -> None:
    error = LocksUnavailable("lock service unavailable")
    assert isinstance(error, Unavailable)
    assert error.status == 503
    assert error.payload()["error"] == "locks_unavailable"
