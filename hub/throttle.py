from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from hub.config import Settings
from hub.errors import ConfigError, InvalidCredentials, TooManyAttempts

log = logging.getLogger("hub.throttle")
PREFIX = "hub:throttle"
MAILS_PER_RECIPIENT = 5  # links mailed on request to one account per registration window
T = TypeVar("T")


def storage(settings: Settings, redis: Redis | RedisCluster | None) -> Storage:
    """Where the counts live: the hub's Redis (its own connection pool), a Redis Cluster
    (limits opens its own cluster client from HUB_REDIS_URL), or this process's memory."""
    if redis is None or settings.redis_url is None:
        return MemoryStorage()
    timeouts: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
    }
    if isinstance(redis, RedisCluster):
        # limits builds its cluster client from startup nodes in its own URL form, so it
        # cannot share the hub's; every key it writes is one key, so any slot serves it.
        url = urlsplit(settings.redis_url)
        return RedisClusterStorage(
            f"async+redis+cluster://{url.netloc}",
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix=PREFIX,
            **timeouts,
        )
    shared: dict[str, Any] = {"connection_pool": redis.connection_pool}
    return RedisStorage(
        f"async+{settings.redis_url}",
        wrap_exceptions=True,
        implementation="redispy",
        key_prefix=PREFIX,
        **shared,
    )


@dataclass(frozen=True, slots=True)
class Scope:
    """One count of failed sign-ins: whose (the limiter's identifiers), and past how many
    in the window the answers slow down."""

    key: tuple[str, ...]
    threshold: int


class Throttle:
    """Sign-ins and registrations counted per client address and per account in limits'
    moving windows (Redis when configured, so every process counts together).

    Past a scope's threshold of failures in HUB_LOGIN_WINDOW, one attempt is let through per
    wait, and each further failure doubles the wait (HUB_LOGIN_BACKOFF, 2x, ... up to the
    window); the others are refused with TooManyAttempts before any password is hashed. The
    scopes: the account from this address (strict), this address on any account, and the
    account from every address, which holds back only addresses that have failed on it: an
    attacker's failures never slow the owner signing in from an address of their own.

    When the storage is away the throttle lets everything through (and says so in the log):
    sign-ins keep working, still bounded by the password hashing queue."""

    def __init__(self, store: Storage, settings: Settings) -> None:
        numbers = (
            settings.login_failures,
            settings.login_address_failures,
            settings.login_account_failures,
            settings.login_window,
            settings.login_backoff,
            settings.registration_window,
        )
        if min(numbers) < 1 or settings.registrations < 0:
            raise ConfigError("the login and registration limits must be positive")
        self._store = store
        self._limiter = MovingWindowRateLimiter(store)
        self._settings = settings
        self._timeout = settings.redis_timeout
        # Past threshold + steps failures the wait is the whole window: no need to count on.
        doublings = math.log2(settings.login_window / settings.login_backoff)
        self._steps = max(1, math.ceil(doublings) + 1)

    @asynccontextmanager
    async def login(self, role: str, email: str, address: str) -> AsyncIterator[None]:
        """Around one sign-in: refuse it (TooManyAttempts) while its scopes wait, count it
        when it raises InvalidCredentials, and forgive this address's failures on the
        account when it succeeds."""
        s = self._settings
        account = hashlib.blake2b(f"{role}:{email.lower()}".encode(), digest_size=16).hexdigest()
        pair = Scope(("pair", account, address), s.login_failures)
        nearby = Scope(("address", address), s.login_address_failures)
        ceiling = Scope(("account", account), s.login_account_failures)
        tried = await self._failures(pair)
        checks = [(pair, tried), (nearby, await self._failures(nearby))]
        if tried > 0:  # only an address that has failed on the account meets its ceiling
            checks.append((ceiling, await self._failures(ceiling)))
        for scope, count in checks:
            if count >= scope.threshold:
                await self._admit(scope, count)
        try:
            yield
        except InvalidCredentials:
            for scope in (pair, nearby, ceiling):
                await self._fail(scope)
            raise
        await self._ask(self._limiter.clear(self._counter(pair), *pair.key), None)

    async def register(self, address: str) -> None:
        """Count a registration from `address`; TooManyAttempts past HUB_REGISTRATIONS in
        HUB_REGISTRATION_WINDOW."""
        s = self._settings
        if s.registrations == 0:
            return
        item = RateLimitItemPerSecond(s.registrations, s.registration_window, "register")
        if not await self._ask(self._limiter.hit(item, address), True):
            wait = await self._retry(item, (address,))
            raise TooManyAttempts("too many registrations from this address", wait)

    async def mail(self, address: str, recipient: str) -> bool:
        """Count a link mailed on request (password reset, verification) from `address` to
        `recipient` (an account, as "role:email"). TooManyAttempts past HUB_REGISTRATIONS
        from the address in HUB_REGISTRATION_WINDOW; False (send nothing, say nothing) past
        MAILS_PER_RECIPIENT to the recipient, so that nobody floods someone else's inbox."""
        s = self._settings
        if s.registrations == 0:
            return True
        item = RateLimitItemPerSecond(s.registrations, s.registration_window, "mail")
        if not await self._ask(self._limiter.hit(item, address), True):
            wait = await self._retry(item, (address,))
            raise TooManyAttempts("too many requests from this address", wait)
        whom = hashlib.blake2b(recipient.lower().encode(), digest_size=16).hexdigest()
        cap = RateLimitItemPerSecond(MAILS_PER_RECIPIENT, s.registration_window, "mailed")
        return await self._ask(self._limiter.hit(cap, whom), True)

    async def close(self) -> None:
        """Let go of what the storage holds beyond the hub's own Redis client."""
        if isinstance(self._store, MemoryStorage):
            if self._store.timer is not None:
                self._store.timer.cancel()
        elif isinstance(self._store, RedisClusterStorage):
            bridge = self._store.bridge
            if isinstance(bridge, RedispyBridge):
                client: Any = bridge.get_connection()  # typed by limits without aclose()
                await client.aclose()

    def _counter(self, scope: Scope) -> RateLimitItem:
        amount = scope.threshold + self._steps
        return RateLimitItemPerSecond(amount, self._settings.login_window, "failures")

    def _wait(self, scope: Scope, count: int) -> RateLimitItem:
        # One attempt per wait: the wait for `count` failures has a window of its own.
        s = self._settings
        wait = min(s.login_backoff * 2 ** (count - scope.threshold), s.login_window)
        return RateLimitItemPerSecond(1, wait, "wait")

    async def _failures(self, scope: Scope) -> int:
        item = self._counter(scope)
        stats = await self._ask(self._limiter.get_window_stats(item, *scope.key), None)
        return 0 if stats is None else item.amount - stats.remaining

    async def _admit(self, scope: Scope, count: int) -> None:
        item = self._wait(scope, count)
        if not await self._ask(self._limiter.hit(item, *scope.key), True):
            wait = await self._retry(item, scope.key)
            raise TooManyAttempts(f"too many failed sign-ins: try again in {wait} s", wait)

    async def _fail(self, scope: Scope) -> None:
        await self._ask(self._limiter.hit(self._counter(scope), *scope.key), True)
        count = await self._failures(scope)
        if count >= scope.threshold:  # the next attempt waits
            await self._ask(self._limiter.hit(self._wait(scope, count), *scope.key), True)

    async def _retry(self, item: RateLimitItem, key: tuple[str, ...]) -> int:
        stats = await self._ask(self._limiter.get_window_stats(item, *key), None)
        reset = time.time() + 1 if stats is None else stats.reset_time
        return max(1, math.ceil(reset - time.time()))

    async def _ask(self, call: Awaitable[T], otherwise: T) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except (StorageError, RedisError, TimeoutError, OSError) as exc:
            log.warning("throttle not counting: its storage is unavailable (%r)", exc)
            return otherwise
