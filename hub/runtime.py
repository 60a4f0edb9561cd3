from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from hub import events, notices
from hub.audit import Audit
from hub.auth import Passwords, Tokens
from hub.booking import Booking
from hub.bus import Bus, MemoryBus, RedisBus
from hub.calendar import Calendar
from hub.clock import Clock, utcnow
from hub.config import Settings
from hub.db import SessionFactory, after_commit, create_engine, session_factory
from hub.health import Readiness
from hub.holds import HoldStore, MemoryHolds, RedisHolds
from hub.lifecycle import Lifecycle
from hub.metrics import Metrics
from hub.relay import Relay
from hub.renewal import Renewals
from hub.sender import Sender, transports
from hub.standing import Standings
from hub.throttle import Throttle, storage
from hub.waitlist import Waitlist

log = logging.getLogger("hub")
REDIS_CONNECTIONS = 200  # per process (per shard on a cluster)


@dataclass(frozen=True, slots=True)
class Hub:
    """Every resource the hub holds while it runs; the app's lifespan owns one."""

    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    passwords: Passwords
    tokens: Tokens
    holds: HoldStore
    bus: Bus
    booking: Booking
    calendar: Calendar
    lifecycle: Lifecycle
    relay: Relay
    redis: Redis | RedisCluster | None
    metrics: Metrics
    clock: Clock
    standings: Standings
    renewals: Renewals
    audit: Audit
    throttle: Throttle
    waitlist: Waitlist
    sender: Sender
    readiness: Readiness
    # Set by the SIGTERM handler (graceful drain) as the process starts to leave: from then
    # on `/ready` answers 503 `{"status": "draining"}`, so the balancer sends no new work.
    draining: asyncio.Event = field(default_factory=asyncio.Event)


# MySQL/MariaDB: too many connections, shutting down, lock wait timeout, deadlock, connection
# killed, cannot connect (2002, 2003), server gone away, lost connection, idle timeout.
TRANSIENT_DATABASE_ERRORS = {1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 4031}


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database or Redis is away (refused, lost, timed out), not
    that the hub is wrong: the edges answer it 503 with `Retry-After`, never 500."""
    if isinstance(exc, DBAPIError):
        args = getattr(exc.orig, "args", ())
        code = args[0] if args else None
        return (
            exc.connection_invalidated
            or code in TRANSIENT_DATABASE_ERRORS
            or "database is locked" in str(exc.orig)  # SQLite, a writer holding on
        )
    return isinstance(exc, RedisError | PoolTimeout | OSError)


def connect_redis(settings: Settings) -> Redis | RedisCluster:
    """A client for HUB_REDIS_URL: one server, or with HUB_REDIS_CLUSTER any node of a Redis
    Cluster (the client learns the others). Every call gives up after HUB_REDIS_TIMEOUT."""
    assert settings.redis_url is not None
    timeouts: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
    }
    # redis-py refuses a command past `max_connections` (100 by default) instead of waiting:
    # a burst of bookings must queue for a connection, within the same timeout.
    if settings.redis_cluster:
        return RedisCluster.from_url(
            settings.redis_url, max_connections=REDIS_CONNECTIONS, **timeouts
        )
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REDIS_CONNECTIONS,
        timeout=settings.redis_timeout,
        **timeouts,
    )
    return Redis.from_pool(pool)  # owns it: closing the client closes the pool


@asynccontextmanager
async def open_hub(settings: Settings, clock: Clock = utcnow) -> AsyncIterator[Hub]:
    """Create the engine, Redis client, locks and bus on the running loop; close them after.
    Every part that tells time asks `clock`."""
    engine = create_engine(settings.database_url)
    redis: Redis | RedisCluster | None = None
    holds: HoldStore
    bus: RedisBus | MemoryBus
    if settings.redis_url:
        redis = connect_redis(settings)
        # One command before any burst: redis-py 8's cluster client can trip over its own
        # first connections when many are opened at once. Redis being away is not fatal here.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(redis.ping(), settings.redis_timeout)
        holds = RedisHolds(redis, settings.redis_timeout, clock=clock)
        # Pub/sub ignores the database number; put it in the channel names, so hubs that
        # share a Redis server on different databases never hear each other.
        database = (
            redis.connection_pool.connection_kwargs.get("db", 0) if isinstance(redis, Redis) else 0
        )
        bus = RedisBus(redis, settings.redis_timeout, prefix=f"hub:{database}:")
    else:
        holds = MemoryHolds(clock)
        bus = MemoryBus()
    sessions = session_factory(engine)
    if isinstance(holds, MemoryHolds):
        await events.free_forgotten_holds(sessions)
    log.info(
        "hub on %s with %s lock and bus",
        engine.url.render_as_string(hide_password=True),
        "Redis" if redis else "in-process",
    )
    metrics = Metrics(settings.metrics_dir)
    relay = Relay(sessions, bus, metrics, clock)
    booking = Booking(
        sessions,
        holds,
        relay,
        hold_ttl=settings.hold_ttl,
        max_holds=settings.max_holds,
        max_address_holds=settings.max_address_holds,
        notify=notices.Policy(
            settings.reminders, settings.quiet_hours, sms=settings.sms_dir is not None
        ),
        require_verified=settings.require_verified_email,
        clock=clock,
    )
    throttle = Throttle(storage(settings, redis), settings)
    stop = asyncio.Event()
    audit = Audit(sessions, clock)
    tokens, standings = Tokens(settings), Standings(sessions)
    calendar = Calendar(sessions, holds, clock)
    waitlist = Waitlist(
        sessions, holds, relay, calendar, booking, offer_ttl=settings.offer_ttl, clock=clock
    )
    sweeper = asyncio.create_task(
        _sweep(booking, relay, audit, stop, metrics, clock), name="hub-sweeper"
    )
    matcher = asyncio.create_task(waitlist.run(stop), name="hub-waitlist")
    sender = Sender(sessions, settings, *transports(settings), clock=clock)
    after_commit(sessions, notices.WRITTEN, sender.wake)
    mailer = asyncio.create_task(sender.run(stop), name="hub-sender")
    try:
        yield Hub(
            settings=settings,
            engine=engine,
            sessions=sessions,
            passwords=Passwords(
                settings.argon2_time_cost,
                settings.argon2_memory_kib,
                workers=settings.password_workers or None,
                queue=settings.password_queue,
            ),
            tokens=tokens,
            holds=holds,
            bus=bus,
            booking=booking,
            calendar=calendar,
            lifecycle=Lifecycle(sessions, relay, clock),
            relay=relay,
            redis=redis,
            metrics=metrics,
            clock=clock,
            standings=standings,
            renewals=Renewals(
                sessions, tokens, standings, clock, timedelta(days=settings.refresh_days)
            ),
            audit=audit,
            throttle=throttle,
            waitlist=waitlist,
            sender=sender,
            readiness=Readiness(engine, redis, settings.database_url),
        )
    finally:
        await _stop(mailer, stop)
        await _stop(matcher, stop)
        await _stop(sweeper, stop)
        with contextlib.suppress(Exception):
            await audit.flush()  # what the last half second noted
        await throttle.close()
        await bus.close()
        if redis is not None:
            await redis.aclose()
        await engine.dispose()
        metrics.close()


async def _stop(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """End a background loop. The flag is what ends it: a timeout inside a library can turn
    the cancellation into an ordinary error that the loop survives (redis-py #2551; Python
    3.11's asyncio.timeout when the cancel lands as it expires); the cancel only cuts the
    current wait short."""
    stop.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _sweep(
    booking: Booking,
    relay: Relay,
    audit: Audit,
    stop: asyncio.Event,
    metrics: Metrics,
    clock: Clock = utcnow,
    every: float = 0.5,
) -> None:
    # Every process sweeps: a lapsed hold is announced by whichever process claims it first,
    # so a slot turns free for its viewers even when the process that made the hold has died;
    # and the relay publishes events a dead process committed but never published.
    for tick in itertools.count(1):
        await asyncio.sleep(every)
        if stop.is_set():
            return
        try:
            metrics.lapsed.inc(await booking.sweep())
        except Exception as exc:  # the sweeper outlives a Redis or database outage
            log.warning("hold sweep failed: %r", exc)
        try:
            await audit.flush()
        except Exception as exc:
            log.warning("audit rows not written yet: %r", exc)
        # What this process published is marked every tick; leftovers are looked for every
        # 2 s (a process that died left them, or the bus was away): an idle process reads
        # the database that often, not on every tick.
        await relay.flush_quietly(leftovers=tick % 4 == 0)
        if tick % 600 == 0:  # every five minutes
            try:
                await events.prune(booking.sessions, clock=clock)
                await booking.forget_keys()
            except Exception as exc:
                log.warning("pruning the outbox and idempotency keys failed: %r", exc)
