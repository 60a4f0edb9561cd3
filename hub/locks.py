from __future__ import annotations

import asyncio
import secrets
import time
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hub.errors import Unavailable

# Delete the key only if it still holds our token: a lock that expired and was taken by
# someone else must not be released by its first owner.
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class LocksUnavailable(Unavailable):
    code = "locks_unavailable"


class SlotLocks(Protocol):
    async def acquire(self, key: str, ttl_ms: int) -> str | None: ...

    async def release(self, key: str, token: str) -> bool: ...


class RedisLocks:
    """Slot locks as Redis keys: SET NX PX with a random token, compare-and-delete release.
    Every call gives up after `timeout` seconds and raises LocksUnavailable."""

    def __init__(self, redis: Redis, timeout: float, prefix: str = "hub:lock:") -> None:
        self._redis = redis
        self._timeout = timeout
        self._prefix = prefix
        self._release = redis.register_script(RELEASE)

    async def acquire(self, key: str, ttl_ms: int) -> str | None:
        token = secrets.token_hex(16)
        try:
            async with asyncio.timeout(self._timeout):
                taken = await self._redis.set(self._prefix + key, token, nx=True, px=ttl_ms)
        except (RedisError, TimeoutError, OSError) as exc:
            raise LocksUnavailable(f"lock service unavailable: {exc.__class__.__name__}") from exc
        return token if taken else None

    async def release(self, key: str, token: str) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._release(keys=[self._prefix + key], args=[token]))
        except (RedisError, TimeoutError, OSError) as exc:
            raise LocksUnavailable(f"lock service unavailable: {exc.__class__.__name__}") from exc


class MemoryLocks:
    """The in-process twin of RedisLocks for the embedded default: same semantics, one process."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}

    async def acquire(self, key: str, ttl_ms: int) -> str | None:
        now = time.monotonic()
        current = self._held.get(key)
        if current is not None and current[1] > now:
            return None
        token = secrets.token_hex(16)
        self._held[key] = (token, now + ttl_ms / 1000)
        return token

    async def release(self, key: str, token: str) -> bool:
        current = self._held.get(key)
        if current is None or current[0] != token:
            return False
        del self._held[key]
        return current[1] > time.monotonic()
