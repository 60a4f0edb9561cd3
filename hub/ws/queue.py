from __future__ import annotations

from collections.abc import Awaitable, Callable

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
    previous state the reader has not taken yet replaces it in place, marked `collapsed`.

    It holds no task and no event of its own (an idle session is mostly this and its socket):
    `on_frame` is called when a frame is queued, so the connection can start a writer that
    `flush`es and ends once the queue is empty, and `on_overflow` once, when the queue
    overflows, so the connection can end at once even while a writer is stuck on a full
    socket."""

    __slots__ = (
        "_bytes",
        "_limit",
        "_limit_bytes",
        "_overflowed",
        "_pending",
        "_serial",
        "on_frame",
        "on_overflow",
    )

    def __init__(
        self,
        limit: int = MAX_PENDING,
        limit_bytes: int = MAX_PENDING_BYTES,
        on_frame: Callable[[], None] | None = None,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self._limit = limit
        self._limit_bytes = limit_bytes
        self._pending: dict[object, str] = {}  # frames as sent, insertion-ordered
        self._bytes = 0
        self._serial = 0
        self._overflowed = False
        self.on_frame = on_frame
        self.on_overflow = on_overflow

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def overflowed(self) -> bool:
        """The queue overflowed: the connection is ending with 1013 and takes no more."""
        return self._overflowed

    def put(self, message: ServerMessage, frame: str | None = None) -> None:
        """Queue a message; `frame` is its text where the caller has it already."""
        if self._overflowed:
            return  # the connection is ending with 1013; the client resyncs when it returns
        key: object
        if message["type"] == "slot":  # an `hours` event is never collapsed
            key = ("slot", message["doctor_id"], message["start"])
            if key in self._pending:
                # The client applies it and takes its version as the newest seen.
                message = {**message, "collapsed": True}
                frame = None
        else:
            key = self._next_key()
        if frame is None:
            frame = protocol.dump(message)
        self._add(key, frame)

    def put_text(self, frame: str) -> None:
        """Queue a message already serialised (never a slot event: it is not collapsed)."""
        if not self._overflowed:
            self._add(self._next_key(), frame)

    def _next_key(self) -> int:
        self._serial += 1
        return self._serial

    def _add(self, key: object, frame: str) -> None:
        self._bytes += len(frame) - len(self._pending.get(key, ""))
        self._pending[key] = frame
        if len(self._pending) > self._limit or self._bytes > self._limit_bytes:
            self._pending.clear()  # memory stays bounded; the client resyncs when it returns
            self._bytes = 0
            self._overflowed = True
            if self.on_overflow is not None:
                self.on_overflow()
            return
        if self.on_frame is not None:
            self.on_frame()

    def send_now(self, write: Callable[[str], bool]) -> bool:
        """Send what is pending at once with `write`, which sends a frame or, refusing,
        sends nothing; True once the queue is empty, False when `write` refused (what is left
        is for `flush`)."""
        while self._pending:
            key = next(iter(self._pending))
            frame = self._pending[key]
            if not write(frame):
                return False
            del self._pending[key]
            self._bytes -= len(frame)
        return True

    async def flush(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Send what is pending, including what is queued meanwhile, until the queue is
        empty. A frame leaves the queue once it is sent, so one whose send was cancelled (the
        connection ending) is still there for a last flush."""
        while self._pending:
            key = next(iter(self._pending))
            frame = self._pending[key]
            await send(frame)
            if self._pending.get(key) is frame:  # not replaced by a newer state meanwhile
                del self._pending[key]
                self._bytes -= len(frame)
