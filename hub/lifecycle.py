from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import availability, events, schedules
from hub.auth import Principal, Role, require
from hub.booking import Clock, actor, late_cancel, transition, utcnow
from hub.bus import Bus
from hub.db import SessionFactory
from hub.errors import Forbidden, InvalidTransition, NotFound
from hub.models import Appointment, AppointmentEvent, Status


def _involved(caller: Principal, row: Appointment) -> bool:
    return (
        caller.role is Role.admin
        or caller.is_(Role.patient, row.patient_id)
        or caller.is_(Role.doctor, row.doctor_id)
    )


class Lifecycle:
    """What happens to an appointment after it is booked: cancel, complete, no-show; its
    history; the listings. Every change is recorded and published after commit."""

    def __init__(self, sessions: SessionFactory, bus: Bus, clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._bus = bus
        self._clock = clock

    async def cancel(
        self, principal: Principal | None, appointment_id: int, reason: str | None = None
    ) -> Appointment:
        """Cancel a scheduled appointment: its patient (within the doctor's cutoff policy),
        its doctor or an admin. The slot is free again at once."""
        caller = require(principal)
        async with self._sessions.begin() as session:
            row = await self._locked(session, appointment_id)
            if not _involved(caller, row):
                raise Forbidden("you may not cancel this appointment")
            policy = schedules.policy_of(await schedules.load_row(session, row.doctor_id))
            if row.status is Status.scheduled:
                row.late_cancel = late_cancel(caller, row, policy, self._clock())
            self._change(session, caller, row, Status.cancelled, reason)
            row.cancel_reason = reason
        await events.slot_changed(self._bus, row.doctor_id, row.start_at, "free")
        await events.appointment_changed(self._bus, row, "cancelled", late=row.late_cancel)
        return row

    async def complete(self, principal: Principal | None, appointment_id: int) -> Appointment:
        """Mark an appointment completed: its doctor, at or after its start."""
        caller = require(principal, Role.doctor)
        async with self._sessions.begin() as session:
            row = await self._locked(session, appointment_id)
            if row.doctor_id != caller.id:
                raise Forbidden("only the appointment's doctor may complete it")
            if row.status is Status.scheduled and row.start_at > self._clock():
                raise InvalidTransition("an appointment cannot be completed before it starts")
            self._change(session, caller, row, Status.completed, None)
        await events.appointment_changed(self._bus, row, "completed")
        return row

    async def no_show(self, principal: Principal | None, appointment_id: int) -> Appointment:
        """Mark that the patient did not come: its doctor, after start + the grace period."""
        caller = require(principal, Role.doctor)
        async with self._sessions.begin() as session:
            row = await self._locked(session, appointment_id)
            if row.doctor_id != caller.id:
                raise Forbidden("only the appointment's doctor may mark a no-show")
            policy = schedules.policy_of(await schedules.load_row(session, row.doctor_id))
            grace = timedelta(minutes=policy.no_show_grace_minutes)
            if row.status is Status.scheduled and self._clock() < row.start_at + grace:
                minutes = policy.no_show_grace_minutes
                raise InvalidTransition(
                    f"a no-show can be marked {minutes} minutes after the start"
                )
            self._change(session, caller, row, Status.no_show, None)
        await events.appointment_changed(self._bus, row, "no_show")
        return row

    async def history(
        self, principal: Principal | None, appointment_id: int
    ) -> Sequence[AppointmentEvent]:
        """Every state change of an appointment: for its patient, its doctor and admins."""
        caller = require(principal)
        async with self._sessions() as session:
            row = await session.get(Appointment, appointment_id)
            if row is None:
                raise NotFound(f"appointment {appointment_id} not found")
            if not _involved(caller, row):
                raise Forbidden("you may not read this appointment's history")
            query = (
                select(AppointmentEvent)
                .where(AppointmentEvent.appointment_id == appointment_id)
                .order_by(AppointmentEvent.id)
            )
            return (await session.scalars(query)).all()

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
        doctor's current hours no longer cover it (a change of hours never moves one)."""
        caller = require(principal)
        if not (caller.role is Role.admin or caller.is_(Role.doctor, did)):
            raise Forbidden("you may not read this doctor's appointments")
        async with self._sessions() as session:
            hours = await schedules.load(session, did)
        rows = await self._list(Appointment.doctor_id == did)
        return [(row, not availability.covers(hours, row.start_at)) for row in rows]

    async def _locked(self, session: AsyncSession, appointment_id: int) -> Appointment:
        row = await session.get(Appointment, appointment_id, with_for_update=True)
        if row is None:
            raise NotFound(f"appointment {appointment_id} not found")
        return row

    def _change(
        self,
        session: AsyncSession,
        caller: Principal,
        row: Appointment,
        to: Status,
        why: str | None,
    ) -> None:
        before = row.status
        transition(row, to)
        session.add(
            AppointmentEvent(
                appointment_id=row.id,
                from_status=before.value,
                to_status=to.value,
                reason=why,
                at=self._clock(),
                **actor(caller),
            )
        )

    async def _list(self, where: ColumnElement[bool]) -> Sequence[Appointment]:
        query = select(Appointment).where(where).order_by(Appointment.start_at, Appointment.id)
        async with self._sessions() as session:
            return (await session.scalars(query)).unique().all()
