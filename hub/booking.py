from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub import availability, events, schedules
from hub.auth import Principal, Role, require
from hub.availability import Availability, Slot
from hub.db import SessionFactory, transaction
from hub.errors import (
    AlreadyBooked,
    Forbidden,
    HoldExpired,
    HoldsUnavailable,
    IdempotencyMismatch,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PatientBusy,
    SlotTaken,
    TooLate,
)
from hub.events import Relay
from hub.holds import Hold, HoldStore, SlotHeld
from hub.models import Appointment, AppointmentEvent, IdempotencyKey, Patient, Status
from hub.schedules import Policy

log = logging.getLogger("hub.booking")

Clock = Callable[[], datetime]
CLAIM_MS = 10_000  # how long a direct booking holds its slot while it writes
KEY_LIFETIME = timedelta(hours=48)  # an Idempotency-Key answers retries for at least this long


def utcnow() -> datetime:
    return datetime.now(UTC)


def actor(principal: Principal) -> dict[str, object]:
    return {"actor_role": principal.role.value, "actor_id": principal.id}


class Booking:
    """Holds, bookings and reschedules. A Redis hold (or its in-process twin) keeps contenders
    off a slot while one of them writes; the UNIQUE keys on appointments are the guarantee,
    so when the holds are unavailable booking still works on the database alone. Events go out
    after commit, never before."""

    def __init__(
        self,
        sessions: SessionFactory,
        holds: HoldStore,
        relay: Relay,
        *,
        hold_ttl: int = 120,
        max_holds: int = 3,
        clock: Clock = utcnow,
    ) -> None:
        self.sessions = self._sessions = sessions
        self._holds = holds
        self._relay = relay
        self._hold_ms = hold_ttl * 1000
        self._max_holds = max_holds
        self._clock = clock

    async def hold(self, principal: Principal | None, doctor_id: int, start: datetime) -> Hold:
        """Hold a free slot for the calling patient for a short time while they confirm."""
        caller = require(principal, Role.patient)
        start = await self._offered(doctor_id, start)
        async with self._sessions() as session:
            if await _booked(session, doctor_id, start):
                raise SlotTaken("this slot is already booked")
        current = await self._holds.holder(doctor_id, start)
        if current is not None and current.patient_id == caller.id:
            return current  # holding it already: the same hold, not a second one
        try:
            hold = await self._holds.take(
                Hold.new(doctor_id, start, caller.id), self._hold_ms, self._max_holds
            )
        except SlotHeld as exc:
            if exc.holder.patient_id != caller.id:
                raise
            return exc.holder  # holding it already: the same hold, not a second one
        await self._announce(doctor_id, start, "held")
        return hold

    async def release(self, principal: Principal | None, hold_id: str) -> None:
        """Give a held slot back: only the patient who holds it."""
        caller = require(principal, Role.patient)
        hold = Hold.parse(hold_id)
        if hold.patient_id != caller.id:
            raise Forbidden("only its holder releases a hold")
        if not await self._holds.release(hold):
            raise NotFound("no such live hold")
        await self._announce(hold.doctor_id, hold.start, "free")

    async def book(
        self,
        principal: Principal | None,
        doctor_id: int | None,
        start: datetime | None,
        *,
        patient_id: int | None = None,
        hold_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Appointment, bool]:
        """Book a slot for the calling patient, from their hold or directly. Returns the
        appointment and whether it is the replay of an earlier request with the same key."""
        caller = require(principal, Role.patient)
        if patient_id is not None and patient_id != caller.id:
            raise Forbidden("a patient books only for themselves")
        doctor_id, start, hold = _target(caller, doctor_id, start, hold_id)
        fingerprint = _fingerprint(doctor_id, start, hold_id)
        if idempotency_key is not None:
            replay = await self._replay(caller.id, idempotency_key, fingerprint)
            if replay is not None:
                return replay, True
        start = await self._offered(doctor_id, start)
        claim, kept, lapsed = await self._claim(caller.id, doctor_id, start, hold)
        done = False
        try:
            row_id = await transaction(
                self._sessions,
                lambda session: self._insert(
                    session, caller, doctor_id, start, key=(idempotency_key, fingerprint)
                ),
            )
            done = True
        except SlotTaken as exc:
            if lapsed:
                raise HoldExpired("your hold expired and the slot was taken") from exc
            raise
        except _Replayed:
            assert idempotency_key is not None
            return await self._get(await self._key_target(caller.id, idempotency_key)), True
        finally:
            if done or not kept:  # a failed booking leaves the patient's own hold in place
                await self._let_go(claim)
        await self._relay.flush_quietly()
        return await self._get(row_id), False

    async def reschedule(
        self,
        principal: Principal | None,
        appointment_id: int,
        start: datetime | None,
        hold_id: str | None = None,
    ) -> Appointment:
        """Move an appointment to another start (or to a held slot) of the same doctor in one
        transaction: the patient ends with the old appointment or the new one, never both."""
        caller = require(principal)
        async with self._sessions() as session:
            old = await session.get(Appointment, appointment_id)
        if old is None:
            raise NotFound(f"appointment {appointment_id} not found")
        if not (
            caller.role is Role.admin
            or caller.is_(Role.patient, old.patient_id)
            or caller.is_(Role.doctor, old.doctor_id)
        ):
            raise Forbidden("you may not reschedule this appointment")
        patient = Principal(Role.patient, old.patient_id)
        doctor_id, start, hold = _target(patient, old.doctor_id, start, hold_id)
        if doctor_id != old.doctor_id:
            raise InvalidInput(
                "a reschedule keeps the doctor",
                [{"field": "hold_id", "message": "the hold is for another doctor"}],
            )
        start = await self._offered(doctor_id, start)
        claim, kept, lapsed = await self._claim(old.patient_id, doctor_id, start, hold)
        done = False
        old_start = old.start_at

        async def move(session: AsyncSession) -> int:
            # Lock order everywhere: the doctor's schedule, then the appointment, then the
            # patient; so concurrent changes queue instead of deadlocking.
            schedule = await schedules.load_row(session, doctor_id, lock=True)
            current = await session.get(Appointment, appointment_id, with_for_update=True)
            assert current is not None
            if current.status is not Status.scheduled:
                transition(current, Status.cancelled)  # raises InvalidTransition
            late = late_cancel(caller, current, schedules.policy_of(schedule), self._clock())
            transition(current, Status.cancelled)
            current.cancel_reason = "rescheduled"
            current.late_cancel = late
            await session.flush()  # frees the old start for the patient's UNIQUE key
            session.add(
                AppointmentEvent(
                    appointment_id=current.id,
                    from_status=Status.scheduled.value,
                    to_status=Status.cancelled.value,
                    reason="rescheduled",
                    **actor(caller),
                )
            )
            await events.record_slot(session, doctor_id, old_start, "free")
            return await self._insert(
                session, patient, doctor_id, start, moved_from=current.id, by=caller
            )

        try:
            new_id = await transaction(self._sessions, move)
            done = True
        except SlotTaken as exc:
            if lapsed:
                raise HoldExpired("your hold expired and the slot was taken") from exc
            raise
        finally:
            if done or not kept:
                await self._let_go(claim)
        await self._relay.flush_quietly()
        return await self._get(new_id)

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
        try:
            held = set(await self._holds.held(doctor_id))
        except HoldsUnavailable:
            held = set()  # the calendar still shows what is booked
        booked = [(row.start_at, row.end_at) for row in active.values()]
        slots = availability.calendar(hours, first, last, now, booked, held)
        return hours, slots, active

    async def free_slots(self, doctor_id: int, day: date) -> list[datetime]:
        """The starts still free on a local date with a doctor (public)."""
        _, slots, _ = await self.calendar(doctor_id, day, day)
        return [slot.start for slot in slots if slot.state == "free"]

    async def sweep(self) -> int:
        """Announce the holds that lapsed (any process may run this); how many there were."""
        lapsed = await self._holds.sweep()
        for hold in lapsed:
            if await self._holds.holder(hold.doctor_id, hold.start) is not None:
                continue  # held again since: its new holder announced it

            async def announce(session: AsyncSession, hold: Hold = hold) -> None:
                await schedules.load_row(session, hold.doctor_id, lock=True)
                booked = await _booked(session, hold.doctor_id, hold.start)
                await events.record_slot(
                    session, hold.doctor_id, hold.start, "booked" if booked else "free"
                )

            await transaction(self._sessions, announce)
        if lapsed:
            await self._relay.flush_quietly()
        return len(lapsed)

    async def _announce(self, doctor_id: int, start: datetime, state: str) -> None:
        async def record(session: AsyncSession) -> None:
            await events.record_slot(session, doctor_id, start, state)

        await transaction(self._sessions, record)
        await self._relay.flush_quietly()

    async def _offered(self, doctor_id: int, start: datetime) -> datetime:
        async with self._sessions() as session:
            hours = await schedules.load(session, doctor_id)
        return availability.check_offered(hours, start, self._clock())

    async def _claim(
        self, patient_id: int, doctor_id: int, start: datetime, hold: Hold | None
    ) -> tuple[Hold | None, bool, bool]:
        """The hold this booking writes under, whether it is the patient's own hold from
        before (kept if the booking fails), and whether the hold they named had lapsed.
        Without holds (Redis down) the database guard alone decides."""
        try:
            current = await self._holds.holder(doctor_id, start)
            if current is not None and current.patient_id == patient_id:
                return current, True, False
            if current is not None:
                if hold is not None:
                    raise HoldExpired("your hold expired and someone else holds the slot")
                raise SlotHeld("someone else is holding this slot", current)
            claim = await self._holds.take(Hold.new(doctor_id, start, patient_id), CLAIM_MS, 0)
            return claim, False, hold is not None
        except SlotHeld as exc:
            if hold is not None:
                raise HoldExpired("your hold expired and someone else holds the slot") from exc
            raise
        except HoldsUnavailable as exc:
            log.warning("booking on the database guard alone: %s", exc.detail)
            return None, False, False

    async def _let_go(self, claim: Hold | None) -> None:
        if claim is None:
            return
        try:
            await self._holds.release(claim)
        except HoldsUnavailable as exc:
            log.warning("hold not released (it lapses by itself): %s", exc.detail)

    async def _insert(
        self,
        session: AsyncSession,
        patient: Principal,
        doctor_id: int,
        start: datetime,
        *,
        key: tuple[str | None, str] = (None, ""),
        moved_from: int | None = None,
        by: Principal | None = None,
    ) -> int:
        # The schedule's lock keeps the hours still until commit and orders the doctor's
        # versions; the patient's serialises their own bookings, so the one-per-doctor rule
        # cannot be raced. Lock order everywhere: schedule, appointment, patient.
        row = await schedules.load_row(session, doctor_id, lock=True)
        await session.get(Patient, patient.id, with_for_update=True)
        hours, policy = schedules.availability_of(row), schedules.policy_of(row)
        availability.check_offered(hours, start, self._clock())
        end = start + hours.slot
        await _refuse_overlaps(session, doctor_id, patient.id, start, end)
        if policy.one_per_patient and await _has_future(
            session, doctor_id, patient.id, self._clock(), moved_from
        ):
            raise AlreadyBooked("you already have an upcoming appointment with this doctor")
        appointment = Appointment(
            doctor_id=doctor_id,
            patient_id=patient.id,
            start_at=start,
            end_at=end,
            rescheduled_from_id=moved_from,
        )
        try:
            async with session.begin_nested():  # a savepoint: the rows can be asked after
                session.add(appointment)
        except IntegrityError as exc:
            raise await _conflict(session, exc, patient.id, start) from exc
        reason = f"rescheduled from {moved_from}" if moved_from else None
        session.add(
            AppointmentEvent(
                appointment_id=appointment.id,
                to_status=Status.scheduled.value,
                reason=reason,
                **actor(by or patient),
            )
        )
        await events.record_slot(session, doctor_id, start, "booked")
        extra = {"previous_id": moved_from} if moved_from else {}
        event = "rescheduled" if moved_from else "booked"
        await events.record_appointment(session, appointment, event, **extra)
        idempotency_key, fingerprint = key
        if idempotency_key is not None:
            session.add(
                IdempotencyKey(
                    patient_id=patient.id,
                    key=idempotency_key,
                    request_hash=fingerprint,
                    appointment_id=appointment.id,
                )
            )
            try:
                await session.flush()
            except IntegrityError as exc:  # the same key committed meanwhile: replay it
                raise _Replayed() from exc
        return appointment.id

    async def forget_keys(self, older_than: timedelta = KEY_LIFETIME) -> int:
        """Delete the idempotency keys past their lifetime (any process may run this); how
        many. A retry that late books anew, or meets slot_taken / already_booked."""
        cutoff = datetime.now(UTC) - older_than
        async with self._sessions.begin() as session:
            gone = await session.execute(
                delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff)
            )
        return int(cast(CursorResult[Any], gone).rowcount)

    async def _replay(self, patient_id: int, key: str, fingerprint: str) -> Appointment | None:
        async with self._sessions() as session:
            stored = await session.scalar(
                select(IdempotencyKey).where(
                    IdempotencyKey.patient_id == patient_id, IdempotencyKey.key == key
                )
            )
        if stored is None:
            return None
        if stored.request_hash != fingerprint:
            raise IdempotencyMismatch()
        return await self._get(stored.appointment_id)

    async def _key_target(self, patient_id: int, key: str) -> int:
        async with self._sessions() as session:
            found = await session.scalar(
                select(IdempotencyKey.appointment_id).where(
                    IdempotencyKey.patient_id == patient_id, IdempotencyKey.key == key
                )
            )
        if found is None:
            raise SlotTaken("this slot is already booked")
        return found

    async def _get(self, appointment_id: int) -> Appointment:
        async with self._sessions() as session:
            row = await session.get(Appointment, appointment_id)
        if row is None:
            raise NotFound(f"appointment {appointment_id} not found")
        return row


class _Replayed(Exception):
    """The same idempotency key was committed by a concurrent retry."""


def _target(
    patient: Principal, doctor_id: int | None, start: datetime | None, hold_id: str | None
) -> tuple[int, datetime, Hold | None]:
    if hold_id is None:
        if doctor_id is None or start is None:
            raise InvalidInput(
                "give hold_id, or doctor_id and scheduled_datetime",
                [{"field": "hold_id", "message": "required without doctor_id and a start"}],
            )
        return doctor_id, start.astimezone(UTC), None
    hold = Hold.parse(hold_id)
    if hold.patient_id != patient.id:
        raise Forbidden("this hold belongs to someone else")
    if (doctor_id is not None and doctor_id != hold.doctor_id) or (
        start is not None and start.astimezone(UTC) != hold.start
    ):
        raise InvalidInput(
            "the hold is for another slot",
            [{"field": "hold_id", "message": "does not match doctor_id and scheduled_datetime"}],
        )
    return hold.doctor_id, hold.start, hold


def _fingerprint(doctor_id: int, start: datetime, hold_id: str | None) -> str:
    body = json.dumps([doctor_id, events.utc_text(start), hold_id])
    return hashlib.sha256(body.encode()).hexdigest()


async def _booked(session: AsyncSession, doctor_id: int, start: datetime) -> bool:
    found = await session.scalar(
        select(Appointment.id).where(
            Appointment.doctor_id == doctor_id,
            Appointment.active.is_not(None),
            Appointment.start_at <= start,
            Appointment.end_at > start,
        )
    )
    return found is not None


async def _has_future(
    session: AsyncSession, doctor_id: int, patient_id: int, now: datetime, besides: int | None
) -> bool:
    query = select(Appointment.id).where(
        Appointment.doctor_id == doctor_id,
        Appointment.patient_id == patient_id,
        Appointment.status == Status.scheduled,
        Appointment.start_at > now,
    )
    if besides is not None:
        query = query.where(Appointment.id != besides)
    return (await session.scalar(query.limit(1))) is not None


async def _refuse_overlaps(
    session: AsyncSession, doctor_id: int, patient_id: int, start: datetime, end: datetime
) -> None:
    # Same-start clashes are the UNIQUE keys' job; these catch appointments of another
    # length (made before the doctor changed the slot length) that overlap this one.
    query = select(Appointment.doctor_id, Appointment.patient_id).where(
        Appointment.active.is_not(None),
        Appointment.start_at < end,
        Appointment.end_at > start,
        Appointment.start_at != start,
        (Appointment.doctor_id == doctor_id) | (Appointment.patient_id == patient_id),
    )
    for other_doctor, other_patient in (await session.execute(query)).all():
        if other_patient == patient_id:
            raise PatientBusy("you already have an appointment at this time")
        if other_doctor == doctor_id:
            raise SlotTaken("the doctor has an appointment overlapping this slot")


async def _conflict(
    session: AsyncSession, exc: IntegrityError, patient_id: int, start: datetime
) -> Exception:
    # Which UNIQUE key a database reports first differs between engines; ask the rows.
    if not any(key in str(exc.orig) for key in ("_slot", "appointments.")):
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


def transition(row: Appointment, to: Status) -> None:
    """Move an appointment along the one state machine: scheduled -> completed | cancelled |
    no_show; anything else is InvalidTransition."""
    if row.status is not Status.scheduled:
        raise InvalidTransition(f"a {row.status.value} appointment cannot become {to.value}")
    row.status = to


def late_cancel(caller: Principal, row: Appointment, policy: Policy, now: datetime) -> bool:
    """Whether a cancellation now is late. A patient inside the doctor's cutoff is refused
    (TooLate) unless the doctor allows late cancellation; doctors and admins never are."""
    if caller.role is not Role.patient:
        return False
    if row.start_at - now >= timedelta(minutes=policy.cancel_cutoff_minutes):
        return False
    if not policy.allow_late_cancel:
        hours = policy.cancel_cutoff_minutes / 60
        raise TooLate(f"appointments can be cancelled up to {hours:g} hours before they start")
    return True
