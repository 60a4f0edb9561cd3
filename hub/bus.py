from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("hub.bus")

Message = dict[str, Any]


class Bus(Protocol):
    async def publish(self, channel: str, message: Message) -> None: ...


class RedisBus:
    """Publishes JSON messages on Redis pub/sub channels, so every hub process sees them."""

    def __init__(self, redis: Redis, timeout: float, prefix: str = "hub:") -> None:
        self._redis = redis
        self._timeout = timeout
        self._prefix = prefix

    async def publish(self, channel: str, message: Message) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.publish(self._prefix + channel, json.dumps(message))
        except (RedisError, TimeoutError, OSError) as exc:
            # The change is already committed; a lost event is recovered from the database.
            log.warning("publish on %s failed: %r", channel, exc)


class MemoryBus:
    """The in-process twin of RedisBus: bounded queues per subscriber, one process."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[Message]]] = {}

    def subscribe(self, channel: str, maxsize: int = 1000) -> asyncio.Queue[Message]:
        queue: asyncio.Queue[Message] = asyncio.Queue(maxsize)
        self._subscribers.setdefault(channel, set()).add(queue)
        return queue

    def unsubscribe(self, channel: str, queue: asyncio.Queue[Message]) -> None:
        queues = self._subscribers.get(channel)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._subscribers[channel]

    async def publish(self, channel: str, message: Message) -> None:
        for queue in self._subscribers.get(channel, ()):
            if queue.full():
                log.warning("subscriber on %s is full; event dropped", channel)
                continue
            queue.put_nowait(message)
