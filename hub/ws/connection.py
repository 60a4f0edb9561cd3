from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine

from starlette.websockets import WebSocket, WebSocketDisconnect

from hub import access, events
from hub.auth import Principal
from hub.bus import slot_channel
from hub.calendar import Window
from hub.errors import Unauthenticated
from hub.protocol import WRITE_NOW, Close, Event, Resynced
from hub.runtime import Hub
from hub.state import State
from hub.ws import commands
from hub.ws.frames import FRAMES, SNAPSHOTS
from hub.ws.queue import Outgoing, TooSlow
from hub.ws.watches import Watches

log = logging.getLogger("hub.ws")
RATE = 20.0  # commands per second, sustained
BURST = 40.0
REFUSALS_BEFORE_CLOSE = 20
STANDING_CHECK = 30.0  # seconds: a deactivated or signed-out session ends within this


class ResyncFailed(Exception):
    """Neither a replay nor a snapshot could bring a watched doctor up to date."""


class NotText(Exception):
    """The client sent a binary frame: the protocol is JSON text (closed 1008)."""


class RateLimited(Exception):
    """The client kept sending past its allowance (closed 4429)."""


class Allowance:
    """A token bucket: `RATE` commands a second, bursts of `BURST`."""

    def __init__(self) -> None:
        self._left = BURST
        self._checked = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._left = min(BURST, self._left + (now - self._checked) * RATE)
        self._checked = now
        if self._left < 1:
            return False
        self._left -= 1
        return True


async def receive_text(websocket: WebSocket[State]) -> str:
    """The next text frame; WebSocketDisconnect once the peer left, NotText on a binary one."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
    text = message.get("text")
    if text is None:
        raise NotText()
    return str(text)


async def close(hub: Hub, websocket: WebSocket[State], code: int, reason: str = "") -> None:
    hub.metrics.closes.labels(str(code)).inc()
    await websocket.close(code, reason)


class Connection:
    """One authenticated WebSocket. A reader serving commands, a writer sending the outgoing
    queue, the guard's checks (the token's expiry, the account's standing), the feed's
    subscription and every catch-up run in one task group; events reach it through bus
    sinks, never through the services.

    An idle session is kept small (thousands are held per process): the reader is its only
    long-lived task. The writer is started when a frame is queued and ends once the queue
    is empty; the guard is a timer that starts a short check when due (the token expires, or
    `STANDING_CHECK` seconds passed); an overflowing queue starts a task that fails at once
    with `TooSlow`, which ends the group even while a writer is stuck on a full socket."""

    __slots__ = (
        "_ended",
        "_group",
        "_open",
        "_reader",
        "_serving",
        "_tasks",
        "_timer",
        "_wake",
        "_write_now",
        "_writer",
        "expires",
        "feed",
        "hub",
        "leaving",
        "outgoing",
        "principal",
        "watches",
        "websocket",
    )

    def __init__(
        self, hub: Hub, websocket: WebSocket[State], principal: Principal, expires: int
    ) -> None:
        self.hub = hub
        self.websocket = websocket
        self.principal = principal
        self.expires = expires
        self.outgoing = Outgoing(on_frame=self._on_frame, on_overflow=self._on_overflow)
        self.watches = Watches()
        self.feed = events.feed_channel(principal.role.value, principal.id)
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.leaving = False  # the process is draining: closed 1012 once no command is in flight
        self._serving = False  # a command is being answered
        self._open = False  # serving: the group takes new tasks
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None  # the writer's, while it waits
        self._timer: asyncio.TimerHandle | None = None  # the guard's next check
        self._ended: asyncio.Future[None] | None = None  # set once the reader has ended
        self._write_now: Callable[[str], bool] | None = websocket.scope.get("extensions", {}).get(
            WRITE_NOW
        )

    def leave(self) -> None:
        """End the session for a restart: at once when no command is in flight, else right
        after its answer. A frame that arrives meanwhile is not served (the 1012 close tells
        the client to send it again elsewhere)."""
        self.leaving = True
        if not self._serving and self._reader is not None:
            self._reader.cancel()

    async def serve(self) -> None:
        """Until the peer leaves, the token expires, the client falls too far behind (1013)
        or a task fails (that error propagates, after every other task has ended)."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._open = True
            self._ended = asyncio.get_running_loop().create_future()
            self._reader = self._start(self._read())
            # The reader ends the session: when it returns or is cancelled (leave, the
            # guard's close), the other tasks are stopped; when a task fails, the group
            # cancels the reader, and so the guard's timer too.
            self._reader.add_done_callback(self._stop)
            self._arm()
            if access.has_feed(self.principal):
                self._start(self._follow_feed())
            if len(self.outgoing):
                self._on_frame()
            # Wait inside the group, not in its exit: a task failing cancels this await,
            # which the group takes back (Python 3.11 does not when it is already exiting).
            await self._ended

    def _stop(self, _: object) -> None:
        self._open = False
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._tasks:  # the writer, a guard check and the catch-ups
            task.cancel()

    def _start(self, work: Coroutine[None, None, None]) -> asyncio.Task[None]:
        assert self._group is not None
        task = self._group.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _spawn(self, work: Coroutine[None, None, None]) -> asyncio.Task[None] | None:
        # From a callback (a queued frame, the timer): None once the group takes no more
        # tasks (it is ending; what is queued is left for the last flush).
        if self._open:
            try:
                return self._start(work)
            except RuntimeError:  # the group is shutting down: a task failed
                self._open = False
        work.close()
        return None

    async def _read(self) -> None:
        allowance, refusals = Allowance(), 0
        while not self.leaving:
            text = await receive_text(self.websocket)
            if self.leaving:
                return
            if not allowance.take():
                refusals += 1
                self.hub.metrics.errors.labels("ws", "rate_limited").inc()
                if refusals > REFUSALS_BEFORE_CLOSE:
                    raise RateLimited()  # closed after the replies already queued
                self.outgoing.put({"type": "error", "code": "rate_limited", "message": "slow down"})
                continue
            refusals = 0
            self._serving = True
            try:
                reply = await commands.answer(self, text)
            finally:
                self._serving = False
            if reply is not None:
                self.outgoing.put(reply)

    # -- writing -------------------------------------------------------------------------

    def _on_frame(self) -> None:
        # No send in flight (no writer, or one waiting for the next frame): the frame goes
        # out at once where the server lets us write from here (`hub.listener.Session`),
        # else, and whenever the socket is full, through the writer.
        wake = self._wake
        if wake is not None:  # a writer waits for the next frame
            if not wake.done() and not self._sent_now():
                wake.set_result(None)
        elif (self._writer is None or self._writer.done()) and not self._sent_now():
            self._writer = self._spawn(self._write())

    def _sent_now(self) -> bool:
        return self._write_now is not None and self.outgoing.send_now(self._write_now)

    async def _write(self) -> None:
        # While the session watches a doctor its writer stays, waiting for the next frame:
        # waking it costs a fraction of starting a task for every event (a fifth of a
        # fan-out's CPU went to creating them). A session that watches no one ends its
        # writer once the queue is empty, and the next frame starts another.
        try:
            while True:
                await self.outgoing.flush(self.websocket.send_text)
                if not self.watches:
                    return
                self._wake = asyncio.get_running_loop().create_future()
                try:
                    await self._wake
                finally:
                    self._wake = None
        finally:
            self._writer = None  # the next frame queued starts another

    def _on_overflow(self) -> None:
        # The writer may be stuck on a full socket: end the group from beside it.
        self._spawn(self._too_slow())

    async def _too_slow(self) -> None:
        raise TooSlow()

    # -- the guard -----------------------------------------------------------------------

    def _arm(self) -> None:
        # What ends a session from the inside: the token expires (a fresh `auth` moves it,
        # so look again at least every STANDING_CHECK seconds), or the account is
        # deactivated or signed out everywhere (looked at as often). A timer, not a waiting
        # task: nothing of it stays between checks but the timer handle.
        left = self.expires - time.time()
        delay = max(0.0, min(left, STANDING_CHECK))
        self._timer = asyncio.get_running_loop().call_later(delay, self._due)

    def _due(self) -> None:
        self._timer = None
        self._spawn(self._check())

    async def _check(self) -> None:
        if self.expires - time.time() <= 0:
            await close(self.hub, self.websocket, Close.UNAUTHENTICATED, "token expired")
            self._end()
            return
        try:
            self.principal = await self.hub.standings.ensure(self.principal)
        except Unauthenticated as exc:
            await close(self.hub, self.websocket, Close.UNAUTHENTICATED, exc.detail)
            self._end()
            return
        except Exception as exc:  # the database away: the session stands meanwhile
            log.warning("standing of %s not checked: %r", self.principal, exc)
        if self._open:
            self._arm()

    def _end(self) -> None:
        """Closed from the inside: stop serving (the reader, even mid-command, and so the
        rest)."""
        if self._reader is not None:
            self._reader.cancel()

    async def _follow_feed(self) -> None:
        # The personal feed is subscribed beside serving, not before: a storm of connections
        # is answered `ready` at once while their feeds are subscribed in batches.
        try:
            await self.hub.bus.subscribe(self.feed, self.on_feed)
        except Exception as exc:
            log.warning("feed of %s not subscribed: %r", self.feed, exc)

    # -- watching ------------------------------------------------------------------------

    async def watch(
        self, doctor_id: int, window: Window, since: int | None, ref: str | None
    ) -> None:
        """Send a snapshot (or with `since`, the missed events and `resynced`), then every
        change of the doctor in version order. A refused watch changes nothing."""
        before = self.watches.begin(doctor_id, window)
        try:
            await self.hub.bus.subscribe(slot_channel(doctor_id), self.on_slot)
            missed = (
                None if since is None else await events.replay(self.hub.sessions, doctor_id, since)
            )
            if missed is None:
                version, frame = await self._snapshot_frame(doctor_id, ref)
                self.outgoing.put_text(frame)  # first, then what arrived while it was built
            else:
                version = self._send_missed(missed, since or 0)
                resynced: Resynced = {
                    "type": "resynced",
                    "doctor_id": doctor_id,
                    "version": version,
                }
                if ref is not None:
                    resynced["ref"] = ref
                self.outgoing.put(resynced)
        except BaseException:
            self.watches.restore(doctor_id, before)
            if before is None:
                await self.hub.bus.unsubscribe(slot_channel(doctor_id), self.on_slot)
            elif before.version is not None:  # keep the watch it had
                self._release(doctor_id, before.version)
            raise
        self._release(doctor_id, version)

    async def unwatch(self, doctor_id: int) -> None:
        self.watches.drop(doctor_id)
        await self.hub.bus.unsubscribe(slot_channel(doctor_id), self.on_slot)

    def on_slot(self, message: Event) -> None:
        if message["type"] == "appointment" or message["type"] == "offer":
            return
        verdict = self.watches.arrive(message)
        if verdict == "send":
            self.outgoing.put(message, FRAMES.of(message))
        elif verdict == "repair" and self._open:
            since = self.watches.repairing(message["doctor_id"])
            self._start(self._repair(message["doctor_id"], since))

    def on_feed(self, message: Event) -> None:
        self.outgoing.put(message)

    async def _repair(self, doctor_id: int, since: int) -> None:
        # Pub/sub lost something: the missed events from the outbox, else a snapshot; if
        # neither can be had, the client is told and closed 1013 to resync on its own.
        version = since
        while True:
            try:
                missed = await events.replay(self.hub.sessions, doctor_id, version)
            except Exception as exc:
                log.warning("catch-up of doctor %d failed, sending a snapshot: %r", doctor_id, exc)
                missed = None
            if missed is None:
                if self.watches.get(doctor_id) is None:
                    return  # unwatched meanwhile
                version, frame = await self._fallback(doctor_id)
                self.outgoing.put_text(frame)
            else:
                version = self._send_missed(missed, version)
            if self._release(doctor_id, version):
                return

    async def _fallback(self, doctor_id: int) -> tuple[int, str]:
        try:
            return await self._snapshot_frame(doctor_id, None)
        except Exception as exc:
            log.warning("snapshot of doctor %d failed: %r", doctor_id, exc)
            message = "your view of this doctor could not be repaired: reconnect and watch again"
            self.outgoing.put({"type": "error", "code": "resync_failed", "message": message})
            raise ResyncFailed() from exc

    def _send_missed(self, missed: list[Event], version: int) -> int:
        for message in missed:
            self.outgoing.put(message)
            if message["type"] == "slot" or message["type"] == "hours":
                version = message["version"]
        return version

    def _release(self, doctor_id: int, version: int) -> bool:
        """The client has `version`: send what was held back after it; False when some was
        dropped and a catch-up from `version` must run first (it is started)."""
        follow = self.watches.caught_up(doctor_id, version)
        if follow is None:
            self._start(self._repair(doctor_id, version))
            return False
        for message in follow:
            self.outgoing.put(message)
        return True

    async def _snapshot_frame(self, doctor_id: int, ref: str | None) -> tuple[int, str]:
        """The doctor's version and the snapshot's text (shared by viewers who see the same)."""
        watch = self.watches.get(doctor_id)
        assert watch is not None
        version, view = await self.hub.calendar.snapshot(self.principal, doctor_id, watch.window)
        return version, SNAPSHOTS.of(version, view, ref)

    async def close_subscriptions(self) -> None:
        for doctor_id in self.watches.doctors():
            await self.hub.bus.unsubscribe(slot_channel(doctor_id), self.on_slot)
        await self.hub.bus.unsubscribe(self.feed, self.on_feed)
