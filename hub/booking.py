from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import (
    access,
    appointments,
    availability,
    events,
    idempotency,
    ledger,
    notices,
    schedules,
    visits,
)
from hub.auth import Principal, Role, require
from hub.clock import Clock, utcnow
from hub.db import SessionFactory
from hub.errors import (
    AlreadyBooked,
    HoldExpired,
    HoldsUnavailable,
    InvalidInput,
    NotFound,
    SlotTaken,
)
from hub.holds import Hold, HoldStore, SlotHeld
from hub.idempotency import KEY_LIFETIME, Key, Replayed
from hub.models import Appointment, Doctor, Patient, Status
from hub.relay import Relay

log = logging.getLogger("hub.booking")

Person = TypeVar("Person", Patient, Doctor)
CLAIM_MS = 10_000  # how long a direct booking holds its slot while it writes
# What a booking or a reschedule writes under its claim, given the start (in UTC): the new
# appointment, with its doctor and patient loaded.
Write = Callable[[AsyncSession, datetime], Awaitable[Appointment]]


@dataclass(frozen=True, slots=True)
class Target:
    """The slot a booking or a reschedule asks for, and the patient's hold on it if named."""

    doctor_id: int
    start: datetime
    hold: Hold | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """The hold a write runs under (None without holds: the database guard alone decides),
    whether it is the patient's own hold from before (kept if the write fails), and whether
    the hold the patient named had lapsed."""

    hold: Hold | None
    kept: bool = False
    lapsed: bool = False


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
        max_address_holds: int = 0,
        notify: notices.Policy = notices.DEFAULT,
        require_verified: bool = False,
        clock: Clock = utcnow,
    ) -> None:
        self.sessions = self._sessions = sessions
        self._holds = holds
        self._relay = relay
        self._hold_ms = hold_ttl * 1000
        self._max_holds = max_holds
        self._max_address_holds = max_address_holds
        self._notify = notify
        self._require_verified = require_verified  # patients book once their email is verified
        self._clock = clock

    async def hold(
        self,
        principal: Principal | None,
        doctor_id: int,
        start: datetime,
        *,
        address: str | None = None,
        moving: int | None = None,
        visit_type_id: int | None = None,
    ) -> Hold:
        """Hold a free slot for the calling patient for a short time while they confirm; the
        live holds of one patient, and of one client `address` whichever accounts hold them,
        are capped (a few accounts cannot squat a doctor's day). A hold the booking would
        refuse is refused now: AlreadyBooked when the doctor takes one upcoming appointment
        per patient and the patient has one (unless it is the appointment `moving` there)."""
        caller = require(principal, Role.patient)
        async with self._sessions() as session:
            await ledger.bookable_doctor(session, doctor_id)
            row = await schedules.load_row(session, doctor_id)
            now = self._clock()
            visit, hours = await visits.chosen(
                session, doctor_id, schedules.availability_of(row), visit_type_id, caller
            )
            start = availability.check_offered(hours, start, now)
            if not await visits.is_free(session, doctor_id, start, visit):
                raise SlotTaken("this slot is already booked")
            if schedules.policy_of(row).one_per_patient:
                await _refuse_a_second(session, caller.id, doctor_id, now, moving)
        current = await self._holds.holder(doctor_id, start)
        if current is not None and current.patient_id == caller.id:
            return current  # holding it already: the same hold, not a second one
        try:
            hold = await self._holds.take(
                Hold.new(doctor_id, start, caller.id),
                self._hold_ms,
                self._max_holds,
                address,
                self._max_address_holds,
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
        access.ensure(hold.patient_id == caller.id, "only its holder releases a hold")
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
        visit_type_id: int | None = None,
        reason: str | None = None,
    ) -> tuple[Appointment, bool]:
        """Book a slot for the calling patient (or, by the front desk or a doctor in their own
        calendar, for `patient_id`), from a hold or directly. Returns the appointment and
        whether it is the replay of an earlier request with the same key."""
        caller = require(principal, Role.patient, Role.staff, Role.doctor)
        if caller.role is Role.doctor and doctor_id is not None:
            access.ensure(
                access.manages_doctor(caller, doctor_id),
                "a doctor books only in their own calendar",
            )
        if caller.role is Role.patient:
            access.ensure(patient_id in (None, caller.id), "a patient books only for themselves")
            patient_id = caller.id
        elif patient_id is None:
            raise InvalidInput(
                "say which patient this booking is for",
                [{"field": "patient_id", "message": "required when booking for a patient"}],
            )
        patient = Principal(Role.patient, patient_id)
        target = _target(patient.id, doctor_id, start, hold_id)
        access.ensure(
            access.books_for(caller, patient_id=patient.id, doctor_id=target.doctor_id),
            "a doctor books only in their own calendar",
        )
        key = None
        if idempotency_key is not None:
            key = Key.of(patient.id, idempotency_key, target.doctor_id, target.start, hold_id)
            first = await idempotency.replay(self._sessions, key)
            if first is not None:
                return await self._get(first), True

        async def write(session: AsyncSession, start: datetime) -> Appointment:
            return await ledger.enter(
                session,
                patient,
                target.doctor_id,
                start,
                self._clock(),
                key=key,
                by=caller,
                visit_type_id=visit_type_id,
                reason=reason,
                notify=self._notify,
                # The clinic may require it of patients; the desk and doctors book for anyone.
                verified_only=self._require_verified and caller.role is Role.patient,
            )

        try:
            return await self._claimed(patient.id, target, write), False
        except Replayed:
            assert key is not None
            # A concurrent request with this key committed first: its appointment, or 422
            # when that request was for another slot.
            first = await idempotency.replay(self._sessions, key)
            if first is None:
                raise SlotTaken("this slot is already booked") from None
            return await self._get(first), True

    async def reschedule(
        self,
        principal: Principal | None,
        appointment_id: int,
        start: datetime | None,
        hold_id: str | None = None,
        visit_type_id: int | None = None,
    ) -> Appointment:
        """Move an appointment to another start or to a held slot (exactly one of them) of
        the same doctor in one transaction: the patient ends with the old appointment or the
        new one, never both, never neither. It keeps its visit type (unless `visit_type_id`
        names another) and its reason."""
        if (start is None) == (hold_id is None):
            raise InvalidInput(
                "give exactly one of start and hold_id",
                [{"field": "start", "message": "or hold_id, exactly one"}],
            )
        caller = require(principal)
        async with self._sessions() as session:
            old = await appointments.find(session, appointment_id)
        access.ensure(
            access.party_to(caller, doctor_id=old.doctor_id, patient_id=old.patient_id),
            "you may not reschedule this appointment",
        )
        patient = Principal(Role.patient, old.patient_id)
        # Naming the doctor makes a hold for another doctor's slot "another slot".
        target = _target(patient.id, old.doctor_id, start, hold_id)

        async def move(session: AsyncSession, start: datetime) -> Appointment:
            # Lock order everywhere: the doctor's schedule, then the appointment, then the
            # patient; so concurrent changes queue instead of deadlocking.
            schedule = await schedules.load_row(session, old.doctor_id, lock=True)
            current = await appointments.find(session, appointment_id, lock=True)
            now = self._clock()
            policy = schedules.policy_of(schedule)
            appointments.cancel(session, current, caller, policy, now, "rescheduled")
            await session.flush()  # frees the old start for the patient's UNIQUE key
            await events.record_slot(session, old.doctor_id, old.start_at, "free")
            return await ledger.enter(
                session,
                patient,
                old.doctor_id,
                start,
                now,
                moved_from=current.id,
                by=caller,
                visit_type_id=visit_type_id or current.visit_type_id,
                reason=current.reason,
                notify=self._notify,
            )

        return await self._claimed(old.patient_id, target, move)

    async def sweep(self) -> int:
        """Announce the holds that lapsed (any process may run this); how many there were."""
        lapsed = await self._holds.sweep()
        for hold in lapsed:
            if await self._holds.holder(hold.doctor_id, hold.start) is not None:
                continue  # held again since: its new holder announced it

            async def announce(session: AsyncSession, hold: Hold = hold) -> None:
                await events.record_settled(session, hold.doctor_id, hold.start)

            await self._relay.transaction(announce)
        return len(lapsed)

    async def forget_keys(self, older_than: timedelta = KEY_LIFETIME) -> int:
        """Delete the idempotency keys past their lifetime (any process may run this); how
        many. A retry that late books anew, or meets slot_taken / already_booked."""
        return await idempotency.forget(self._sessions, self._clock(), older_than)

    async def _claimed(self, patient_id: int, target: Target, write: Write) -> Appointment:
        # The one claim sequence of book and reschedule: claim the slot, write in one
        # transaction (the start is checked against the hours there, under the schedule's
        # lock), publish after commit, let the claim go (a failed write leaves the patient's
        # own hold in place).
        start = target.start
        claim = await _claim(self._holds, patient_id, target.doctor_id, start, target.hold)
        done = False
        try:
            row = await self._relay.transaction(lambda session: write(session, start))
            done = True
        except SlotTaken as exc:
            if claim.lapsed:
                raise HoldExpired("your hold expired and the slot was taken") from exc
            raise
        finally:
            if done or not claim.kept:
                await _let_go(self._holds, claim.hold)
        return row

    async def _announce(self, doctor_id: int, start: datetime, state: str) -> None:
        async def record(session: AsyncSession) -> None:
            await events.record_slot(session, doctor_id, start, state)

        await self._relay.transaction(record)

    async def _get(self, appointment_id: int) -> Appointment:
        async with self._sessions() as session:
            return await appointments.find(session, appointment_id, parties=True)


def _target(
    patient_id: int, doctor_id: int | None, start: datetime | None, hold_id: str | None
) -> Target:
    if hold_id is None:
        if doctor_id is None or start is None:
            raise InvalidInput(
                "give hold_id, or doctor_id and start",
                [{"field": "hold_id", "message": "required without doctor_id and a start"}],
            )
        return Target(doctor_id, start.astimezone(UTC))
    hold = Hold.parse(hold_id)
    access.ensure(hold.patient_id == patient_id, "this hold belongs to someone else")
    if (doctor_id is not None and doctor_id != hold.doctor_id) or (
        start is not None and start.astimezone(UTC) != hold.start
    ):
        raise InvalidInput(
            "the hold is for another slot",
            [{"field": "hold_id", "message": "does not match doctor_id and start"}],
        )
    return Target(hold.doctor_id, hold.start, hold)


async def _refuse_a_second(
    session: AsyncSession, patient_id: int, doctor_id: int, now: datetime, moving: int | None
) -> None:
    upcoming = select(Appointment.id).where(
        Appointment.doctor_id == doctor_id,
        Appointment.patient_id == patient_id,
        Appointment.status == Status.scheduled,
        Appointment.start_at > now,
        Appointment.id != (moving or 0),
    )
    if await session.scalar(upcoming.limit(1)) is not None:
        raise AlreadyBooked("you already have an upcoming appointment with this doctor")


async def _claim(
    holds: HoldStore, patient_id: int, doctor_id: int, start: datetime, hold: Hold | None
) -> Claim:
    try:
        claim = await holds.take(Hold.new(doctor_id, start, patient_id), CLAIM_MS, 0)
        return Claim(claim, lapsed=hold is not None)
    except SlotHeld as exc:
        if exc.holder.patient_id == patient_id:
            return Claim(exc.holder, kept=True)  # their own hold: the write runs under it
        if hold is not None:
            raise HoldExpired("your hold expired and someone else holds the slot") from exc
        raise
    except HoldsUnavailable as exc:
        log.warning("booking on the database guard alone: %s", exc.detail)
        return Claim(None)


async def _let_go(holds: HoldStore, claim: Hold | None) -> None:
    if claim is None:
        return
    try:
        await holds.release(claim)
    except HoldsUnavailable as exc:
        log.warning("hold not released (it lapses by itself): %s", exc.detail)
