from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from hub import availability, schedules
from hub.auth import Principal, Role, require
from hub.availability import Availability, Slot
from hub.bus import Bus
from hub.db import SessionFactory
from hub.errors import (
    Forbidden,
    InvalidTransition,
    NotFound,
    PatientBusy,
    SlotTaken,
    Unavailable,
)
from hub.locks import SlotLocks
from hub.models import Appointment, Status

log = logging.getLogger("hub.booking")

Clock = Callable[[], datetime]
DEADLOCK = {1205, 1213}  # lock wait timeout, deadlock: InnoDB asks the client to retry
ATTEMPTS = 5
LOCK_TTL_MS = 10_000


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Booking:
    """The booking service: book, cancel and complete appointments; list and find slots.
    The UNIQUE keys on appointments are the guarantee against double booking; the slot lock
    only spares the database a burst of doomed inserts. Events go out after commit."""

    def __init__(
        self, sessions: SessionFactory, locks: SlotLocks, bus: Bus, clock: Clock = _utcnow
    ) -> None:
        self._sessions = sessions
        self._locks = locks
        self._bus = bus
        self._clock = clock

    async def book(
        self,
        principal: Principal | None,
        doctor_id: int,
        start: datetime,
        patient_id: int | None = None,
    ) -> Appointment:
        """Book `start` with a doctor for the calling patient."""
        caller = require(principal, Role.patient)
        if patient_id is not None and patient_id != caller.id:
            raise Forbidden("a patient books only for themselves")
        async with self._sessions() as session:
            hours = await schedules.load(session, doctor_id)
        start = availability.check_offered(hours, start, self._clock())
        key = f"slot:{doctor_id}:{start:%Y%m%dT%H%M}"
        try:
            token = await self._locks.acquire(key, LOCK_TTL_MS)
        except Unavailable as exc:
            log.warning("booking without the slot lock: %s", exc.detail)
            token = ""  # the database guard alone decides
        if token is None:
            raise SlotTaken("someone else is booking this slot right now")
        try:
            appointment_id = await self._insert(doctor_id, caller.id, start)
        finally:
            if token:
                await self._unlock(key, token)
        appointment = await self._get(appointment_id)
        await self._publish(appointment, "booked")
        return appointment

    async def cancel(
        self, principal: Principal | None, appointment_id: int, reason: str | None = None
    ) -> Appointment:
        """Cancel a scheduled appointment: its patient, its doctor or an admin."""
        caller = require(principal)
        async with self._sessions.begin() as session:
            row = await session.get(Appointment, appointment_id, with_for_update=True)
            if row is None:
                raise NotFound(f"appointment {appointment_id} not found")
            if not _involved(caller, row):
                raise Forbidden("you may not cancel this appointment")
            _transition(row, Status.cancelled)
            row.cancel_reason = reason
        await self._publish(row, "cancelled")
        return row

    async def complete(self, principal: Principal | None, appointment_id: int) -> Appointment:
        """Mark an appointment completed: its doctor, at or after its start."""
        caller = require(principal, Role.doctor)
        async with self._sessions.begin() as session:
            row = await session.get(Appointment, appointment_id, with_for_update=True)
            if row is None:
                raise NotFound(f"appointment {appointment_id} not found")
            if row.doctor_id != caller.id:
                raise Forbidden("only the appointment's doctor may complete it")
            if row.start_at > self._clock():
                raise InvalidTransition("an appointment cannot be completed before it starts")
            _transition(row, Status.completed)
        await self._publish(row, "completed")
        return row

    async def for_patient(self, principal: Principal | None, pid: int) -> Sequence[Appointment]:
        """A patient's appointments: for that patient and admins."""
        caller = require(principal)
        if not (caller.role is Role.admin or caller.is_(Role.patient, pid)):
            raise Forbidden("you may not read this patient's appointments")
        return await self._list(Appointment.patient_id == pid)

    async def for_doctor(
        self, principal: Principal | None, did: int
    ) -> list[tuple[Appointment, bool]]:
        """A doctor's appointments (for that doctor and admins), each with whether the
        doctor's current hours still cover it (a change of hours never moves one)."""
        caller = require(principal)
        if not (caller.role is Role.admin or caller.is_(Role.doctor, did)):
            raise Forbidden("you may not read this doctor's appointments")
        async with self._sessions() as session:
            hours = await schedules.load(session, did)
        rows = await self._list(Appointment.doctor_id == did)
        return [(row, not availability.covers(hours, row.start_at)) for row in rows]

    async def calendar(
        self, doctor_id: int, first: date, last: date
    ) -> tuple[Availability, list[Slot], dict[datetime, Appointment]]:
        """Every offered slot of a doctor on local dates first..last with its state, and the
        active appointments by start (the edge decides who may see whose)."""
        async with self._sessions() as session:
            hours = await schedules.load(session, doctor_id)
            now = self._clock()
            # Nothing is offered before now or past the horizon: clamp, which also keeps
            # far-off dates from overflowing.
            first = max(first, now.date() - timedelta(days=1))
            last = min(last, (now + timedelta(days=hours.horizon_days + 1)).date())
            if first > last:
                return hours, [], {}
            zone = hours.zone
            low = datetime.combine(first - timedelta(days=1), time(), tzinfo=zone)
            high = datetime.combine(last + timedelta(days=2), time(), tzinfo=zone)
            rows = (
                await session.scalars(
                    select(Appointment).where(
                        Appointment.doctor_id == doctor_id,
                        Appointment.active.is_not(None),
                        Appointment.start_at < high,
                        Appointment.end_at > low,
                    )
                )
            ).unique()
            active = {row.start_at: row for row in rows}
        booked = [(row.start_at, row.end_at) for row in active.values()]
        slots = availability.calendar(hours, first, last, now, booked)
        return hours, slots, active

    async def free_slots(self, doctor_id: int, day: date) -> list[datetime]:
        """The starts still free on a local date with a doctor (public)."""
        _, slots, _ = await self.calendar(doctor_id, day, day)
        return [slot.start for slot in slots if slot.state == "free"]

    async def _insert(self, doctor_id: int, patient_id: int, start: datetime) -> int:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self._sessions.begin() as session:
                    hours = await schedules.load(session, doctor_id, share=True)
                    availability.check_offered(hours, start, self._clock())
                    end = start + hours.slot
                    await _refuse_overlaps(session, doctor_id, patient_id, start, end)
                    row = Appointment(
                        doctor_id=doctor_id, patient_id=patient_id, start_at=start, end_at=end
                    )
                    session.add(row)
                    await session.flush()
                    return row.id
            except IntegrityError as exc:
                raise await self._conflict(exc, patient_id, start) from exc
            except OperationalError as exc:
                if _errno(exc) not in DEADLOCK or attempt == ATTEMPTS:
                    raise
                log.info("retrying booking after InnoDB error %s", _errno(exc))
        raise AssertionError("unreachable")

    async def _conflict(self, exc: IntegrityError, patient_id: int, start: datetime) -> Exception:
        # Which UNIQUE key a database reports first differs between engines; ask the rows.
        if not any(key in str(exc.orig) for key in ("_slot", "appointments.")):
            return exc
        async with self._sessions() as session:
            mine = await session.scalar(
                select(Appointment.id).where(
                    Appointment.patient_id == patient_id,
                    Appointment.start_at == start,
                    Appointment.active.is_not(None),
                )
            )
        if mine is not None:
            return PatientBusy("you already have an appointment at this time")
        return SlotTaken("this slot is already booked")

    async def _get(self, appointment_id: int) -> Appointment:
        async with self._sessions() as session:
            row = await session.get(Appointment, appointment_id)
        if row is None:
            raise NotFound(f"appointment {appointment_id} not found")
        return row

    async def _list(self, where: ColumnElement[bool]) -> Sequence[Appointment]:
        query = select(Appointment).where(where).order_by(Appointment.start_at, Appointment.id)
        async with self._sessions() as session:
            return (await session.scalars(query)).unique().all()

    async def _unlock(self, key: str, token: str) -> None:
        try:
            await self._locks.release(key, token)
        except Unavailable as exc:
            log.warning("slot lock not released (it expires by itself): %s", exc.detail)

    async def _publish(self, row: Appointment, event: str) -> None:
        start = row.start_at.isoformat().replace("+00:00", "Z")
        state = "free" if row.status is Status.cancelled else "booked"
        slot = {"type": "slot", "doctor_id": row.doctor_id, "start": start, "state": state}
        change = {
            "type": "appointment",
            "event": event,
            "appointment_id": row.id,
            "doctor_id": row.doctor_id,
            "patient_id": row.patient_id,
            "start": start,
            "status": row.status.value,
        }
        await self._bus.publish(f"doctor:{row.doctor_id}:slots", slot)
        await self._bus.publish(f"doctor:{row.doctor_id}:appointments", change)
        await self._bus.publish(f"patient:{row.patient_id}:appointments", change)


async def _refuse_overlaps(
    session: AsyncSession, doctor_id: int, patient_id: int, start: datetime, end: datetime
) -> None:
    # Same-start clashes are the UNIQUE keys' job; these catch appointments of another
    # length (made before the doctor changed the slot length) that overlap this one.
    overlapping = (
        Appointment.active.is_not(None),
        Appointment.start_at < end,
        Appointment.end_at > start,
        Appointment.start_at != start,
    )
    query = select(Appointment.doctor_id, Appointment.patient_id).where(
        *overlapping,
        (Appointment.doctor_id == doctor_id) | (Appointment.patient_id == patient_id),
    )
    for other_doctor, other_patient in (await session.execute(query)).all():
        if other_patient == patient_id:
            raise PatientBusy("you already have an appointment at this time")
        if other_doctor == doctor_id:
            raise SlotTaken("the doctor has an appointment overlapping this slot")


def _involved(caller: Principal, row: Appointment) -> bool:
    return (
        caller.role is Role.admin
        or caller.is_(Role.patient, row.patient_id)
        or caller.is_(Role.doctor, row.doctor_id)
    )


def _transition(row: Appointment, to: Status) -> None:
    if row.status is not Status.scheduled:
        raise InvalidTransition(f"a {row.status.value} appointment cannot become {to.value}")
    row.status = to


def _errno(exc: OperationalError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None
