from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    CompoundSelect,
    CursorResult,
    Select,
    Table,
    bindparam,
    case,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub import appointments, availability, events, idempotency, notices, schedules, visits
from hub.auth import Principal
from hub.errors import AlreadyBooked, NotFound, PatientBusy, SlotTaken, UnverifiedEmail
from hub.idempotency import Key
from hub.models import (
    Appointment,
    Doctor,
    OfferState,
    Patient,
    Schedule,
    Status,
    Waiting,
    WaitlistEntry,
    WaitlistOffer,
)
from hub.protocol import AppointmentChange

Person = TypeVar("Person", Patient, Doctor)


async def enter(
    session: AsyncSession,
    patient: Principal,
    doctor_id: int,
    start: datetime,
    now: datetime,
    *,
    key: Key | None = None,
    moved_from: int | None = None,
    by: Principal | None = None,
    visit_type_id: int | None = None,
    reason: str | None = None,
    notify: notices.Policy = notices.DEFAULT,
    verified_only: bool = False,
) -> Appointment:
    """Enter a new scheduled appointment of `patient` with a doctor, in the caller's
    transaction: refused (NotOffered, SlotTaken, PatientBusy, AlreadyBooked, FrontDeskOnly,
    UnverifiedEmail when `verified_only` and the patient's address is not verified)
    unless the start is offered for the visit type (`hub.visits.pick`) and free for both,
    recorded in its history, announced in the outbox, and returned with its doctor and
    patient (their names) for the edges to show. The database's occupancy (migration 0009)
    refuses it if it overlaps another of the doctor's, buffers included."""
    # The schedule's lock keeps the hours still until commit and orders the doctor's
    # versions; the patient's serialises their own bookings, so the one-per-doctor rule
    # cannot be raced. Lock order everywhere: schedule, appointment, patient.
    row, doctor_row = await _locked_bookable(session, doctor_id)
    patient_row = await _person(session, Patient, patient.id, lock=True)
    if verified_only and patient_row.email_verified_at is None:
        raise UnverifiedEmail("verify your email address first: follow the link we sent")
    policy = schedules.policy_of(row)
    visit, hours = await visits.chosen(
        session, doctor_id, schedules.availability_of(row), visit_type_id, by or patient
    )
    availability.check_offered(hours, start, now)
    end = start + hours.length
    await _refuse_clashes(
        session,
        doctor_id,
        patient.id,
        start,
        end,
        now if policy.one_per_patient else None,
        moved_from,
    )
    values = {
        "doctor_id": doctor_id,
        "patient_id": patient.id,
        "start_at": start,
        "end_at": end,
        "status": Status.scheduled,
        "late_cancel": False,
        "rescheduled_from_id": moved_from,
        "visit_type_id": visit.id,
        "buffer_minutes": visit.buffer_minutes,
        "reason": reason,
        "created_at": now,
        "updated_at": now,
    }
    try:
        # Core, not the unit of work: a refused INSERT leaves the transaction usable for
        # asking which key refused it, with no savepoint around it.
        inserted = cast(CursorResult[Any], await session.execute(_INSERT, values))
    except IntegrityError as exc:
        raise await _conflict(session, exc, patient.id, start) from exc
    key_of = inserted.inserted_primary_key
    assert key_of is not None
    appointment = Appointment(id=key_of[0], cancel_reason=None, **values)
    reason = f"rescheduled from {moved_from}" if moved_from else None
    appointments.record(session, appointment, by or patient, now, reason=reason)
    await events.record_slot(session, doctor_id, start, "booked")
    event: AppointmentChange = "rescheduled" if moved_from else "booked"
    await events.record_appointment(
        session, appointment, event, previous_id=moved_from, patient_name=_name(patient_row)
    )
    if key is not None:
        await idempotency.record(session, key, appointment.id, now)
    await _leave_waitlist(session, patient.id, doctor_id, start, now)
    zone = notices.zone_of(patient_row.timezone, schedules.availability_of(row).zone)
    await notices.write(
        session,
        notices.booked_rows(
            notify,
            patient_id=patient.id,
            appointment_id=appointment.id,
            start=start,
            now=now,
            zone=zone,
            moved=moved_from is not None,
        ),
    )
    # What the edges show of it, from the rows this transaction read: no second read.
    appointment.doctor, appointment.patient = doctor_row, patient_row
    return appointment


# The hot path's statements, built once (building a statement costs more than running it).
_NAMES = {
    table: select(table.first_name, table.last_name).where(table.id == bindparam("id"))
    for table in (Patient, Doctor)
}
# The patient locked: their names, and the zone their reminders keep quiet hours in.
_LOCKED_PATIENT = (
    select(Patient.first_name, Patient.last_name, Patient.timezone, Patient.email_verified_at)
    .where(Patient.id == bindparam("id"))
    .with_for_update()
)
_BOOKABLE = _NAMES[Doctor].where(Doctor.approved.is_(True), Doctor.active.is_(True))
# No appointment the hub makes is longer (a visit type is 8 hours at most): the clash query
# looks back this far from a start, so each of its parts is a range of one index.
LONGEST = timedelta(hours=24)
_CLASH_COLUMNS = (
    Appointment.doctor_id,
    Appointment.patient_id,
    Appointment.start_at,
    Appointment.end_at,
)


def _overlapping(party: Any, name: str) -> Select[int, int, datetime, datetime]:
    """Active appointments of the doctor (or the patient) overlapping start..end, but for
    one at the same start (the UNIQUE keys' job)."""
    return select(*_CLASH_COLUMNS).where(
        party == bindparam(name),
        Appointment.start_at > bindparam("since"),
        Appointment.start_at < bindparam("end"),
        Appointment.active.is_not(None),
        Appointment.end_at > bindparam("start"),
        Appointment.start_at != bindparam("start"),
    )


# One round trip, three index ranges (an OR across them read every appointment there is).
_CLASHES: CompoundSelect[int, int, datetime, datetime] = union_all(
    _overlapping(Appointment.doctor_id, "doctor_id"),
    _overlapping(Appointment.patient_id, "patient_id"),
    select(*_CLASH_COLUMNS).where(  # an upcoming one of the patient with this doctor
        Appointment.patient_id == bindparam("patient_id"),
        Appointment.start_at > bindparam("one_from"),
        Appointment.doctor_id == bindparam("doctor_id"),
        Appointment.status == Status.scheduled,
        Appointment.active.is_not(None),
        Appointment.id != bindparam("besides"),
    ),
)
_INSERT = insert(cast(Table, Appointment.__table__))  # Core: no ORM bulk machinery
# Booked with the doctor, by any path: off the doctor's waitlist. The offer of this very
# start was accepted (its hold is the booking's, let go after commit); any other open offer
# is withdrawn and its hold let go by the waitlist's loop (hub.waitlist). Core statements:
# the ORM's bulk UPDATE costs more than the rest of a booking's reads together.
_ENTRY = cast(Table, WaitlistEntry.__table__).c
_OFFER = cast(Table, WaitlistOffer.__table__).c
_ENTRIES_END = (
    update(cast(Table, WaitlistEntry.__table__))
    .where(
        _ENTRY.patient_id == bindparam("patient"),
        _ENTRY.doctor_id == bindparam("doctor"),
        _ENTRY.live.is_not(None),
    )
    .values(status=Waiting.booked.value, updated_at=bindparam("now"))
)
_THIS_START = _OFFER.start_at == bindparam("start")
_OFFERS_END = (
    update(cast(Table, WaitlistOffer.__table__))
    .where(
        _OFFER.patient_id == bindparam("patient"),
        _OFFER.doctor_id == bindparam("doctor"),
        _OFFER.state == OfferState.open.value,
    )
    .values(
        state=case((_THIS_START, OfferState.accepted.value), else_=OfferState.withdrawn.value),
        ended_at=bindparam("now"),
        hold_id=case((_THIS_START, None), else_=_OFFER.hold_id),
    )
)
NEVER = datetime(9999, 1, 1, tzinfo=UTC)


async def _person(
    session: AsyncSession, table: type[Person], id_: int, *, lock: bool = False
) -> Person:
    # Only what the answer shows of them (their names), not the whole row (a password hash).
    query = _LOCKED_PATIENT if lock else _NAMES[table]
    found = (await session.execute(query, {"id": id_})).first()
    if found is None:
        raise NotFound(f"{table.__tablename__[:-1]} {id_} not found")
    person = table(id=id_, first_name=found.first_name, last_name=found.last_name)
    if lock:
        person.timezone = found.timezone
        person.email_verified_at = found.email_verified_at
    return person


async def bookable_doctor(session: AsyncSession, doctor_id: int) -> Doctor:
    """The doctor (their names), if patients may book them: approved by an admin and active."""
    found = (await session.execute(_BOOKABLE, {"id": doctor_id})).first()
    if found is None:
        raise NotFound(f"doctor {doctor_id} not found")
    return Doctor(id=doctor_id, first_name=found.first_name, last_name=found.last_name)


async def _leave_waitlist(
    session: AsyncSession, patient_id: int, doctor_id: int, start: datetime, now: datetime
) -> None:
    params = {"patient": patient_id, "doctor": doctor_id, "start": start, "now": now}
    left = cast(CursorResult[Any], await session.execute(_ENTRIES_END, params))
    if not left.rowcount:
        return  # not waiting for this doctor (an open offer has a live entry)
    ended = cast(CursorResult[Any], await session.execute(_OFFERS_END, params))
    if ended.rowcount:
        offers = await session.scalars(
            select(WaitlistOffer).where(
                WaitlistOffer.patient_id == patient_id,
                WaitlistOffer.doctor_id == doctor_id,
                WaitlistOffer.ended_at == now,
            )
        )
        for offer in offers:
            events.record_offer(session, offer)


_LOCKED_BOOKABLE = (
    select(Schedule, Doctor.first_name, Doctor.last_name)
    .join(Doctor, Doctor.id == Schedule.doctor_id)
    .where(
        Schedule.doctor_id == bindparam("id"),
        Doctor.approved.is_(True),
        Doctor.active.is_(True),
    )
    .with_for_update()
)


async def _locked_bookable(session: AsyncSession, doctor_id: int) -> tuple[Schedule, Doctor]:
    # The doctor's schedule row locked (as events.locked_schedule locks it, and noted so that
    # the events written after do not lock it again) and the doctor's names, in one query,
    # if patients may book them.
    found = (await session.execute(_LOCKED_BOOKABLE, {"id": doctor_id})).first()
    if found is None:
        raise NotFound(f"doctor {doctor_id} not found")
    schedule, first_name, last_name = found
    session.info.setdefault(events.LOCKED, {})[doctor_id] = schedule
    return schedule, Doctor(id=doctor_id, first_name=first_name, last_name=last_name)


def _name(person: Patient | Doctor) -> str:
    return f"{person.first_name} {person.last_name}"


async def _refuse_clashes(
    session: AsyncSession,
    doctor_id: int,
    patient_id: int,
    start: datetime,
    end: datetime,
    one_from: datetime | None,
    besides: int | None,
) -> None:
    # One query for two rules. Same-start clashes are the UNIQUE keys' job; this catches
    # appointments of another length (made before the doctor changed the slot length) that
    # overlap this one; and, when the doctor allows one upcoming appointment per patient
    # (`one_from` is now), one the patient already has with them.
    found = (
        await session.execute(
            _CLASHES,
            {
                "start": start,
                "end": end,
                "since": start - LONGEST,
                "doctor_id": doctor_id,
                "patient_id": patient_id,
                "one_from": one_from or NEVER,
                "besides": besides or 0,
            },
        )
    ).all()
    overlapping = [
        r for r in found if r.start_at < end and r.end_at > start and r.start_at != start
    ]
    for other in overlapping:
        if other.patient_id == patient_id:
            raise PatientBusy("you already have an appointment at this time")
    if overlapping:
        raise SlotTaken("the doctor has an appointment overlapping this slot")
    if found:
        raise AlreadyBooked("you already have an upcoming appointment with this doctor")


async def _conflict(
    session: AsyncSession, exc: IntegrityError, patient_id: int, start: datetime
) -> Exception:
    # Which UNIQUE key a database reports first differs between engines; ask the rows. The
    # occupancy's key refuses an overlap (buffers included) that the clash query let by.
    if not any(key in str(exc.orig) for key in ("_slot", "appointments.", "occupancy")):
        return exc
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
