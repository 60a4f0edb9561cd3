from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError

from hub.bus import Bus, MemoryBus, Message, RedisBus, slot_channel
from tests.conftest import REDIS_KINDS, REDIS_URL, async_redis

# Pub/sub channels are the server's, not a database's: each pytest-xdist worker its own, as
# each hub its own (`hub:<database>:`), or one worker's probes reach the other's sinks.
PREFIX = f"test:{os.environ.get('PYTEST_XDIST_WORKER', 'main')}:"
DOCTORS = 40  # channels enough to land on every shard of a three-node cluster
WAIT = 10.0


class Inbox:
    """A sink that keeps what it is given and can wait for it."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._arrived = asyncio.Event()

    def __call__(self, message: Message) -> None:
        self.messages.append(message)
        self._arrived.set()

    async def until(self, count: int) -> list[Message]:
        async with asyncio.timeout(WAIT):
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.messages


@pytest.fixture(params=["memory", *REDIS_KINDS])
async def buses(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Bus, Bus, Any]]:
    """Two buses as two hub processes have them (the in-process bus is one process: the same
    bus twice), and the Redis client behind them (None for the in-process bus)."""
    if request.param == "memory":
        bus = MemoryBus()
        yield bus, bus, None
        return
    clients = [async_redis(request.param) for _ in range(3)]
    await clients[0].flushdb()
    await clients[2].ping()  # a cluster client learns its nodes on its first command
    first, second = (RedisBus(client, timeout=2.0, prefix=PREFIX) for client in clients[:2])
    try:
        yield first, second, clients[2]
    finally:
        await first.close()
        await second.close()
        for client in clients:
            await client.aclose()


async def _subscribed(bus: Bus, channel: str, inbox: Inbox) -> None:
    await bus.subscribe(channel, inbox)
    await asyncio.sleep(0.1)  # SSUBSCRIBE answered; give the reader a turn to start reading


async def test_every_channel_reaches_its_sinks_on_another_process_in_order(
    buses: tuple[Bus, Bus, Any],
) -> None:
    listener, publisher, _ = buses
    inboxes = {doctor: Inbox() for doctor in range(1, DOCTORS + 1)}
    for doctor, inbox in inboxes.items():
        await _subscribed(listener, slot_channel(doctor), inbox)
    for version in range(1, 6):
        for doctor in inboxes:
            await publisher.publish(slot_channel(doctor), {"doctor": doctor, "version": version})
    for doctor, inbox in inboxes.items():
        got = await inbox.until(5)
        assert got == [{"doctor": doctor, "version": v} for v in range(1, 6)]


async def test_one_channel_fans_out_to_every_local_sink(buses: tuple[Bus, Bus, Any]) -> None:
    listener, publisher, client = buses
    sinks = [Inbox() for _ in range(3)]
    for sink in sinks:
        await _subscribed(listener, slot_channel(7), sink)
    if client is not None:  # one upstream subscription for the three sinks
        assert await _subscribers(client, PREFIX + "doctor:7:slots") == 1
    await publisher.publish(slot_channel(7), {"n": 1})
    for sink in sinks:
        assert await sink.until(1) == [{"n": 1}]


async def test_an_unsubscribed_sink_hears_nothing_more(buses: tuple[Bus, Bus, Any]) -> None:
    listener, publisher, _ = buses
    gone, staying = Inbox(), Inbox()
    await _subscribed(listener, slot_channel(1), gone)
    await _subscribed(listener, slot_channel(2), staying)
    await listener.unsubscribe(slot_channel(1), gone)
    await publisher.publish(slot_channel(1), {"n": 1})
    await publisher.publish(slot_channel(2), {"n": 2})
    assert await staying.until(1) == [{"n": 2}]
    await asyncio.sleep(0.2)
    assert gone.messages == []


async def _sunsubscribes(client: Any) -> int:
    """How many SUNSUBSCRIBE commands the Redis server has run, from its command stats."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_sunsubscribe", {}).get("calls", 0))


async def test_sinks_leaving_at_once_are_unsubscribed_together(
    buses: tuple[Bus, Bus, Any],
) -> None:
    # Thousands of sessions closing at once (a storm's viewers leaving, a process draining)
    # used to leave one by one: each took the bus's lock for its own SUNSUBSCRIBE round trip,
    # and every lock acquisition scanned all the waiters (quadratic in the sessions).
    listener, publisher, client = buses
    channels = [f"patient:{n}:appointments" for n in range(1, 301)]
    sinks = [Inbox() for _ in channels]
    await asyncio.gather(*(listener.subscribe(c, s) for c, s in zip(channels, sinks, strict=True)))
    staying = Inbox()
    await _subscribed(listener, slot_channel(1), staying)
    before = await _sunsubscribes(client) if isinstance(client, Redis) else 0
    await asyncio.gather(
        *(listener.unsubscribe(c, s) for c, s in zip(channels, sinks, strict=True))
    )
    if client is not None:
        for channel in (channels[0], channels[150], channels[-1]):
            assert await _subscribers(client, PREFIX + channel) == 0
        assert await _subscribers(client, PREFIX + slot_channel(1)) == 1
    if isinstance(client, Redis):  # a cluster client sends one per channel, to its shard
        assert await _sunsubscribes(client) - before < 30
    for channel in channels[:5]:
        await publisher.publish(channel, {"n": 1})
    await publisher.publish(slot_channel(1), {"n": 2})
    assert await staying.until(1) == [{"n": 2}]
    assert all(sink.messages == [] for sink in sinks)


async def test_a_channel_left_and_joined_at_once_keeps_its_subscription(
    buses: tuple[Bus, Bus, Any],
) -> None:
    listener, publisher, client = buses
    first, second, passing = Inbox(), Inbox(), Inbox()
    await _subscribed(listener, slot_channel(3), first)
    # The last sink leaves as another arrives: the channel stays subscribed upstream.
    await asyncio.gather(
        listener.unsubscribe(slot_channel(3), first), listener.subscribe(slot_channel(3), second)
    )
    await _until_heard(publisher, slot_channel(3), second)
    # A sink that comes and goes at once leaves no subscription behind.
    await asyncio.gather(
        listener.subscribe(slot_channel(4), passing),
        listener.unsubscribe(slot_channel(4), passing),
    )
    # A subscriber that gives up at once (its watch cancelled) leaves none behind either.
    quitter = asyncio.create_task(listener.subscribe(slot_channel(5), Inbox()))
    await asyncio.sleep(0)
    quitter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await quitter
    await asyncio.sleep(0.2)
    if client is not None:
        for channel, count in ((slot_channel(4), 0), (slot_channel(5), 0), (slot_channel(3), 1)):
            assert await _subscribers(client, PREFIX + channel) == count, channel
    assert first.messages == []


async def test_a_closed_bus_subscribes_to_nothing() -> None:
    if REDIS_URL is None:
        pytest.skip("needs Redis")
    client = async_redis("redis")
    bus = RedisBus(client, timeout=2.0, prefix=PREFIX)
    try:
        await bus.subscribe(slot_channel(6), Inbox())
        await bus.close()
        with pytest.raises(RedisError):
            await bus.subscribe(slot_channel(7), Inbox())
        await bus.unsubscribe(slot_channel(6), Inbox())  # at once, nothing to send
        assert await _subscribers(client, PREFIX + slot_channel(7)) == 0
    finally:
        await bus.close()
        await client.aclose()


async def _subscribers(client: Any, channel: str) -> int:
    """PUBSUB SHARDNUMSUB, asked of the node that owns the channel (on a cluster, by a client
    of that node alone: redis-py 8.2's cluster client cannot parse a single node's answer)."""
    if not isinstance(client, RedisCluster):
        return int((await client.execute_command("PUBSUB", "SHARDNUMSUB", channel))[1])
    node = client.get_node_from_key(channel)
    alone = Redis(host=node.host, port=node.port)
    try:
        return int((await alone.execute_command("PUBSUB", "SHARDNUMSUB", channel))[1])
    finally:
        await alone.aclose()


async def _kill_subscriptions(client: Any) -> None:
    if isinstance(client, RedisCluster):
        for node in client.get_primaries():
            await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub", target_nodes=node)
    else:
        await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")


async def _until_heard(publisher: Bus, channel: str, inbox: Inbox) -> None:
    """Publish until the sink hears it; fails after WAIT seconds."""
    async with asyncio.timeout(WAIT):
        while not inbox.messages:
            await publisher.publish(channel, {"probe": True})
            await asyncio.sleep(0.1)


async def test_subscriptions_come_back_after_redis_drops_them(
    buses: tuple[Bus, Bus, Any],
) -> None:
    listener, publisher, client = buses
    if client is None:
        pytest.skip("the in-process bus has no connection to lose")
    inboxes = [Inbox() for _ in range(5)]
    for doctor, inbox in enumerate(inboxes, 1):
        await _subscribed(listener, slot_channel(doctor), inbox)
    await _kill_subscriptions(client)
    for doctor, inbox in enumerate(inboxes, 1):
        await _until_heard(publisher, slot_channel(doctor), inbox)


class Outage:
    """A TCP proxy in front of Redis that can go away and come back on the same port, as a
    restarted Redis does, without touching the Redis other tests share."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.mark.skipif(REDIS_URL is None, reason="HUB_TEST_REDIS_URL is not set")
async def test_subscriptions_come_back_after_redis_was_away_for_a_while() -> None:
    assert REDIS_URL is not None
    target = urlsplit(REDIS_URL)
    outage = Outage((target.hostname or "127.0.0.1", target.port or 6379))
    await outage.up()
    proxied = Redis.from_url(f"redis://127.0.0.1:{outage.port}{target.path}")
    direct = Redis.from_url(REDIS_URL)
    listener = RedisBus(proxied, timeout=2.0, prefix=PREFIX)
    publisher = RedisBus(direct, timeout=2.0, prefix=PREFIX)
    try:
        before, after = Inbox(), Inbox()
        await _subscribed(listener, slot_channel(3), before)
        await _until_heard(publisher, slot_channel(3), before)
        await outage.down()
        # The reader notices, waits 0.5 s and resubscribes: refused, Redis is still away.
        await asyncio.sleep(1.5)
        await outage.up()
        await listener.subscribe(slot_channel(4), after)  # a new watcher meanwhile, too
        before.messages.clear()
        await _until_heard(publisher, slot_channel(3), before)
        await _until_heard(publisher, slot_channel(4), after)
    finally:
        await listener.close()
        await publisher.close()
        await proxied.aclose()
        await direct.aclose()
        await outage.down()


async def _move_slot(client: RedisCluster, key: str) -> None:
    """Hand the hash slot of `key` to another primary, as resharding or a failover does."""
    slot = client.keyslot(key)
    source = client.get_node_from_key(key)
    target = next(node for node in client.get_primaries() if node.name != source.name)
    ids = {}
    for node in (source, target):
        ids[node.name] = (
            await client.execute_command("CLUSTER", "MYID", target_nodes=node)
        ).decode()
    await client.execute_command(
        "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.name], target_nodes=target
    )
    await client.execute_command(
        "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.name], target_nodes=source
    )
    for node in client.get_primaries():  # no keys live in the slot: hand it over at once
        await client.execute_command(
            "CLUSTER", "SETSLOT", slot, "NODE", ids[target.name], target_nodes=node
        )
    await client.nodes_manager.initialize()


async def test_a_channel_whose_slot_moves_to_another_shard_is_heard_again(
    buses: tuple[Bus, Bus, Any],
) -> None:
    listener, publisher, client = buses
    if not isinstance(client, RedisCluster):
        pytest.skip("a Redis Cluster moves slots")
    inbox = Inbox()
    await _subscribed(listener, slot_channel(5), inbox)
    await _until_heard(publisher, slot_channel(5), inbox)
    await _move_slot(client, PREFIX + "doctor:5:slots")
    inbox.messages.clear()
    await _until_heard(publisher, slot_channel(5), inbox)


async def test_a_channel_rejoined_after_a_failed_unsubscribe_is_heard_again_after_a_move(
    buses: tuple[Bus, Bus, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unsubscribe that failed left its channel counted as leaving: when Redis later
    dropped the rejoined channel (its slot moved), the drop was taken for that unsubscribe's
    confirmation and the channel was never subscribed again."""
    listener, publisher, client = buses
    if not isinstance(client, RedisCluster) or not isinstance(listener, RedisBus):
        pytest.skip("a Redis Cluster moves slots")
    first, second = Inbox(), Inbox()
    await _subscribed(listener, slot_channel(6), first)
    pubsub = listener._pubsub
    assert pubsub is not None

    async def timed_out(*_: Any) -> None:
        raise TimeoutError

    monkeypatch.setattr(pubsub, "sunsubscribe", timed_out)
    await listener.unsubscribe(slot_channel(6), first)  # never reached Redis
    monkeypatch.undo()
    await _subscribed(listener, slot_channel(6), second)
    await _until_heard(publisher, slot_channel(6), second)
    await _move_slot(client, PREFIX + "doctor:6:slots")
    second.messages.clear()
    await _until_heard(publisher, slot_channel(6), second)


@pytest.mark.skipif("cluster" not in REDIS_KINDS, reason="needs the test Redis Cluster")
async def test_subscribing_on_a_new_shard_while_reading_loses_nothing(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A viewer of a doctor on another shard arrives while the reader waits on the first one:
    # redis-py adds that shard's connection before connecting it, and a read in between used
    # to fail, drop every subscription and lose what was published meanwhile.
    client = async_redis("cluster")
    assert isinstance(client, RedisCluster)
    await client.initialize()
    by_shard: dict[str, str] = {}
    for doctor in range(1, DOCTORS + 1):
        key = PREFIX + slot_channel(doctor)
        by_shard.setdefault(client.get_node_from_key(key).name, slot_channel(doctor))
    channels = list(by_shard.values())
    assert len(channels) == 3
    connect = Connection.connect

    async def slow_connect(self: Connection) -> None:  # as on a loaded machine or a far shard
        await asyncio.sleep(0.1)
        await connect(self)

    monkeypatch.setattr(Connection, "connect", slow_connect)
    try:
        for _ in range(3):
            bus = RedisBus(client, timeout=2.0, prefix=PREFIX)
            inboxes = [Inbox() for _ in channels]
            try:
                for channel, inbox in zip(channels, inboxes, strict=True):
                    await bus.subscribe(channel, inbox)
                    await asyncio.sleep(0.01)  # the reader is waiting on the shards it has
                await asyncio.sleep(0.1)
                for n, channel in enumerate(channels):
                    await bus.publish(channel, {"n": n})
                for n, inbox in enumerate(inboxes):
                    assert await inbox.until(1) == [{"n": n}]
            finally:
                await bus.close()
    finally:
        await client.aclose()
    assert "bus reader lost Redis" not in caplog.text
