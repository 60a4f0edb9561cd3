"""A patient's own data: everything the hub holds about them, and their account's erasure.

Erasure keeps the doctors' appointment records (who was seen when is the clinic's record to
keep) with the patient anonymised: every personal field replaced, the account unusable and
its sessions ended. An account with an upcoming appointment is not erased: cancel it first
(the slot then goes back to others, announced as any cancellation is).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import or_, select, update

from hub import access
from hub.auth import Passwords, Principal, require
from hub.clock import Clock
from hub.db import SessionFactory
from hub.errors import Conflict, Forbidden, NotFound
from hub.models import (
    Appointment,
    AppointmentEvent,
    AuditEvent,
    Gender,
    Patient,
    Status,
    Waiting,
    WaitlistEntry,
)

UNUSABLE_HASH = "!erased"  # no password verifies against it


@dataclass(frozen=True, slots=True)
class Export:
    patient: Patient
    appointments: list[tuple[Appointment, list[AppointmentEvent]]]
    audit: list[AuditEvent]
    waitlist: list[WaitlistEntry]


async def export(sessions: SessionFactory, principal: Principal | None, pid: int) -> Export:
    """Everything about the patient: their record, every appointment with its history, every
    waitlist entry, and every audit row of their record or by them. For that patient and
    admins."""
    access.ensure(access.manages_patient(require(principal), pid), "only the patient and admins")
    async with sessions() as session:
        patient = await session.get(Patient, pid)
        if patient is None:
            raise NotFound(f"patient {pid} not found")
        rows = (
            await session.scalars(
                select(Appointment).where(Appointment.patient_id == pid).order_by(Appointment.id)
            )
        ).all()
        ids = [row.id for row in rows]
        events = (
            await session.scalars(
                select(AppointmentEvent)
                .where(AppointmentEvent.appointment_id.in_(ids))
                .order_by(AppointmentEvent.id)
            )
        ).all()
        trail = (
            await session.scalars(
                select(AuditEvent)
                .where(
                    or_(
                        AuditEvent.resource == f"patient:{pid}",
                        (AuditEvent.actor_role == "patient") & (AuditEvent.actor_id == pid),
                    )
                )
                .order_by(AuditEvent.id)
            )
        ).all()
        waits = (
            await session.scalars(
                select(WaitlistEntry)
                .where(WaitlistEntry.patient_id == pid)
                .order_by(WaitlistEntry.id)
            )
        ).all()
    history: dict[int, list[AppointmentEvent]] = {id_: [] for id_ in ids}
    for event in events:
        history[event.appointment_id].append(event)
    return Export(patient, [(row, history[row.id]) for row in rows], list(trail), list(waits))


async def erase(
    sessions: SessionFactory,
    passwords: Passwords,
    principal: Principal | None,
    pid: int,
    current_password: str | None,
    clock: Clock,
) -> None:
    """Anonymise the patient's account: that patient (with their current password) or an
    admin. Refused (409) while they have an upcoming appointment."""
    caller = require(principal)
    access.ensure(access.manages_patient(caller, pid), "only the patient and admins")
    async with sessions() as session:
        stored = await session.scalar(select(Patient.password_hash).where(Patient.id == pid))
    if stored is None:
        raise NotFound(f"patient {pid} not found")
    if not access.is_admin(caller) and not (
        current_password and await passwords.verify(stored, current_password)
    ):
        raise Forbidden("erasing your account needs your current password")
    async with sessions.begin() as session:
        patient = await session.get(Patient, pid, with_for_update=True)
        if patient is None:
            raise NotFound(f"patient {pid} not found")
        upcoming = await session.scalar(
            select(Appointment.id).where(
                Appointment.patient_id == pid,
                Appointment.status == Status.scheduled,
                Appointment.start_at > clock(),
            )
        )
        if upcoming is not None:
            raise Conflict("cancel the upcoming appointments first")
        for name, value in _anonymous(pid).items():
            setattr(patient, name, value)
        await session.execute(  # off every waitlist (an open offer lapses and moves on)
            update(WaitlistEntry)
            .where(WaitlistEntry.patient_id == pid, WaitlistEntry.live.is_not(None))
            .values(status=Waiting.left, updated_at=clock())
        )
        patient.session_epoch += 1


def _anonymous(pid: int) -> dict[str, Any]:
    return {
        "first_name": "Erased",
        "last_name": f"patient {pid}",
        "date_of_birth": date(1900, 1, 1),
        "gender": Gender.undisclosed,
        "email": f"erased-{pid}@erased.invalid",
        "phone": "00000",
        "address": None,
        "password_hash": UNUSABLE_HASH,
        "active": False,
        "feed_secret": None,  # the calendar feed goes with the account
    }
