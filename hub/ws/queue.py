from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from itertools import count

from hub import events, protocol
from hub.protocol import ServerMessage

# Queued frames per connection before a slow reader is closed (1013): room for a full replay;
# and queued bytes, room for a few of the largest snapshots (31 days of 5-minute slots is
# about 1 MiB), so no client that stops reading can hold more of the hub's memory.
MAX_PENDING = 2 * events.KEEP + 100
MAX_PENDING_BYTES = 4 * 1024 * 1024


class TooSlow(Exception):
    """The client reads too slowly: its queue overflowed."""


class Outgoing:
    """A connection's outgoing frames, in order and bounded. A slot event for a slot whose
    previous state the reader has not taken yet replaces it in place, marked `collapsed`."""

    def __init__(self, limit: int = MAX_PENDING, limit_bytes: int = MAX_PENDING_BYTES) -> None:
        self._limit = limit
        self._limit_bytes = limit_bytes
        self._pending: dict[object, str] = {}  # frames as sent, insertion-ordered
        self._bytes = 0
        self._serial = count()
        self._wake = asyncio.Event()
        self._overflow = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, message: ServerMessage, frame: str | None = None) -> None:
        """Queue a message; `frame` is its text where the caller has it already."""
        if self._overflow.is_set():
            return  # the connection is ending with 1013; the client resyncs when it returns
        key: object = next(self._serial)
        if message["type"] == "slot":  # an `hours` event is never collapsed
            key = ("slot", message["doctor_id"], message["start"])
            if key in self._pending:
                # The client applies it and takes its version as the newest seen.
                message = {**message, "collapsed": True}
                frame = None
        if frame is None:
            frame = protocol.dump(message)
        self._add(key, frame)

    def put_text(self, frame: str) -> None:
        """Queue a message already serialised (never a slot event: it is not collapsed)."""
        if not self._overflow.is_set():
            self._add(next(self._serial), frame)

    def _add(self, key: object, frame: str) -> None:
        self._bytes += len(frame) - len(self._pending.get(key, ""))
        self._pending[key] = frame
        if len(self._pending) > self._limit or self._bytes > self._limit_bytes:
            self._pending.clear()  # memory stays bounded; the client resyncs when it returns
            self._bytes = 0
            self._overflow.set()
        self._wake.set()

    async def drain(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Send frames as they come, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush(send)

    async def flush(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Send what is pending now. A frame leaves the queue once it is sent, so one whose
        send was cancelled (the connection ending) is still there for a last flush."""
        while self._pending:
            key = next(iter(self._pending))
            frame = self._pending[key]
            await send(frame)
            if self._pending.get(key) is frame:  # not replaced by a newer state meanwhile
                del self._pending[key]
                self._bytes -= len(frame)

    async def overflowed(self) -> None:
        """Return once the queue has overflowed (the drain may be stuck on a full socket)."""
        await self._overflow.wait()
