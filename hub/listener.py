"""The hub's HTTP/1.1 protocol: uvicorn's httptools protocol (llhttp's parser, in C: a
booking's hub CPU 8.65-8.89 -> 7.76-7.95 ms against uvicorn's h11 protocol, whose parser is
Python), with two limits a socket that never speaks cannot get around.

- **Time to a request.** A connection must deliver a request's complete headers (HTTP or the
  WebSocket handshake) within `header_timeout` seconds of opening, and again of each answer
  while it is kept alive, or it is closed. uvicorn's keep-alive timeout stops as soon as one
  byte arrives, so one header byte per minute held a socket forever (1,000 idle and 20
  slow-header sockets were still open after 80 s; 20,000 used up the file descriptors and
  every request timed out).
- **Sockets per address.** At most `max_per_address` connections still before their request
  (or between requests) from one peer address; past that a new one is closed at once. A trusted
  proxy's address is exempt (it carries everyone), and WebSocket sessions, which have
  their own caps, stop counting once upgraded.
- **Size of a request's head.** At most `max_head` bytes before its headers are complete, or
  431 and the socket closed: llhttp keeps no limit of its own (httptools gathers a header
  value for as long as it comes; h11 stopped at 16 KiB), so one header line sent for its ten
  seconds was gigabytes of memory.

And its WebSocket protocol, `Session`: uvicorn's websockets sans-I/O protocol with less kept
per session (an idle session is held by the thousand): its incoming queue and writable flag
without asyncio's deques, and the handshake's request and response let go once accepted.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Generic, TypeVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from hub.protocol import WRITE_NOW

T = TypeVar("T")

# Every process's count of sockets waiting for a request, by peer address.
_waiting: Counter[str] = Counter()


class HeadTooLarge(Exception):
    """A request's head past `Listener.max_head`."""


class Listener(HttpToolsProtocol):
    # One configuration per process, set at start-up (`hub.__main__.listener`): uvicorn
    # builds the protocol from its class, in every worker.
    header_timeout = 10.0  # HUB_HEADER_TIMEOUT
    max_per_address = 64  # HUB_MAX_SOCKETS_PER_ADDRESS
    trusted: frozenset[str] = frozenset({"127.0.0.1"})  # FORWARDED_ALLOW_IPS, as uvicorn's
    max_head = 16 * 1024  # as h11's default, which uvicorn's h11 protocol kept

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None  # set while a request's head is due
        self._head = 0  # bytes received since it was set
        self._counted: str | None = None
        self._answered: object = None  # the request cycle the deadline was disarmed for

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if address is not None and address not in self.trusted:
            if _waiting[address] >= self.max_per_address:
                transport.abort()
                return
            _waiting[address] += 1
            self._counted = address
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._uncount()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is not None:
            self._head += len(data)
        super().data_received(data)
        # Still waiting for the head after all of it: every byte counted belongs to the head
        # (a body sent with its headers is counted only while they are incomplete).
        if self._deadline is not None and self._head > self.max_head:
            self._refuse_head()

    def send_400_response(self, msg: str) -> None:
        if self._head > self.max_head:  # what on_headers_complete stopped the parser for
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def _refuse_head(self) -> None:
        self._disarm()
        message = b"request head too large"
        self.transport.write(
            STATUS_LINE[431]
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(message)
            + message
        )
        self.transport.close()

    def on_headers_complete(self) -> None:
        # A whole head that came in one read: measured once it is parsed.
        if len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) > self.max_head:
            self._head = self.max_head + 1
            raise HeadTooLarge  # the parser stops; uvicorn answers through send_400_response
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not self._answered:
            self._answered = self.cycle  # a request's headers arrived: it is served now
            self._disarm()
            self._uncount()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        self._uncount()  # the WebSocket protocol owns the socket from here
        super().handle_websocket_upgrade()
        # Let go of the parser (it holds this protocol, which holds it): freed now, not by a
        # later garbage collection, and with it the request's headers.
        self.parser = None  # type: ignore[assignment]
        self.headers = self.scope = None  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # kept alive: the next request's headers are due in time too
            if self.client and self.client[0] not in self.trusted and self._counted is None:
                _waiting[self.client[0]] += 1
                self._counted = self.client[0]

    def _arm(self) -> None:
        self._disarm()
        self._head = 0
        self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _uncount(self) -> None:
        if self._counted is not None:
            _waiting[self._counted] -= 1
            if _waiting[self._counted] <= 0:
                del _waiting[self._counted]
            self._counted = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class _Waiters:
    """Futures of whoever waits, kept only while someone does (a list, or None)."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] | None = None

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None

    def _wake(self, *, every: bool) -> None:
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)
                if not every:
                    return


class Inbox(_Waiters, Generic[T]):
    """What uvicorn's protocol uses of `asyncio.Queue` (`put_nowait`, `get`, `empty`,
    `qsize`), unbounded, FIFO, without the queue's four deques (~3 KiB a session): a list,
    and a future only while someone waits. An item put while its getter is being cancelled
    stays for the next `get`."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        super().__init__()
        self._items: list[T] = []

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        self._wake(every=False)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> T:
        while not self._items:
            try:
                await self._wait()
            finally:
                if self._items:  # woken, then cancelled: the item is the next getter's
                    self._wake(every=False)
        return self._items.pop(0)


class Flag(_Waiters):
    """`asyncio.Event` as uvicorn's protocol uses it (`set`, `clear`, `is_set`, `wait`)
    without the event's deque (~0.8 KiB a session): a future only while someone waits."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        super().__init__()
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        self._wake(every=True)
        self._waiters = None

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if not self._set:
            await self._wait()
        return True


class Session(WebSocketsSansIOProtocol):
    """uvicorn's websockets sans-I/O protocol (what `--ws auto` picks), leaner per session.

    This subclass takes from it what an idle session keeps for nothing (measured with
    `python -m hub.loadtest idle -c 3000`, one worker: 30.4 -> 21.8 KiB a session; the other
    implementations' figures are at `hub.__main__.WEBSOCKET_OPTIONS`): asyncio's queue and
    event (their deques), and the handshake's parsed request and response (their headers),
    which uvicorn never reads again once the session is accepted (the scope's copy of the
    headers is let go by `hub.ws.endpoint` once the client is authenticated)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        writable = Flag()
        if self.writable.is_set():  # it starts set: the socket takes writes
            writable.set()
        self.writable = writable  # type: ignore[assignment]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the handshake was accepted: the app is called with this
            scope["extensions"][WRITE_NOW] = self.write_now

    def write_now(self, text: str) -> bool:
        """Send a text frame from a callback, without the ASGI send's round of awaits (a
        fan-out writes one event to thousands of sessions, as websockets' `broadcast` does):
        False, and nothing sent, unless the session is open and its socket takes writes
        without waiting; the app then sends it the ASGI way."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        try:
            self.conn.send_text(text.encode())
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    def start_keepalive(self) -> None:
        # Called once the 101 response is written: the handshake is over. The request stays
        # referenced by the websockets parser (a local of its generator, for the session's
        # life), so its headers are emptied rather than only dropped here.
        super().start_keepalive()
        request = self.__dict__.pop("request", None)
        if request is not None:
            request.headers.clear()
        self.__dict__.pop("response", None)
