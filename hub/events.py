from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from hub import protocol
from hub.bus import slot_channel
from hub.clock import Clock, utcnow
from hub.db import SessionFactory
from hub.driver import Statement
from hub.errors import NotFound
from hub.models import Appointment, OutboxEvent, Patient, Schedule, WaitlistOffer
from hub.protocol import AppointmentChange, AppointmentEvent, Event, OfferEvent

log = logging.getLogger("hub.events")
KEEP = 1000  # slot events replayable per doctor, at least
LOCKED = "hub.schedules.locked"  # session.info: the schedule rows this transaction locked
CLAIM = "hub.outbox.claim"  # session.info: (relay token, now, the rows written)


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def feed_channel(role: str, id_: int) -> str:
    return f"{role}:{id_}:appointments"


def claim_for(session: AsyncSession, token: str, now: datetime, written: list[OutboxEvent]) -> None:
    """Have the events this transaction writes claimed by a relay (`token`) that publishes
    them after commit, and collected in `written` for it."""
    session.info[CLAIM] = (token, now, written)


def _outbox(session: AsyncSession, row: OutboxEvent) -> None:
    claim = session.info.get(CLAIM)
    if claim is None:
        session.add(row)  # no relay: the unit of work writes it
        return
    row.claimed_by, row.claimed_at, written = claim
    written.append(row)  # the relay writes it before its commit (`write_claimed`)


_OUTBOX = cast(Table, OutboxEvent.__table__)
_OUTBOX_COLUMNS = (
    "channel",
    "doctor_id",
    "version",
    "payload",
    "created_at",
    "claimed_at",
    "claimed_by",
)
_OUTBOX_INSERT = Statement.into(_OUTBOX)
NUMBERED = 8  # events numbered by one INSERT ... RETURNING at most


@cache
def _numbered(count: int) -> Statement:
    # `count` rows, their ids returned in the order of the rows (MariaDB numbers and returns
    # a multi-row INSERT's rows in order).
    rows = [
        {c: bindparam(f"{c}_{n}", type_=_OUTBOX.c[c].type) for c in _OUTBOX_COLUMNS}
        for n in range(count)
    ]
    return Statement(insert(_OUTBOX).values(rows).returning(_OUTBOX.c.id))


async def write_claimed(session: AsyncSession, written: list[OutboxEvent]) -> None:
    """Insert the events a relay's transaction claimed (`claim_for`), numbered in the order
    they were written: a multi-row INSERT ... RETURNING (of up to `NUMBERED` rows) where the
    database numbers a multi-row insert's rows in order (MariaDB, SQLite), one INSERT per event
    elsewhere (MySQL 8). Not the unit of work, whose flush cost a booking more than its statements.
    They were created when the transaction's attempt began (the relay's clock), so the
    outbox's lag counts the transaction's own time too."""
    if not written:
        return
    values = [
        {
            "channel": row.channel,
            "doctor_id": row.doctor_id,
            "version": row.version,
            "payload": row.payload,
            "created_at": row.claimed_at,
            "claimed_at": row.claimed_at,
            "claimed_by": row.claimed_by,
        }
        for row in written
    ]
    ids: list[int] = []
    if session.get_bind().dialect.insert_executemany_returning_sort_by_parameter_order:
        for first in range(0, len(values), NUMBERED):
            part = values[first : first + NUMBERED]
            named = {f"{c}_{n}": v for n, one in enumerate(part) for c, v in one.items()}
            # Numbered in the order of the rows; returned in any order (as SQLAlchemy's own
            # insertmanyvalues takes it, the ids sorted).
            ids.extend(sorted(r.id for r in await _numbered(len(part)).rows(session, named)))
    else:
        for one in values:
            inserted = await _OUTBOX_INSERT.run(session, one)
            assert inserted.lastrowid is not None
            ids.append(inserted.lastrowid)
    for row, id_ in zip(written, ids, strict=True):
        row.id = id_


async def record_slot(session: AsyncSession, doctor_id: int, start: datetime, state: str) -> int:
    """Write, in the caller's transaction, that a slot of a doctor is now free, held or
    booked; the doctor's version rises by one. Call with the doctor's schedule row locked
    (or let this lock it): versions then follow commit order exactly."""
    return await _record_versioned(session, doctor_id, "slot", start=utc_text(start), state=state)


async def record_hours(session: AsyncSession, doctor_id: int) -> int:
    """Write, in the caller's transaction, that a doctor's hours changed: watchers watch
    again for the new slots. It takes the next version like a slot event."""
    return await _record_versioned(session, doctor_id, "hours")


async def locked_schedule(session: AsyncSession, doctor_id: int) -> Schedule:
    """A doctor's schedule row, locked until the transaction ends (read once per transaction:
    the lock is held already the second time)."""
    locked: dict[int, Schedule] = session.info.setdefault(LOCKED, {})
    if doctor_id not in locked:
        schedule = await session.get(Schedule, doctor_id, with_for_update=True)
        if schedule is None:
            raise NotFound(f"doctor {doctor_id} not found")
        locked[doctor_id] = schedule
    return locked[doctor_id]


_SCHEDULE = cast(Table, Schedule.__table__)
_BUMP = Statement(
    update(_SCHEDULE)
    .where(_SCHEDULE.c.doctor_id == bindparam("doctor"))
    .values(version=bindparam("next"), updated_at=bindparam("at"))
)


async def _record_versioned(session: AsyncSession, doctor_id: int, kind: str, **fields: str) -> int:
    schedule = await locked_schedule(session, doctor_id)
    version = schedule.version + 1
    # Core, and the loaded row told it is stored: no unit of work for one column.
    at = utcnow()  # as the column's onupdate would have it
    await _BUMP.run(session, {"doctor": doctor_id, "next": version, "at": at})
    set_committed_value(schedule, "version", version)
    set_committed_value(schedule, "updated_at", at)
    message = {"type": kind, "doctor_id": doctor_id, **fields, "version": version}
    _outbox(
        session,
        OutboxEvent(
            channel=slot_channel(doctor_id), doctor_id=doctor_id, version=version, payload=message
        ),
    )
    return version


async def is_booked(session: AsyncSession, doctor_id: int, start: datetime) -> bool:
    """Whether an active appointment of the doctor covers `start`."""
    found = await session.scalar(
        select(Appointment.id).where(
            Appointment.doctor_id == doctor_id,
            Appointment.active.is_not(None),
            Appointment.start_at <= start,
            Appointment.end_at > start,
        )
    )
    return found is not None


async def record_settled(session: AsyncSession, doctor_id: int, start: datetime) -> int:
    """Write, in the caller's transaction, a slot whose hold ended as the appointments alone
    leave it: booked or free. The doctor's schedule is locked first, so a booking committing
    meanwhile is either seen here or announced after this."""
    await locked_schedule(session, doctor_id)
    booked = await is_booked(session, doctor_id, start)
    return await record_slot(session, doctor_id, start, "booked" if booked else "free")


async def free_forgotten_holds(sessions: SessionFactory) -> int:
    """At the start of an embedded hub: holds lived in the memory of the process that ended,
    so a slot whose last event says `held` is announced again as it is now (free or booked).
    How many were announced."""
    async with sessions() as session:
        rows = await session.execute(
            select(OutboxEvent.doctor_id, OutboxEvent.payload)
            .where(OutboxEvent.doctor_id.is_not(None))
            .order_by(OutboxEvent.doctor_id, OutboxEvent.version)
        )
        last: dict[tuple[int, str], str] = {}
        for doctor_id, payload in rows:
            if doctor_id is not None and payload.get("type") == "slot":
                last[(doctor_id, str(payload["start"]))] = str(payload["state"])
    forgotten = [key for key, state in last.items() if state == "held"]
    for doctor_id, start in forgotten:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
        async with sessions.begin() as session:
            await record_settled(session, doctor_id, moment)
    return len(forgotten)


async def record_appointment(
    session: AsyncSession,
    row: Appointment,
    event: AppointmentChange,
    *,
    late: bool | None = None,
    previous_id: int | None = None,
    patient_name: str | None = None,
    by: str | None = None,
    reason: str | None = None,
) -> None:
    """Write, in the caller's transaction, what happened to an appointment, for its doctor's
    and its patient's feeds (the doctor dashboard's push feed)."""
    if patient_name is None:
        patient = await session.get(Patient, row.patient_id)
        assert patient is not None
        patient_name = f"{patient.first_name} {patient.last_name}"
    message: AppointmentEvent = {
        "type": "appointment",
        "event": event,
        "appointment_id": row.id,
        "doctor_id": row.doctor_id,
        "patient_id": row.patient_id,
        "patient_name": patient_name,
        "start": utc_text(row.start_at),
        "status": row.status.value,
    }
    if late is not None:
        message["late"] = late
    if previous_id is not None:
        message["previous_id"] = previous_id
    if by is not None:
        message["by"] = by
    if reason is not None:
        message["reason"] = reason
    for channel in (feed_channel("doctor", row.doctor_id), feed_channel("patient", row.patient_id)):
        _outbox(session, OutboxEvent(channel=channel, payload=message))


def record_offer(session: AsyncSession, offer: WaitlistOffer) -> None:
    """Write, in the caller's transaction, that a waitlist offer was made or ended, for the
    feed of the patient it is for."""
    message: OfferEvent = {
        "type": "offer",
        "offer_id": offer.id,
        "entry_id": offer.entry_id,
        "doctor_id": offer.doctor_id,
        "start": utc_text(offer.start_at),
        "end": utc_text(offer.end_at),
        "expires_at": utc_text(offer.expires_at),
        "state": offer.state.value,
    }
    _outbox(
        session, OutboxEvent(channel=feed_channel("patient", offer.patient_id), payload=message)
    )


async def replay(sessions: SessionFactory, doctor_id: int, since: int) -> list[Event] | None:
    """The slot events of a doctor after version `since`, in order; None when some of them
    are no longer kept or `since` is ahead of the doctor (the viewer needs a snapshot)."""
    async with sessions() as session:
        current = await current_version(session, doctor_id)
        if since > current:
            return None
        if since == current:
            return []
        rows = (
            await session.scalars(
                select(OutboxEvent.payload)
                .where(OutboxEvent.doctor_id == doctor_id, OutboxEvent.version > since)
                .order_by(OutboxEvent.version)
                .limit(KEEP + 1)
            )
        ).all()
    if len(rows) != current - since or rows[0]["version"] != since + 1:
        return None
    return [protocol.event(row) for row in rows]


async def current_version(session: AsyncSession, doctor_id: int) -> int:
    version = await session.scalar(select(Schedule.version).where(Schedule.doctor_id == doctor_id))
    if version is None:
        raise NotFound(f"doctor {doctor_id} not found")
    return version


async def prune(sessions: SessionFactory, keep: int = KEEP, clock: Clock = utcnow) -> None:
    """Forget published slot events beyond the last `keep` of each doctor, and published
    feed events older than a day. A viewer further behind gets a snapshot instead."""
    newest = (
        select(Schedule.version).where(Schedule.doctor_id == OutboxEvent.doctor_id)
    ).scalar_subquery()
    day_ago = clock() - timedelta(days=1)
    async with sessions.begin() as session:
        await session.execute(
            delete(OutboxEvent).where(
                OutboxEvent.published_at.is_not(None),
                OutboxEvent.doctor_id.is_not(None),
                OutboxEvent.version <= newest - keep,
            )
        )
        await session.execute(
            delete(OutboxEvent).where(
                OutboxEvent.published_at < day_ago, OutboxEvent.doctor_id.is_(None)
            )
        )
