from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.auth import Passwords, Tokens
from hub.booking import Booking
from hub.bus import Bus, MemoryBus, RedisBus
from hub.config import Settings
from hub.db import SessionFactory, create_engine, session_factory
from hub.locks import MemoryLocks, RedisLocks, SlotLocks

log = logging.getLogger("hub")


@dataclass(frozen=True, slots=True)
class Hub:
    """Every resource the hub holds while it runs; the app's lifespan owns one."""

    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    passwords: Passwords
    tokens: Tokens
    locks: SlotLocks
    bus: Bus
    booking: Booking
    redis: Redis | None


@asynccontextmanager
async def open_hub(settings: Settings) -> AsyncIterator[Hub]:
    """Create the engine, Redis client, locks and bus on the running loop; close them after."""
    engine = create_engine(settings.database_url)
    redis: Redis | None = None
    locks: SlotLocks
    bus: Bus
    if settings.redis_url:
        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
        )
        locks = RedisLocks(redis, settings.redis_timeout)
        bus = RedisBus(redis, settings.redis_timeout)
    else:
        locks = MemoryLocks()
        bus = MemoryBus()
    sessions = session_factory(engine)
    log.info(
        "hub on %s with %s lock and bus",
        engine.url.render_as_string(hide_password=True),
        "Redis" if redis else "in-process",
    )
    try:
        yield Hub(
            settings=settings,
            engine=engine,
            sessions=sessions,
            passwords=Passwords(settings.argon2_time_cost, settings.argon2_memory_kib),
            tokens=Tokens(settings),
            locks=locks,
            bus=bus,
            booking=Booking(sessions, locks, bus),
            redis=redis,
        )
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()
