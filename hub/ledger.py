from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Select,
    Table,
    bindparam,
    case,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from hub import appointments, availability, events, idempotency, notices, schedules, visits
from hub.auth import Principal
from hub.driver import Statement
from hub.errors import AlreadyBooked, NotFound, PatientBusy, SlotTaken, UnverifiedEmail
from hub.idempotency import Key
from hub.models import (
    Appointment,
    Doctor,
    OfferState,
    Patient,
    Schedule,
    Status,
    VisitType,
    Waiting,
    WaitlistEntry,
    WaitlistOffer,
)
from hub.protocol import AppointmentChange


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
    row, doctor_row, types = await _locked_bookable(session, doctor_id)
    patient_row, waiting = await _locked_patient(session, patient.id, doctor_id)
    if verified_only and patient_row.email_verified_at is None:
        raise UnverifiedEmail("verify your email address first: follow the link we sent")
    policy, offered = schedules.policy_of(row), schedules.availability_of(row)
    visit, hours = visits.choose(types, offered, visit_type_id, by or patient, doctor_id)
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
        # Not the unit of work: a refused INSERT leaves the transaction usable for asking
        # which key refused it, with no savepoint around it.
        inserted = await _INSERT.run(session, values)
    except IntegrityError as exc:
        raise await _conflict(session, exc, patient.id, start) from exc
    appointment = Appointment(id=inserted.lastrowid, cancel_reason=None, **values)
    reason = f"rescheduled from {moved_from}" if moved_from else None
    await appointments.record_new(session, appointment, by or patient, now, reason)
    await events.record_slot(session, doctor_id, start, "booked")
    event: AppointmentChange = "rescheduled" if moved_from else "booked"
    await events.record_appointment(
        session, appointment, event, previous_id=moved_from, patient_name=_name(patient_row)
    )
    if key is not None:
        await idempotency.record(session, key, appointment.id, now)
    if waiting:
        await _leave_waitlist(session, patient.id, doctor_id, start, now)
    zone = notices.zone_of(patient_row.timezone, offered.zone)
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


# The hot path's statements, built once (building a statement costs more than running it),
# of the tables' columns: Core statements, whose rows the ORM neither compiles nor loads.
_APPOINTMENTS = cast(Table, Appointment.__table__)
_A = _APPOINTMENTS.c
_PATIENT = cast(Table, Patient.__table__).c
_DOCTORS = cast(Table, Doctor.__table__)
_DOCTOR = _DOCTORS.c
_SCHEDULES = cast(Table, Schedule.__table__)
_TYPES = cast(Table, VisitType.__table__)
_TYPE = _TYPES.c
_ENTRIES = cast(Table, WaitlistEntry.__table__)
_ENTRY = _ENTRIES.c
_OFFERS = cast(Table, WaitlistOffer.__table__)
_OFFER = _OFFERS.c
# The patient locked: their names, the zone their reminders keep quiet hours in, and whether
# they wait on the doctor's waitlist. Only joining a waitlist makes a live entry, under the
# schedule's lock that a booking holds already: a booking of a patient who is not waiting
# sends no UPDATE of the waitlist.
_WAITING = (
    select(_ENTRY.id)
    .where(
        _ENTRY.patient_id == bindparam("id"),
        _ENTRY.doctor_id == bindparam("doctor"),
        _ENTRY.live.is_not(None),
    )
    .exists()
)
_LOCKED_PATIENT = Statement(
    select(
        _PATIENT.first_name,
        _PATIENT.last_name,
        _PATIENT.timezone,
        _PATIENT.email_verified_at,
        _WAITING.label("waiting"),
    )
    .where(_PATIENT.id == bindparam("id"))
    .with_for_update()
)
_BOOKABLE = select(_DOCTOR.first_name, _DOCTOR.last_name).where(
    _DOCTOR.id == bindparam("id"), _DOCTOR.approved.is_(True), _DOCTOR.active.is_(True)
)
# No appointment the hub makes is longer (a visit type is 8 hours at most): the clash query
# looks back this far from a start, so each of its parts is a range of one index.
LONGEST = timedelta(hours=24)
_CLASH_COLUMNS = (_A.doctor_id, _A.patient_id, _A.start_at, _A.end_at)


def _overlapping(party: Any, name: str) -> Select[int, int, datetime, datetime]:
    """Active appointments of the doctor (or the patient) overlapping start..end, but for
    one at the same start (the UNIQUE keys' job)."""
    return select(*_CLASH_COLUMNS).where(
        party == bindparam(name),
        _A.start_at > bindparam("since"),
        _A.start_at < bindparam("end"),
        _A.active.is_not(None),
        _A.end_at > bindparam("start"),
        _A.start_at != bindparam("start"),
    )


# One round trip, three index ranges (an OR across them read every appointment there is).
_CLASHES = Statement(
    union_all(
        _overlapping(_A.doctor_id, "doctor_id"),
        _overlapping(_A.patient_id, "patient_id"),
        select(*_CLASH_COLUMNS).where(  # an upcoming one of the patient with this doctor
            _A.patient_id == bindparam("patient_id"),
            _A.start_at > bindparam("one_from"),
            _A.doctor_id == bindparam("doctor_id"),
            _A.status == Status.scheduled,
            _A.active.is_not(None),
            _A.id != bindparam("besides"),
        ),
    )
)
_INSERT = Statement.into(_APPOINTMENTS)
# Booked with the doctor, by any path: off the doctor's waitlist. The offer of this very
# start was accepted (its hold is the booking's, let go after commit); any other open offer
# is withdrawn and its hold let go by the waitlist's loop (hub.waitlist). Core statements:
# the ORM's bulk UPDATE costs more than the rest of a booking's reads together.
_ENTRIES_END = (
    update(_ENTRIES)
    .where(
        _ENTRY.patient_id == bindparam("patient"),
        _ENTRY.doctor_id == bindparam("doctor"),
        _ENTRY.live.is_not(None),
    )
    .values(status=Waiting.booked.value, updated_at=bindparam("now"))
)
_THIS_START = _OFFER.start_at == bindparam("start")
_OFFERS_END = (
    update(_OFFERS)
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


async def _locked_patient(
    session: AsyncSession, patient_id: int, doctor_id: int
) -> tuple[Patient, bool]:
    # Only what the answer shows of them (their names), not the whole row (a password hash).
    rows = await _LOCKED_PATIENT.rows(session, {"id": patient_id, "doctor": doctor_id})
    if not rows:
        raise NotFound(f"patient {patient_id} not found")
    found = rows[0]
    person = Patient(
        id=patient_id,
        first_name=found.first_name,
        last_name=found.last_name,
        timezone=found.timezone,
        email_verified_at=found.email_verified_at,
    )
    return person, bool(found.waiting)


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
        return  # no longer waiting (the daily sweep ended the entry); an offer has a live one
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


# The schedule row locked (and with it the visit types, which change only under it), the
# doctor's names, and their visit types in order: one row per type, or one with no type.
_SCHEDULE_KEYS = tuple(_SCHEDULES.c.keys())
_LOCKED_BOOKABLE = Statement(
    select(
        _SCHEDULES,
        _DOCTOR.first_name,
        _DOCTOR.last_name,
        _TYPE.id.label("type_id"),
        _TYPE.name.label("type_name"),
        _TYPE.minutes,
        _TYPE.buffer_minutes.label("type_buffer"),
        _TYPE.online,
    )
    .join(_DOCTORS, _DOCTOR.id == _SCHEDULES.c.doctor_id)
    .outerjoin(_TYPES, _TYPE.doctor_id == _SCHEDULES.c.doctor_id)
    .where(
        _SCHEDULES.c.doctor_id == bindparam("id"),
        _DOCTOR.approved.is_(True),
        _DOCTOR.active.is_(True),
    )
    .order_by(_TYPE.position, _TYPE.id)
    .with_for_update()
)


async def _locked_bookable(
    session: AsyncSession, doctor_id: int
) -> tuple[Schedule, Doctor, list[visits.Visit]]:
    # The doctor's schedule row locked (as events.locked_schedule locks it, and noted so that
    # the events written after do not lock it again), the doctor's names and visit types, in
    # one query, if patients may book them.
    found = await _LOCKED_BOOKABLE.rows(session, {"id": doctor_id})
    if not found:
        raise NotFound(f"doctor {doctor_id} not found")
    first = found[0]
    types = [
        visits.Visit(r.type_id, r.type_name, r.minutes, r.type_buffer, r.online)
        for r in found
        if r.type_id is not None
    ]
    doctor = Doctor(id=doctor_id, first_name=first.first_name, last_name=first.last_name)
    return _attached(session, first._asdict()), doctor, types


def _attached(session: AsyncSession, row: Any) -> Schedule:
    """The locked schedule row, as the session's own: the one it holds already (a reschedule
    locked it first), or this row attached as loaded (changed and flushed like any other)."""
    locked: dict[int, Schedule] = session.info.setdefault(events.LOCKED, {})
    doctor_id = row["doctor_id"]
    if doctor_id not in locked:
        present = session.identity_map.get(identity_key(Schedule, doctor_id))
        if present is None:
            present = Schedule(**{key: row[key] for key in _SCHEDULE_KEYS})
            make_transient_to_detached(present)
            session.add(present)
        locked[doctor_id] = present
    return locked[doctor_id]


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
    found = await _CLASHES.rows(
        session,
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
