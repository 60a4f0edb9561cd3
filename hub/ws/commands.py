from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from pydantic import TypeAdapter, ValidationError

from hub import events, protocol, visits
from hub.auth import Principal
from hub.calendar import Window
from hub.errors import HubError, InvalidInput, Unauthenticated, Unavailable, fields_of, problem
from hub.models import Appointment
from hub.protocol import (
    Accepted,
    AcceptOffer,
    Auth,
    Book,
    Booked,
    Cancel,
    Cancelled,
    Declined,
    DeclineOffer,
    Error,
    Held,
    HoldCommand,
    JoinWaitlist,
    LeaveWaitlist,
    Left,
    Ping,
    Pong,
    Ready,
    Release,
    Released,
    Reply,
    Reschedule,
    Rescheduled,
    Unwatch,
    Unwatched,
    Waiting,
    Watch,
)
from hub.runtime import is_outage
from hub.schemas import AppointmentOut, UTCInstant, WaitlistJoin, WaitlistOut

if TYPE_CHECKING:
    from hub.ws.connection import Connection

log = logging.getLogger("hub.ws")
START = TypeAdapter[datetime](UTCInstant)


async def answer(connection: Connection, text: str) -> Reply | None:
    """Serve one client frame: its reply, or an `error` (never an exception: one escaping
    would reach the client as a bare 1006)."""
    metrics = connection.hub.metrics
    kind, outcome, started = "unparsed", "ok", time.perf_counter()
    ref: str | None = None
    reply: Reply | None
    try:
        command = protocol.parse(text)
        kind, ref = command["type"], command.get("ref")
        reply = await TABLE[kind](connection, command)
    except HubError as exc:
        reply, outcome = error(exc), exc.code
        ref = ref if ref is not None else _raw_ref(text)
    except Exception as exc:
        if is_outage(exc):  # the database or Redis away: the client retries
            log.warning("command %s: %s", kind, type(exc).__name__)
            reply, outcome = (
                error(Unavailable("the database or Redis is not answering: retry")),
                Unavailable.code,
            )
        else:
            log.exception("command failed")
            reply, outcome = (
                {"type": "error", "code": "internal", "message": "internal error"},
                "internal",
            )
    if _cancelling():  # a library turned our cancellation into an error: stop anyway
        raise asyncio.CancelledError
    if kind in AUDITED:
        connection.hub.audit.note(
            connection.principal, AUDITED[kind], _resource(text), outcome, "ws"
        )
    metrics.commands.labels(kind, outcome).observe(time.perf_counter() - started)
    if outcome != "ok":
        metrics.errors.labels("ws", outcome).inc()
    if reply is not None and ref is not None:
        reply["ref"] = ref
    return reply


# The commands that touch a patient's appointments, as the audit trail names them.
AUDITED = {
    "hold": "hold.create",
    "release": "hold.release",
    "book": "appointment.book",
    "cancel": "appointment.cancel",
    "reschedule": "appointment.reschedule",
}


def _resource(text: str) -> str:
    # What the command named, from its raw frame (it may have been refused as invalid).
    try:
        fields = json.loads(text)
    except (ValueError, RecursionError):
        return "unparsed"
    for key, kind in (
        ("appointment_id", "appointment"),
        ("hold_id", "hold"),
        ("doctor_id", "doctor"),
    ):
        value = fields.get(key) if isinstance(fields, dict) else None
        if isinstance(value, int | str) and len(str(value)) <= 50:
            return f"{kind}:{value}"
    return "unknown"


def error(exc: HubError) -> Error:
    """A HubError as the WebSocket `error` event."""
    facts = problem(exc)
    message: Error = {"type": "error", "code": facts.code, "message": facts.detail}
    if facts.fields:
        message["fields"] = facts.fields
    if facts.reason is not None:
        message["reason"] = facts.reason
    return message


def ready(principal: Principal, expires: int) -> Ready:
    return {
        "type": "ready",
        "user": {"role": principal.role.value, "id": principal.id},
        "expires_at": events.utc_text(datetime.fromtimestamp(expires, UTC)),
    }


async def auth(connection: Connection, command: Auth) -> Ready:
    principal, expires = connection.hub.tokens.decode(command["token"])
    if principal != connection.principal:
        raise Unauthenticated("a session keeps its user: open a new connection")
    connection.principal = await connection.hub.standings.ensure(principal)
    connection.expires = expires
    return ready(principal, expires)


async def ping(connection: Connection, command: Ping) -> Pong:
    return {"type": "pong"}


async def watch(connection: Connection, command: Watch) -> None:
    window = Window.parse(command["from"], command["to"])  # refused before anything changes
    since, ref = command.get("since"), command.get("ref")
    await connection.watch(command["doctor_id"], window, since, ref)
    return None  # the snapshot or `resynced` carries the ref


async def unwatch(connection: Connection, command: Unwatch) -> Unwatched:
    await connection.unwatch(command["doctor_id"])
    return {"type": "unwatched", "doctor_id": command["doctor_id"]}


async def hold(connection: Connection, command: HoldCommand) -> Held:
    start = _start(command["start"])
    client = connection.websocket.client
    held = await connection.hub.booking.hold(
        connection.principal,
        command["doctor_id"],
        start,
        address=client.host if client is not None else "unknown",
        moving=command.get("appointment_id"),
        visit_type_id=command.get("visit_type_id"),
    )
    return {
        "type": "held",
        "hold_id": held.id,
        "doctor_id": held.doctor_id,
        "start": events.utc_text(held.start),
        "expires_at": events.utc_text(held.expires_at) if held.expires_at else None,
    }


async def release(connection: Connection, command: Release) -> Released:
    await connection.hub.booking.release(connection.principal, command["hold_id"])
    return {"type": "released", "hold_id": command["hold_id"]}


async def book(connection: Connection, command: Book) -> Booked:
    start = command.get("start")
    row, replayed = await connection.hub.booking.book(
        connection.principal,
        command.get("doctor_id"),
        None if start is None else _start(start),
        patient_id=command.get("patient_id"),
        hold_id=command.get("hold_id"),
        idempotency_key=command.get("idempotency_key"),
        visit_type_id=command.get("visit_type_id"),
        reason=command.get("reason"),
    )
    return {"type": "booked", "replayed": replayed, "appointment": _appointment(connection, row)}


async def cancel(connection: Connection, command: Cancel) -> Cancelled:
    row = await connection.hub.lifecycle.cancel(
        connection.principal, command["appointment_id"], command.get("reason")
    )
    return {"type": "cancelled", "appointment": _appointment(connection, row)}


async def reschedule(connection: Connection, command: Reschedule) -> Rescheduled:
    start = command.get("start")
    row = await connection.hub.booking.reschedule(
        connection.principal,
        command["appointment_id"],
        None if start is None else _start(start),
        command.get("hold_id"),
        command.get("visit_type_id"),
    )
    return {"type": "rescheduled", "appointment": _appointment(connection, row)}


Handler = Callable[["Connection", Any], Awaitable[Reply | None]]


async def join_waitlist(connection: Connection, command: JoinWaitlist) -> Waiting:
    try:
        body = WaitlistJoin.model_validate(
            {k: v for k, v in command.items() if k not in ("type", "ref")}
        )
    except ValidationError as exc:
        raise InvalidInput("invalid join_waitlist message", fields_of(exc, "message")) from exc
    view = await connection.hub.waitlist.join(connection.principal, body.wanted())
    entry = cast(protocol.WaitlistEntry, WaitlistOut.model_validate(view).model_dump(mode="json"))
    return {"type": "waiting", "entry": entry}


async def leave_waitlist(connection: Connection, command: LeaveWaitlist) -> Left:
    await connection.hub.waitlist.leave(connection.principal, command["entry_id"])
    return {"type": "left", "entry_id": command["entry_id"]}


async def accept_offer(connection: Connection, command: AcceptOffer) -> Accepted:
    row = await connection.hub.waitlist.accept(connection.principal, command["offer_id"])
    return {
        "type": "accepted",
        "offer_id": command["offer_id"],
        "appointment": _appointment(connection, row),
    }


async def decline_offer(connection: Connection, command: DeclineOffer) -> Declined:
    await connection.hub.waitlist.decline(connection.principal, command["offer_id"])
    return {"type": "declined", "offer_id": command["offer_id"]}


TABLE: dict[str, Handler] = {
    "auth": auth,
    "watch": watch,
    "unwatch": unwatch,
    "hold": hold,
    "release": release,
    "book": book,
    "cancel": cancel,
    "reschedule": reschedule,
    "ping": ping,
    "join_waitlist": join_waitlist,
    "leave_waitlist": leave_waitlist,
    "accept_offer": accept_offer,
    "decline_offer": decline_offer,
}


def _start(text: str) -> datetime:
    try:
        return START.validate_python(text)
    except ValidationError as exc:
        raise InvalidInput(
            "start must be an ISO 8601 time with an offset",
            [{"field": "start", "message": "ISO 8601 with Z or an offset"}],
        ) from exc


def _appointment(connection: Connection, row: Appointment) -> protocol.Appointment:
    out = AppointmentOut.model_validate(row)
    if visits.sees_reason(connection.principal, row.doctor_id):
        out = out.model_copy(update={"reason": row.reason})
    return cast(protocol.Appointment, out.model_dump(mode="json"))


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _raw_ref(text: str) -> str | None:
    # A command that failed to parse still gets its ref back when one can be read.
    try:
        ref = json.loads(text).get("ref")
    except (ValueError, AttributeError, RecursionError):
        return None
    return ref if isinstance(ref, str) and len(ref) <= 64 else None
