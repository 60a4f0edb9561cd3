from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub
from redis.exceptions import RedisError

from hub import protocol
from hub.protocol import Event

log = logging.getLogger("hub.bus")

Message = Event  # what travels: slot, hours and appointment events
Sink = Callable[[Message], None]


RETRIES = (0.1, 0.3, 1.0)  # pauses between attempts to subscribe


def slot_channel(doctor_id: int) -> str:
    return f"doctor:{doctor_id}:slots"


class Bus(Protocol):
    async def publish(self, channel: str, message: Message) -> None: ...

    async def publish_many(self, messages: list[tuple[str, Message]]) -> None:
        """Publish in order (on Redis, in one round trip)."""

    async def subscribe(self, channel: str, sink: Sink) -> None: ...

    async def unsubscribe(self, channel: str, sink: Sink) -> None: ...


class Fanout:
    """The sinks of one process, by channel: one upstream subscription per channel however
    many connections watch it."""

    def __init__(self) -> None:
        self.sinks: dict[str, set[Sink]] = {}

    def add(self, channel: str, sink: Sink) -> bool:
        """Register; True when this is the channel's first sink."""
        sinks = self.sinks.setdefault(channel, set())
        sinks.add(sink)
        return len(sinks) == 1

    def remove(self, channel: str, sink: Sink) -> bool:
        """Unregister; True when the channel has no sink left."""
        sinks = self.sinks.get(channel)
        if sinks is None:
            return False
        sinks.discard(sink)
        if sinks:
            return False
        del self.sinks[channel]
        return True

    def deliver(self, channel: str, message: Message) -> None:
        for sink in tuple(self.sinks.get(channel, ())):
            try:
                sink(message)
            except Exception:  # one broken sink must not starve the others
                log.exception("sink on %s failed", channel)


class MemoryBus:
    """The in-process twin of RedisBus for the embedded default."""

    def __init__(self) -> None:
        self._fanout = Fanout()

    async def publish(self, channel: str, message: Message) -> None:
        self._fanout.deliver(channel, message)

    async def publish_many(self, messages: list[tuple[str, Message]]) -> None:
        for channel, message in messages:
            self._fanout.deliver(channel, message)

    async def subscribe(self, channel: str, sink: Sink) -> None:
        self._fanout.add(channel, sink)

    async def unsubscribe(self, channel: str, sink: Sink) -> None:
        self._fanout.remove(channel, sink)

    async def close(self) -> None:
        return None


class RedisBus:
    """Pub/sub across processes on Redis: one subscription per channel per process, fanned
    out in-process. It uses sharded pub/sub (SPUBLISH / SSUBSCRIBE, Redis 7): on one server it
    behaves as plain pub/sub, and a Redis Cluster delivers each doctor's channel on the shard
    that owns it instead of broadcasting every message to every node. Redis pub/sub is
    at-most-once: slot events carry a version, and a viewer that sees a gap recovers the
    missed events from the outbox (hub.events.replay)."""

    def __init__(self, redis: Redis | RedisCluster, timeout: float, prefix: str = "hub:") -> None:
        self._redis = redis
        self._timeout = timeout
        self._prefix = prefix
        self._fanout = Fanout()
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._stale = False  # Redis may not be sending some channel that has sinks: resubscribe
        self._leaving: Counter[str] = Counter()  # our SUNSUBSCRIBEs not yet confirmed
        self._wanted: dict[str, list[asyncio.Future[None]]] = {}  # channels to subscribe
        self._unwanted: dict[str, list[asyncio.Future[None]]] = {}  # to unsubscribe
        self._batcher: asyncio.Task[None] | None = None

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        async with asyncio.timeout(self._timeout):
            return await awaitable

    async def publish(self, channel: str, message: Message) -> None:
        await self._call(self._redis.spublish(self._prefix + channel, json.dumps(message)))

    async def publish_many(self, messages: list[tuple[str, Message]]) -> None:
        if isinstance(self._redis, RedisCluster):  # the channels live on different shards
            for channel, message in messages:
                await self.publish(channel, message)
            return
        pipe = self._redis.pipeline(transaction=False)
        for channel, message in messages:
            pipe.spublish(self._prefix + channel, json.dumps(message))
        await self._call(pipe.execute())

    async def subscribe(self, channel: str, sink: Sink) -> None:
        if not self._fanout.add(channel, sink):
            return  # the channel is subscribed already (or being subscribed)
        try:
            for attempt, pause in enumerate(RETRIES):
                try:
                    # Many connections subscribe at once (a storm of viewers, each with a
                    # personal feed): their channels go to Redis together, one SSUBSCRIBE
                    # per batch.
                    await self._batched(self._wanted, self._prefix + channel)
                    return
                except (RedisError, TimeoutError, OSError):
                    if attempt == len(RETRIES) - 1 or self._closed:
                        raise
                    await asyncio.sleep(pause)  # a slow moment of Redis is not a failure
        except BaseException as exc:
            # As if it never happened, so the next subscriber to the channel tries again; a
            # subscribe already sent is undone by the batcher (not waited for here).
            if self._fanout.remove(channel, sink) and not self._closed:
                self._enqueue(self._unwanted, self._prefix + channel)
            elif channel in self._fanout.sinks and not isinstance(exc, asyncio.CancelledError):
                # Sinks that joined while this one tried took it as subscribed: the reader
                # subscribes every channel with sinks again.
                self._stale = True
            raise

    async def unsubscribe(self, channel: str, sink: Sink) -> None:
        # As many leave at once (a storm's viewers closing, a process draining): a channel
        # left by its last sink goes to Redis with the others, one SUNSUBSCRIBE per batch.
        if self._fanout.remove(channel, sink) and not self._closed:
            with contextlib.suppress(TimeoutError):
                await self._batched(self._unwanted, self._prefix + channel)

    async def _batched(self, queue: dict[str, list[asyncio.Future[None]]], name: str) -> None:
        # Queued for the batcher; waits for its batch (cancelled on timeout: skipped).
        if self._closed:
            raise RedisError("the bus is closed")
        await asyncio.wait_for(self._enqueue(queue, name), self._timeout * 4)

    def _enqueue(
        self, queue: dict[str, list[asyncio.Future[None]]], name: str
    ) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()
        queue.setdefault(name, []).append(done)
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._batches(), name="hub-bus-sub")
        return done

    def _has_sinks(self, name: str) -> bool:
        return name[len(self._prefix) :] in self._fanout.sinks

    async def _batches(self) -> None:
        # One task sends both, in order, each round under the lock: the SSUBSCRIBE of the
        # channels that still have sinks (one whose subscriber gave up is not subscribed), then
        # the SUNSUBSCRIBE of those that still have none once Redis answered (a channel left
        # and joined again meanwhile stays subscribed). A failed subscribe fails its waiters
        # and does not hold back the unsubscribes.
        while self._wanted or self._unwanted:
            wanted, self._wanted = self._wanted, {}
            unwanted, self._unwanted = self._unwanted, {}
            failure: Exception | None = RedisError("the bus is closed")  # until answered
            try:
                async with self._lock:
                    joining = [name for name in wanted if self._has_sinks(name)]
                    try:
                        if joining:
                            pubsub = await self._listening()
                            await self._call(pubsub.ssubscribe(*joining))
                        failure = None
                    except Exception as exc:
                        failure = exc
                    leaving = [name for name in unwanted if not self._has_sinks(name)]
                    if leaving and self._pubsub is not None:
                        self._leaving.update(leaving)
                        try:
                            await self._call(self._pubsub.sunsubscribe(*leaving))
                        except (RedisError, TimeoutError, OSError):
                            # Not confirmed, perhaps not sent: expect no confirmation, or a
                            # drop Redis makes later (a slot moving) would be taken for one.
                            # One that comes after all only makes a rejoined channel resubscribe.
                            self._leaving -= Counter(leaving)  # keeps what stays above 0
            finally:  # cancelled by close: nobody is left waiting
                _settle(wanted, failure)
                _settle(unwanted, None)

    async def _listening(self) -> PubSub:
        if isinstance(self._redis, RedisCluster):
            # A cluster client learns the slot map on its first command; pub/sub needs it
            # before that (idempotent once done).
            await self._call(self._redis.initialize())
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub()
            self._reader = asyncio.create_task(self._read(), name="hub-bus-reader")
        return self._pubsub

    async def _read(self) -> None:
        while not self._closed:  # the flag, not only the cancel: see runtime._stop
            try:
                if self._stale:
                    await self._resubscribe()
                message = await self._next()
            except Exception as exc:  # Redis went away, or a library tripped over it
                log.warning("bus reader lost Redis (%r); resubscribing in 0.5 s", exc)
                self._stale = True
                await asyncio.sleep(0.5)
                continue
            if message is not None:
                self._dispatch(message)

    async def _next(self) -> dict[str, Any] | None:
        pubsub = self._pubsub
        assert pubsub is not None
        message: dict[str, Any] | None
        if not pubsub.subscribed:
            await asyncio.sleep(0.05)
            return None
        if isinstance(pubsub, ClusterPubSub):
            # It holds one connection per shard and waits `timeout` on each in turn: keep the
            # wait short so a message on one shard is not held up by the quiet others. It is
            # read under the lock: an SSUBSCRIBE to a new shard adds that shard's connection
            # before connecting it, and a read in between fails (redis-py 8).
            async with self._lock:
                if not pubsub.node_pubsub_mapping:
                    raise RedisError("subscribed, but connected to no shard")
                message = await pubsub.get_sharded_message(timeout=0.02)
        else:
            message = await pubsub.get_message(timeout=1.0)
        return message

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, name = message["type"], message["channel"].decode()
        channel = name[len(self._prefix) :]
        if kind == "smessage":
            try:
                payload = protocol.event(json.loads(message["data"]))
            except ValueError:
                log.warning("dropped an undecodable message on %s", name)
                return
            self._fanout.deliver(channel, payload)
        elif kind == "sunsubscribe":
            if self._leaving[name] > 0:
                self._leaving[name] -= 1
            elif channel in self._fanout.sinks:
                # Redis dropped a channel we still listen to (its slot moved to another shard).
                self._stale = True

    async def _resubscribe(self) -> None:
        # After an outage or a slot move: a new pub/sub connection, subscribed again to every
        # channel with local sinks. What was published meanwhile is recovered by `replay`. A
        # failure raises, and the reader tries again.
        async with self._lock:
            old, self._pubsub = self._pubsub, self._redis.pubsub()
            self._leaving.clear()
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            if isinstance(self._redis, RedisCluster):  # shards may have moved: learn them again
                await self._call(self._redis.nodes_manager.initialize())
            channels = [self._prefix + channel for channel in self._fanout.sinks]
            if channels:
                await self._call(self._pubsub.ssubscribe(*channels))
            self._stale = False

    async def close(self) -> None:
        self._closed = True
        if self._batcher is not None:
            self._batcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._batcher
        _settle(self._wanted, RedisError("the bus is closed"))
        _settle(self._unwanted, None)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]


def _settle(waiting: dict[str, list[asyncio.Future[None]]], exc: Exception | None) -> None:
    for futures in waiting.values():
        for done in futures:
            if done.done():
                continue
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)
