from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from itertools import count
from typing import Any

from pydantic import TypeAdapter
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from hub import events, protocol
from hub.api.schedules import calendar_view, window
from hub.auth import Principal, Role
from hub.bus import Message, slot_channel
from hub.errors import HubError, InvalidInput, NotOffered, Unauthenticated
from hub.protocol import Close
from hub.runtime import Hub
from hub.schemas import AppointmentOut, UTCInstant

log = logging.getLogger("hub.ws")
AUTH_TIMEOUT = 5.0
# Queued frames per connection before a slow reader is closed (1013): room for a full replay.
MAX_PENDING = 2 * events.KEEP + 100
MAX_WATCHED = 20  # doctors per connection
MAX_CONNECTIONS = 10  # per user, per process
RATE = 20.0  # commands per second, sustained
BURST = 40.0
REFUSALS_BEFORE_CLOSE = 20
START = TypeAdapter[datetime](UTCInstant)


class TooSlow(Exception):
    """The client reads too slowly: its queue overflowed."""


class Session:
    """One authenticated WebSocket: a reader serving commands and a writer draining a bounded
    queue in one task group; events reach it through bus sinks, never through the services."""

    def __init__(self, hub: Hub, websocket: WebSocket, principal: Principal, expires: int) -> None:
        self.hub = hub
        self.websocket = websocket
        self.principal = principal
        self.expires = expires
        self.pending: dict[object, Message] = {}  # insertion-ordered; slot events collapse
        self.wake = asyncio.Event()
        self.serial = count()
        self.watched: dict[int, int | None] = {}  # doctor -> last version sent (None: syncing)
        self.held_back: dict[int, list[Message]] = {}  # events that arrived while syncing
        self.windows: dict[int, tuple[str, str]] = {}  # what each watch asked for
        self.repairs: set[asyncio.Task[None]] = set()
        self.overflow = asyncio.Event()  # set when the queue overflows: the session ends
        self.allowance = BURST
        self.checked = time.monotonic()
        self.refusals = 0
        self.feed = events.feed_channel(principal.role.value, principal.id)

    # -- outgoing ------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        if self.overflow.is_set():
            return  # the session is ending with 1013; the client resyncs when it returns
        key: object = next(self.serial)
        if message.get("type") == "slot":  # an `hours` event is never collapsed
            key = ("slot", message["doctor_id"], message["start"])
            if key in self.pending:
                # A newer state of a slot the reader has not taken yet replaces it in place,
                # marked: the client applies it and takes its version as the newest seen.
                message = {**message, "collapsed": True}
        self.pending[key] = message
        if len(self.pending) > MAX_PENDING:
            self.pending.clear()  # memory stays bounded; the client resyncs when it returns
            self.overflow.set()
        self.wake.set()

    async def writer(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                key = next(iter(self.pending))
                message = self.pending.pop(key)
                await self.websocket.send_text(protocol.dump(message))

    async def watchdog(self) -> None:
        # The writer may be blocked on a full socket, so the overflow is watched apart.
        await self.overflow.wait()
        raise TooSlow()

    # -- bus sinks -----------------------------------------------------------------------

    def on_slot(self, message: Message) -> None:
        doctor_id, version = int(message["doctor_id"]), int(message["version"])
        if doctor_id not in self.watched:
            return
        last = self.watched[doctor_id]
        if last is None:
            self.held_back.setdefault(doctor_id, []).append(message)
        elif version == last + 1:
            self.watched[doctor_id] = version
            self.send(message)
        elif version > last + 1:  # pub/sub lost something: fetch what is missing, in order
            self.watched[doctor_id] = None
            self.held_back[doctor_id] = [message]
            self._spawn(self._catch_up(doctor_id, last))

    def on_feed(self, message: Message) -> None:
        self.send(message)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.repairs.add(task)
        task.add_done_callback(self.repairs.discard)

    async def _catch_up(self, doctor_id: int, since: int) -> None:
        missed = await events.replay(self.hub.sessions, doctor_id, since)
        if missed is None:
            snapshot = await self._snapshot(doctor_id)
            self.send(snapshot)
            self._release_held_back(doctor_id, snapshot["version"])
        else:
            for message in missed:
                self.send(message)
            since = missed[-1]["version"] if missed else since
            self._release_held_back(doctor_id, since)

    def _release_held_back(self, doctor_id: int, version: int) -> None:
        for message in self.held_back.pop(doctor_id, []):
            if message["version"] == version + 1:
                self.send(message)
                version += 1
        self.watched[doctor_id] = version

    # -- commands ------------------------------------------------------------------------

    async def reader(self) -> None:
        metrics = self.hub.metrics
        while True:
            text = await self.websocket.receive_text()
            if not self._allowed():
                self.refusals += 1
                metrics.errors.labels("ws", "rate_limited").inc()
                if self.refusals > REFUSALS_BEFORE_CLOSE:
                    await _close(self.websocket, Close.RATE_LIMITED, "rate limited")
                    return
                self.send({"type": "error", "code": "rate_limited", "message": "slow down"})
                continue
            self.refusals = 0
            ref: Any = None
            kind, outcome, started = "unparsed", "ok", time.perf_counter()
            try:
                command = protocol.parse(text)
                kind, ref = command["type"], command.get("ref")
                reply = await self.serve(command)
            except HubError as exc:
                ref = ref if ref is not None else _raw_ref(text)
                reply = {"type": "error", "code": exc.code, "message": exc.detail}
                if isinstance(exc, InvalidInput) and exc.fields:
                    reply["fields"] = exc.fields
                if isinstance(exc, NotOffered):
                    reply["reason"] = exc.reason
                outcome = exc.code
            except Exception:  # never a bare 1006: log it, answer it, keep the connection
                log.exception("command failed")
                reply = {"type": "error", "code": "internal", "message": "internal error"}
                outcome = "internal"
            if _cancelling():  # a library turned our cancellation into an error: stop anyway
                raise asyncio.CancelledError
            metrics.commands.labels(kind, outcome).observe(time.perf_counter() - started)
            if outcome != "ok":
                metrics.errors.labels("ws", outcome).inc()
            if reply is None:
                continue
            if ref is not None:
                reply["ref"] = ref
            self.send(reply)

    def _allowed(self) -> bool:
        now = time.monotonic()
        self.allowance = min(BURST, self.allowance + (now - self.checked) * RATE)
        self.checked = now
        if self.allowance < 1:
            return False
        self.allowance -= 1
        return True

    async def serve(self, command: dict[str, Any]) -> Message | None:
        kind = command["type"]
        handler: Callable[[dict[str, Any]], Awaitable[Message | None]] = getattr(self, f"do_{kind}")
        return await handler(command)

    async def do_auth(self, command: dict[str, Any]) -> Message | None:
        principal, expires = self.hub.tokens.decode(command["token"])
        if principal != self.principal:
            raise Unauthenticated("a session keeps its user: open a new connection")
        self.expires = expires
        return {"type": "ready", "user": _user(principal), "expires_at": _iso(expires)}

    async def do_ping(self, command: dict[str, Any]) -> Message:
        return {"type": "pong"}

    async def do_watch(self, command: dict[str, Any]) -> Message | None:
        doctor_id, first, last = command["doctor_id"], command["from"], command["to"]
        fresh = doctor_id not in self.watched
        if fresh and len(self.watched) >= MAX_WATCHED:
            raise InvalidInput(f"at most {MAX_WATCHED} doctors per connection")
        window(first, last)  # refuse a bad range before anything changes
        before, before_window = self.watched.get(doctor_id), self.windows.get(doctor_id)
        self.watched[doctor_id] = None
        self.windows[doctor_id] = (first, last)
        try:
            await self.hub.bus.subscribe(slot_channel(doctor_id), self.on_slot)
            await self._sync(doctor_id, command.get("since"), command.get("ref"))
        except BaseException:
            if fresh:  # as if it never happened
                self.watched.pop(doctor_id, None)
                self.windows.pop(doctor_id, None)
                self.held_back.pop(doctor_id, None)
                await self.hub.bus.unsubscribe(slot_channel(doctor_id), self.on_slot)
            elif before is not None and before_window is not None:  # keep the watch it had
                self.windows[doctor_id] = before_window
                self._release_held_back(doctor_id, before)
            raise
        return None

    async def _sync(self, doctor_id: int, since: int | None, ref: Any) -> None:
        missed = None if since is None else await events.replay(self.hub.sessions, doctor_id, since)
        if missed is None or since is None:
            snapshot = await self._snapshot(doctor_id)
            if ref is not None:
                snapshot["ref"] = ref
            self.send(snapshot)  # first, then what arrived while it was being built
            self._release_held_back(doctor_id, snapshot["version"])
            return
        for message in missed:
            self.send(message)
        version = missed[-1]["version"] if missed else since
        reply = {"type": "resynced", "doctor_id": doctor_id, "version": version}
        if ref is not None:
            reply["ref"] = ref
        self.send(reply)
        self._release_held_back(doctor_id, version)

    async def _snapshot(self, doctor_id: int) -> Message:
        # The version is read before the slots: an event that lands in between is both in
        # the slots and sent after, which is harmless; the other order would lose it.
        async with self.hub.sessions() as session:
            version = await events.current_version(session, doctor_id)
        first, last = self.windows[doctor_id]
        view = await calendar_view(self.hub, self.principal, doctor_id, first, last)
        return {
            "type": "snapshot",
            "doctor_id": doctor_id,
            "version": version,
            **view.model_dump(mode="json", exclude={"doctor_id"}),
        }

    async def do_unwatch(self, command: dict[str, Any]) -> Message:
        doctor_id = command["doctor_id"]
        self.watched.pop(doctor_id, None)
        self.held_back.pop(doctor_id, None)
        self.windows.pop(doctor_id, None)
        await self.hub.bus.unsubscribe(slot_channel(doctor_id), self.on_slot)
        return {"type": "unwatched", "doctor_id": doctor_id}

    async def do_hold(self, command: dict[str, Any]) -> Message:
        hold = await self.hub.booking.hold(
            self.principal, command["doctor_id"], _start(command["start"])
        )
        return {
            "type": "held",
            "hold_id": hold.id,
            "doctor_id": hold.doctor_id,
            "start": events.utc_text(hold.start),
            "expires_at": events.utc_text(hold.expires_at) if hold.expires_at else None,
        }

    async def do_release(self, command: dict[str, Any]) -> Message:
        await self.hub.booking.release(self.principal, command["hold_id"])
        return {"type": "released", "hold_id": command["hold_id"]}

    async def do_book(self, command: dict[str, Any]) -> Message:
        start = command.get("start")
        row, replayed = await self.hub.booking.book(
            self.principal,
            command.get("doctor_id"),
            None if start is None else _start(start),
            hold_id=command.get("hold_id"),
            idempotency_key=command.get("idempotency_key"),
        )
        return {"type": "booked", "replayed": replayed, "appointment": _appointment(row)}

    async def do_cancel(self, command: dict[str, Any]) -> Message:
        row = await self.hub.lifecycle.cancel(
            self.principal, command["appointment_id"], command.get("reason")
        )
        return {"type": "cancelled", "appointment": _appointment(row)}

    async def do_reschedule(self, command: dict[str, Any]) -> Message:
        start, hold_id = command.get("start"), command.get("hold_id")
        if (start is None) == (hold_id is None):
            raise InvalidInput("give exactly one of start and hold_id")
        row = await self.hub.booking.reschedule(
            self.principal,
            command["appointment_id"],
            None if start is None else _start(start),
            hold_id,
        )
        return {"type": "rescheduled", "appointment": _appointment(row)}

    async def expiry(self) -> None:
        while True:
            left = self.expires - time.time()
            if left <= 0:
                await _close(self.websocket, Close.UNAUTHENTICATED, "token expired")
                return
            await asyncio.sleep(min(left, 30))

    async def close_subscriptions(self) -> None:
        for task in self.repairs:
            task.cancel()
        for doctor_id in list(self.watched):
            await self.hub.bus.unsubscribe(slot_channel(doctor_id), self.on_slot)
        await self.hub.bus.unsubscribe(self.feed, self.on_feed)


async def _close(websocket: WebSocket, code: int, reason: str = "") -> None:
    hub: Hub = websocket.app.state.hub
    hub.metrics.closes.labels(str(code)).inc()
    await websocket.close(code, reason)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _raw_ref(text: str) -> str | None:
    # A command that failed to parse still gets its ref back when one can be read.
    try:
        ref = json.loads(text).get("ref")
    except (ValueError, AttributeError):
        return None
    return ref if isinstance(ref, str) and len(ref) <= 64 else None


def _start(text: str) -> datetime:
    try:
        return START.validate_python(text)
    except Exception as exc:
        raise InvalidInput(
            "start must be an ISO 8601 time with an offset",
            [{"field": "start", "message": "ISO 8601 with Z or an offset"}],
        ) from exc


def _iso(epoch: int) -> str:
    return events.utc_text(datetime.fromtimestamp(epoch, UTC))


def _user(principal: Principal) -> dict[str, Any]:
    return {"role": principal.role.value, "id": principal.id}


def _appointment(row: Any) -> dict[str, Any]:
    return AppointmentOut.model_validate(row).model_dump(mode="json")


def _origin_allowed(websocket: WebSocket, allowed: tuple[str, ...]) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:  # not a browser: scripts and services carry a token instead
        return True
    host = websocket.headers.get("host", "")
    same = origin.split("://", 1)[-1] == host
    return same or origin in allowed


class Registry:
    """The open sessions of this process, by user, to cap connections per user."""

    def __init__(self) -> None:
        self.by_user: dict[Principal, set[Session]] = {}

    def add(self, session: Session) -> bool:
        sessions = self.by_user.setdefault(session.principal, set())
        if len(sessions) >= MAX_CONNECTIONS:
            return False
        sessions.add(session)
        return True

    def remove(self, session: Session) -> None:
        sessions = self.by_user.get(session.principal)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self.by_user[session.principal]


async def endpoint(websocket: WebSocket) -> None:
    """`/ws`: check the origin before accepting, authenticate with the first message, then
    serve commands and forward events until either side ends."""
    hub: Hub = websocket.app.state.hub
    registry: Registry = websocket.app.state.ws_sessions
    if not _origin_allowed(websocket, hub.settings.allowed_origins):
        await _close(websocket, Close.POLICY)  # before accept: the handshake is refused (403)
        return
    await websocket.accept()
    try:
        session = await _authenticate(hub, websocket)
        if session is None:
            return
        if not registry.add(session):
            await _close(websocket, Close.RATE_LIMITED, "too many connections for this user")
            return
        hub.metrics.sessions.inc()
        try:
            await _run(session)
        finally:
            hub.metrics.sessions.dec()
            registry.remove(session)
            await session.close_subscriptions()
    except WebSocketDisconnect:
        return
    except Exception:  # never let one escape: the client would see a bare 1006
        log.exception("WebSocket session failed")
        if websocket.application_state is not WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await _close(websocket, 1011, "internal error")


async def _authenticate(hub: Hub, websocket: WebSocket) -> Session | None:
    try:
        async with asyncio.timeout(AUTH_TIMEOUT):
            text = await websocket.receive_text()
    except TimeoutError:
        await _close(websocket, Close.AUTH_TIMEOUT, "authenticate first")
        return None
    try:
        command = protocol.parse(text)
        if command["type"] != "auth":
            raise Unauthenticated("the first message must be auth")
        principal, expires = hub.tokens.decode(command["token"])
    except HubError as exc:
        await _close(websocket, Close.UNAUTHENTICATED, exc.detail[:120])
        return None
    session = Session(hub, websocket, principal, expires)
    ready = {"type": "ready", "user": _user(principal), "expires_at": _iso(expires)}
    if command.get("ref") is not None:
        ready["ref"] = command["ref"]
    await websocket.send_text(protocol.dump(ready))
    if principal.role is not Role.admin:
        await hub.bus.subscribe(session.feed, session.on_feed)
    return session


async def _run(session: Session) -> None:
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(session.reader()),
                group.create_task(session.writer()),
                group.create_task(session.expiry()),
                group.create_task(session.watchdog()),
            ]
            # When one ends (the peer left, the token expired), stop the others.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
    except* WebSocketDisconnect:
        pass
    except* TooSlow:
        # The close frame waits behind what the client has not read; give it a moment.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await _close(session.websocket, Close.TRY_AGAIN_LATER, "too slow: resync")
