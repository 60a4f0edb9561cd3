from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload

from hub import access
from hub.auth import Principal, require
from hub.db import SessionFactory
from hub.errors import InvalidInput
from hub.models import Appointment, Doctor, Schedule, Status, VisitType

# What the DATETIME columns hold, with the day either side that the window is widened by.
FIRST_DAY, LAST_DAY = date(1000, 1, 2), date(9999, 12, 29)


@dataclass(frozen=True, slots=True)
class Entry:
    """One appointment of the day: its row (with its patient loaded), the name of its visit
    type (None: the doctor's implicit type, or one since removed), and for one that was
    rescheduled away, the start it was moved to."""

    appointment: Appointment
    visit_type: str | None
    moved_to: datetime | None


@dataclass(frozen=True, slots=True)
class DoctorDay:
    """A doctor (with their specialization loaded), the zone their day is counted in, and
    that day's appointments in order of start."""

    doctor: Doctor
    timezone: str
    entries: tuple[Entry, ...]


async def day(
    sessions: SessionFactory,
    principal: Principal | None,
    on: date,
    specialization_id: int | None = None,
) -> list[DoctorDay]:
    """The clinic's day (the front desk and admins): every active doctor (of one
    specialization, given `specialization_id`) with their appointments of every status
    that start on the date `on` in the doctor's own time zone, by name. A doctor who is
    not approved is listed only when they have appointments that day."""
    caller = require(principal)
    access.ensure(access.sees_clinic_day(caller), "only the front desk and admins see the day")
    if not FIRST_DAY <= on <= LAST_DAY:
        raise InvalidInput("date is out of range", [{"field": "date", "message": "out of range"}])
    # Every zone's day lies within a day either side of the UTC one.
    low = datetime.combine(on - timedelta(days=1), time(), tzinfo=UTC)
    high = datetime.combine(on + timedelta(days=2), time(), tzinfo=UTC)
    doctors = (
        select(Doctor)
        .options(joinedload(Doctor.specialization))
        .where(Doctor.active.is_(True))
        .order_by(Doctor.last_name, Doctor.first_name, Doctor.id)
    )
    if specialization_id is not None:
        doctors = doctors.where(Doctor.specialization_id == specialization_id)
    async with sessions() as session:
        listed = (await session.scalars(doctors)).unique().all()
        ids = [doctor.id for doctor in listed]
        zones_of = select(Schedule.doctor_id, Schedule.timezone).where(Schedule.doctor_id.in_(ids))
        zones = {doctor_id: zone for doctor_id, zone in await session.execute(zones_of)}
        rows = (
            await session.scalars(
                select(Appointment)
                .options(selectinload(Appointment.patient))
                .where(
                    Appointment.doctor_id.in_(ids),
                    Appointment.start_at >= low,
                    Appointment.start_at < high,
                )
                .order_by(Appointment.start_at, Appointment.id)
            )
        ).all()
        mine = [row for row in rows if _local_day(row, zones) == on]
        names = await _visit_names(session, mine)
        moves = await _moves(session, mine)
    by_doctor: dict[int, list[Entry]] = {}
    for row in mine:
        entry = Entry(row, names.get(row.visit_type_id), moves.get(row.id))
        by_doctor.setdefault(row.doctor_id, []).append(entry)
    return [
        DoctorDay(doctor, zones.get(doctor.id, "UTC"), tuple(by_doctor.get(doctor.id, ())))
        for doctor in listed
        if doctor.approved or doctor.id in by_doctor
    ]


def _local_day(row: Appointment, zones: dict[int, str]) -> date:
    return row.start_at.astimezone(ZoneInfo(zones.get(row.doctor_id, "UTC"))).date()


async def _visit_names(session: AsyncSession, rows: Sequence[Appointment]) -> dict[int | None, str]:
    wanted = {row.visit_type_id for row in rows if row.visit_type_id is not None}
    if not wanted:
        return {}
    found = await session.execute(
        select(VisitType.id, VisitType.name).where(VisitType.id.in_(wanted))
    )
    return {type_id: name for type_id, name in found}


async def _moves(session: AsyncSession, rows: Sequence[Appointment]) -> dict[int, datetime]:
    # A reschedule cancels the old row and books a new one naming it (rescheduled_from_id).
    gone = [row.id for row in rows if row.status is Status.cancelled]
    if not gone:
        return {}
    found = await session.execute(
        select(Appointment.rescheduled_from_id, Appointment.start_at).where(
            Appointment.rescheduled_from_id.in_(gone)
        )
    )
    return {old: start for old, start in found if old is not None}
