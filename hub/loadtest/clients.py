from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from hub.loadtest.stats import Tally

TIMEOUT = 60.0
KEEPALIVE = 4.0  # seconds; uvicorn closes idle connections after 5
EventHandler = Callable[[dict[str, Any], float], None]
# A frame longer than this (a snapshot: 34 KB for a day of 5-minute slots) is read for its
# type and ref alone, which is all the scenarios read of a reply: parsing it whole took 0.2
# ms a viewer (timeit), json.loads a quarter of a load process's samples in a 5,000-viewer
# storm (py-spy).
LONG = 4096
_TYPE = re.compile(r'\{"type":"([a-z_]+)",')  # the hub writes a frame's type first...
_REF = re.compile(r',"ref":("[^"\\]*")\}\Z')  # ...and a reply's ref last (hub.ws.frames)


def message_of(frame: str | bytes) -> dict[str, Any]:
    """The message of a frame: a long frame of the hub's shape as its type, its ref and its
    length (`size`); any other frame whole."""
    if len(frame) > LONG and isinstance(frame, str):
        kind, ref = _TYPE.match(frame), _REF.search(frame, len(frame) - 256)
        if kind is not None and kind.group(1) != "error" and ref is not None:
            return {"type": kind.group(1), "ref": json.loads(ref.group(1)), "size": len(frame)}
    message: dict[str, Any] = json.loads(frame)
    return message


@dataclass(frozen=True, slots=True)
class Answer:
    """A REST answer: status 0 and the exception's name in `body` when none came."""

    status: int
    body: Any

    @property
    def outcome(self) -> str:
        if self.status == 0:
            return f"error {self.body}"
        code = self.body.get("error") if isinstance(self.body, dict) else None
        return f"{self.status} {code}" if code else str(self.status)


class Api:
    """The hub's REST API over one aiohttp session with an unbounded connection pool."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session = session
        self.url = url.rstrip("/")

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[Api]:
        # Idle connections go before uvicorn's 5 s keep-alive closes them: reusing one the
        # server is closing fails the request (ServerDisconnectedError) through no fault of
        # the hub's.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE)
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            yield cls(session, url)

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        form: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            async with self._session.request(
                method, self.url + path, json=body, data=form, params=params, headers=headers
            ) as response:
                text = await response.text()
                data = json.loads(text) if text and response.content_type.endswith("json") else text
                return Answer(response.status, data)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Answer(0, type(exc).__name__)

    async def timed(self, tally: Tally, op: str, method: str, path: str, **kw: Any) -> Answer:
        """`call`, recording its latency and outcome under `op`."""
        start = time.time()
        began = time.perf_counter()
        answer = await self.call(method, path, **kw)
        tally.record(op, start, time.perf_counter() - began, answer.outcome)
        return answer

    async def warm(self, connections: int) -> None:
        """Open `connections` pooled connections before a burst, so the burst is requests
        and not TCP handshakes."""
        await asyncio.gather(*(self.call("GET", "/specializations/") for _ in range(connections)))

    async def text(self, path: str) -> str | None:
        answer = await self.call("GET", path)
        return answer.body if answer.status == 200 and isinstance(answer.body, str) else None


class Closed(Exception):
    """The connection closed (or never opened): `code` says how (1006: no close frame)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed {code} {reason}".strip())
        self.code = code


def ws_url(url: str) -> str:
    return url.replace("http", "ws", 1).rstrip("/") + "/ws"


class Session:
    """One authenticated /ws connection: commands answered by `ref`, other messages to
    `on_event`, and the close code when the server (not we) ended it."""

    def __init__(self, websocket: ClientConnection, on_event: EventHandler | None) -> None:
        self._websocket = websocket
        self._on_event = on_event
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refs = itertools.count(1)
        self._closing = False
        self.close_code: int | None = None  # set when the server closed or the link broke
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls, url: str, token: str, on_event: EventHandler | None = None, *, limit: float = 30
    ) -> Session:
        """Connect to `url`'s /ws and authenticate; Closed if refused."""
        try:
            websocket = await connect(
                ws_url(url),
                compression=None,
                # The hub it is pointed at, never a proxy: looking one up in the environment
                # cost 94 us a connection (timeit), half a second of a 5,000-viewer storm.
                proxy=None,
                max_size=None,
                ping_interval=None,
                open_timeout=limit,
                close_timeout=5,
            )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise Closed(1006, type(exc).__name__) from exc
        session = cls(websocket, on_event)
        try:
            await session.ask({"type": "auth", "token": token}, limit=limit)
        except BaseException:
            await session.close()
            raise
        return session

    async def ask(self, command: dict[str, Any], *, limit: float = 30) -> dict[str, Any]:
        """Send a command and return its reply; Closed if the connection ends first,
        RuntimeError for an `error` reply."""
        ref = f"r{next(self._refs)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await self._websocket.send(json.dumps({**command, "ref": ref}))
            async with asyncio.timeout(limit):
                reply = await future
        except ConnectionClosed as exc:
            raise Closed(self._code(exc)) from exc
        finally:
            self._pending.pop(ref, None)
        if reply.get("type") == "error":
            raise RuntimeError(reply.get("code", "error"))
        return reply

    async def watch(self, doctor_id: int, first: str, last: str) -> dict[str, Any]:
        """Watch a doctor's days: the snapshot's type, ref and size (`message_of`)."""
        return await self.ask({"type": "watch", "doctor_id": doctor_id, "from": first, "to": last})

    async def close(self) -> None:
        self._closing = True
        with contextlib.suppress(Exception):
            await self._websocket.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def _read(self) -> None:
        try:
            async for frame in self._websocket:
                arrival = time.time()
                message = message_of(frame)
                future = self._pending.get(message.get("ref", ""))
                if future is not None and not future.done():
                    future.set_result(message)
                elif self._on_event is not None:
                    self._on_event(message, arrival)
        except ConnectionClosed as exc:
            if not self._closing:
                self.close_code = self._code(exc)
        if not self._closing and self.close_code is None:
            self.close_code = self._code(None)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Closed(self.close_code or 1006))

    def _code(self, exc: ConnectionClosed | None) -> int:
        received = exc.rcvd if exc is not None else self._websocket.protocol.close_rcvd
        return received.code if received is not None else 1006


def count_close(tally: Tally, session: Session | None, error: BaseException | None = None) -> None:
    """Count how a session ended, by code, unless we closed it ourselves."""
    code = session.close_code if session is not None else None
    if isinstance(error, Closed):
        code = error.code
    if code is not None:
        tally.closes[str(code)] += 1
