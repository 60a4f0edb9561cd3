from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import access, appointments, availability, events, notices, schedules
from hub.appointments import PARTIES
from hub.auth import Principal, Role, require
from hub.clock import Clock, utcnow
from hub.db import SessionFactory
from hub.errors import InvalidInput, InvalidTransition, NotFound
from hub.models import Appointment, AppointmentEvent, Notice, Status
from hub.relay import Relay


def _party(caller: Principal, row: Appointment) -> bool:
    return access.party_to(caller, doctor_id=row.doctor_id, patient_id=row.patient_id)


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
        its doctor, the front desk (both giving the patient a reason) or an admin. The slot
        is free again at once, and the patient's feed says who cancelled and why."""
        caller = require(principal)
        reason = reason.strip() if reason else None
        doctor_id = await self._doctor_of(appointment_id)

        async def work(session: AsyncSession) -> Appointment:
            schedule = await schedules.load_row(session, doctor_id, lock=True)
            row = await _locked(session, appointment_id)
            access.ensure(_party(caller, row), "you may not cancel this appointment")
            for_someone = caller.role in (Role.doctor, Role.staff)
            if row.status is Status.scheduled and for_someone and not reason:
                raise InvalidInput(
                    "tell the patient why their appointment is cancelled",
                    [{"field": "reason", "message": "required when you cancel for a patient"}],
                )
            policy = schedules.policy_of(schedule)
            appointments.cancel(session, row, caller, policy, self._clock(), reason)
            await events.record_slot(session, row.doctor_id, row.start_at, "free")
            await events.record_appointment(
                session, row, "cancelled", late=row.late_cancel, by=caller.role, reason=reason
            )
            told: dict[str, object] = {"by": caller.role.value, "reason": reason}
            await notices.write(
                session,
                [
                    notices.rows(
                        Notice.cancelled,
                        "patient",
                        row.patient_id,
                        self._clock(),
                        appointment_id=row.id,
                        start=row.start_at,
                        payload=told,
                    )
                ],
            )
            return row

        return await self._commit(work)

    async def complete(self, principal: Principal | None, appointment_id: int) -> Appointment:
        """Mark an appointment completed: its doctor, at or after its start."""
        caller = require(principal, Role.doctor)

        async def work(session: AsyncSession) -> Appointment:
            row = await _locked(session, appointment_id, caller, "complete it")
            now = self._clock()
            if row.status is Status.scheduled and row.start_at > now:
                raise InvalidTransition("an appointment cannot be completed before it starts")
            appointments.change(session, row, Status.completed, caller, now)
            await events.record_appointment(session, row, "completed")
            return row

        return await self._commit(work)

    async def no_show(self, principal: Principal | None, appointment_id: int) -> Appointment:
        """Mark that the patient did not come: its doctor, after start + the grace period."""
        caller = require(principal, Role.doctor)
        doctor_id = await self._doctor_of(appointment_id)

        async def work(session: AsyncSession) -> Appointment:
            schedule = await schedules.load_row(session, doctor_id)
            row = await _locked(session, appointment_id, caller, "mark a no-show")
            minutes = schedules.policy_of(schedule).no_show_grace_minutes
            now = self._clock()
            if row.status is Status.scheduled and now < row.start_at + timedelta(minutes=minutes):
                raise InvalidTransition(f"a no-show can be marked {minutes} min after the start")
            appointments.change(session, row, Status.no_show, caller, now)
            await events.record_appointment(session, row, "no_show")
            return row

        return await self._commit(work)

    async def _commit(self, work: Callable[[AsyncSession], Awaitable[Appointment]]) -> Appointment:
        return await self._relay.transaction(work)  # published after commit, never before

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
            row = await appointments.find(session, appointment_id)
            access.ensure(_party(caller, row), "you may not read this appointment's history")
            query = (
                select(AppointmentEvent)
                .where(AppointmentEvent.appointment_id == appointment_id)
                .order_by(AppointmentEvent.id)
            )
            return (await session.scalars(query)).all()

    async def for_patient(self, principal: Principal | None, pid: int) -> Sequence[Appointment]:
        """A patient's appointments: for that patient, the front desk and admins."""
        caller = require(principal)
        access.ensure(
            access.manages_patient(caller, pid) or access.is_staff(caller),
            "you may not read this patient's appointments",
        )
        return await self._list(Appointment.patient_id == pid)

    async def for_doctor(
        self, principal: Principal | None, did: int
    ) -> list[tuple[Appointment, bool]]:
        """A doctor's appointments (for that doctor, the front desk and admins), each with
        whether the doctor's current hours no longer cover it (a change of hours never moves
        one)."""
        caller = require(principal)
        access.ensure(
            access.manages_doctor(caller, did) or access.is_staff(caller),
            "you may not read this doctor's appointments",
        )
        async with self._sessions() as session:
            hours = await schedules.load(session, did)
        rows = await self._list(Appointment.doctor_id == did)
        return [(row, not availability.covers(hours, row.start_at)) for row in rows]

    async def _list(self, where: ColumnElement[bool]) -> Sequence[Appointment]:
        query = (
            select(Appointment)
            .where(where)
            .options(*PARTIES)
            .order_by(Appointment.start_at, Appointment.id)
        )
        async with self._sessions() as session:
            return (await session.scalars(query)).all()


async def _locked(
    session: AsyncSession,
    appointment_id: int,
    doctor: Principal | None = None,
    action: str = "",
) -> Appointment:
    # Only the appointment's row is locked; its doctor and patient are read for the edges.
    # With `doctor`: only the appointment's doctor may take this `action`.
    row = await appointments.find(session, appointment_id, lock=True, parties=True)
    if doctor is not None:
        access.ensure(row.doctor_id == doctor.id, f"only the appointment's doctor may {action}")
    return row
