"""The hub's HTTP/1.1 protocol: uvicorn's h11 protocol, with two limits a socket that never
speaks cannot get around.

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
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

# Every process's count of sockets waiting for a request, by peer address.
_waiting: Counter[str] = Counter()


class Listener(H11Protocol):
    # One configuration per process, set at start-up (`hub.__main__.listener`): uvicorn
    # builds the protocol from its class, in every worker.
    header_timeout = 10.0  # HUB_HEADER_TIMEOUT
    max_per_address = 64  # HUB_MAX_SOCKETS_PER_ADDRESS
    trusted: frozenset[str] = frozenset({"127.0.0.1"})  # FORWARDED_ALLOW_IPS, as uvicorn's

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
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

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._answered:
            self._answered = self.cycle  # a request's headers arrived: it is served now
            self._disarm()
            self._uncount()

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._disarm()
        self._uncount()  # the WebSocket protocol owns the socket from here
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # kept alive: the next request's headers are due in time too
            if self.client and self.client[0] not in self.trusted and self._counted is None:
                _waiting[self.client[0]] += 1
                self._counted = self.client[0]

    def _arm(self) -> None:
        self._disarm()
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
