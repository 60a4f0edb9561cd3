from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import availability, events, schedules
from hub.auth import Principal, Role, require
from hub.booking import Clock, actor, late_cancel, transition, utcnow
from hub.db import SessionFactory, transaction
from hub.errors import Forbidden, InvalidTransition, NotFound
from hub.events import Relay
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

    def __init__(self, sessions: SessionFactory, relay: Relay, clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._relay = relay
        self._clock = clock

    async def cancel(
        self, principal: Principal | None, appointment_id: int, reason: str | None = None
    ) -> Appointment:
        """Cancel a scheduled appointment: its patient (within the doctor's cutoff policy),
        its doctor or an admin. The slot is free again at once."""
        caller = require(principal)
        doctor_id = await self._doctor_of(appointment_id)

        async def work(session: AsyncSession) -> Appointment:
            schedule = await schedules.load_row(session, doctor_id, lock=True)
            row = await self._locked(session, appointment_id)
            if not _involved(caller, row):
                raise Forbidden("you may not cancel this appointment")
            if row.status is Status.scheduled:
                policy = schedules.policy_of(schedule)
                row.late_cancel = late_cancel(caller, row, policy, self._clock())
            self._change(session, caller, row, Status.cancelled, reason)
            row.cancel_reason = reason
            await events.record_slot(session, row.doctor_id, row.start_at, "free")
            await events.record_appointment(session, row, "cancelled", late=row.late_cancel)
            return row

        row = await transaction(self._sessions, work)
        await self._relay.flush_quietly()
        return row

    async def complete(self, principal: Principal | None, appointment_id: int) -> Appointment:
        """Mark an appointment completed: its doctor, at or after its start."""
        caller = require(principal, Role.doctor)

        async def work(session: AsyncSession) -> Appointment:
            row = await self._locked(session, appointment_id)
            if row.doctor_id != caller.id:
                raise Forbidden("only the appointment's doctor may complete it")
            if row.status is Status.scheduled and row.start_at > self._clock():
                raise InvalidTransition("an appointment cannot be completed before it starts")
            self._change(session, caller, row, Status.completed, None)
            await events.record_appointment(session, row, "completed")
            return row

        row = await transaction(self._sessions, work)
        await self._relay.flush_quietly()
        return row

    async def no_show(self, principal: Principal | None, appointment_id: int) -> Appointment:
        """Mark that the patient did not come: its doctor, after start + the grace period."""
        caller = require(principal, Role.doctor)
        doctor_id = await self._doctor_of(appointment_id)

        async def work(session: AsyncSession) -> Appointment:
            schedule = await schedules.load_row(session, doctor_id)
            row = await self._locked(session, appointment_id)
            if row.doctor_id != caller.id:
                raise Forbidden("only the appointment's doctor may mark a no-show")
            minutes = schedules.policy_of(schedule).no_show_grace_minutes
            if row.status is Status.scheduled and self._clock() < row.start_at + timedelta(
                minutes=minutes
            ):
                raise InvalidTransition(f"a no-show can be marked {minutes} min after the start")
            self._change(session, caller, row, Status.no_show, None)
            await events.record_appointment(session, row, "no_show")
            return row

        row = await transaction(self._sessions, work)
        await self._relay.flush_quietly()
        return row

    async def _doctor_of(self, appointment_id: int) -> int:
        async with self._sessions() as session:
            doctor_id = await session.scalar(
                select(Appointment.doctor_id).where(Appointment.id == appointment_id)
            )
        if doctor_id is None:
            raise NotFound(f"appointment {appointment_id} not found")
        return doctor_id

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
