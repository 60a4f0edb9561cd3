from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from hub import appointments, schedules
from hub.auth import Principal, Role
from hub.booking import Booking
from hub.calendar import Calendar
from hub.clock import Clock, utcnow
from hub.db import SessionFactory
from hub.errors import InvalidTransition, LinkGone, TooLate
from hub.lifecycle import Lifecycle
from hub.links import Links, manage_print
from hub.models import Appointment, Doctor, Status
from hub.schedules import Policy

# What a cancellation through the link would be now: free, recorded as late, or refused.
Cancelling = Literal["free", "late", "refused"]
USED = "this link has been used or has expired"
MAX_ID = 2**31 - 1
_SHOWN = (
    selectinload(Appointment.doctor).selectinload(Doctor.specialization),
    selectinload(Appointment.patient),
)


@dataclass(frozen=True, slots=True)
class Subject:
    """What a good link names: the appointment, and the patient whose it is (who acts)."""

    appointment_id: int
    patient: Principal


@dataclass(frozen=True, slots=True)
class Managed:
    """What the page of a link shows: the appointment (its doctor and patient loaded), the
    doctor's zone and cancellation policy, and what a cancellation now would be."""

    appointment: Appointment
    timezone: str
    policy: Policy
    words: str
    cancelling: Cancelling
    cancel_until: datetime


def _duration(minutes: int) -> str:
    def unit(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    if minutes % (24 * 60) == 0 and minutes > 24 * 60:
        return unit(minutes // (24 * 60), "day")
    if minutes % 60 == 0:
        return unit(minutes // 60, "hour")
    return unit(minutes, "minute")


def policy_words(policy: Policy) -> str:
    """A doctor's cancellation policy in words, as the booking page says it (cancelRule in
    static/views/book/slots.js)."""
    cutoff = policy.cancel_cutoff_minutes
    if not cutoff:
        return "Free cancellation until the visit starts."
    if policy.allow_late_cancel:
        later = "Later, you can still cancel, but it is recorded as a late cancellation."
    else:
        later = f"A visit less than {_duration(cutoff)} away cannot be cancelled online."
    return f"Free cancellation until {_duration(cutoff)} before the visit. {later}"


def cancelling(row: Appointment, policy: Policy, now: datetime) -> Cancelling:
    """What its patient cancelling `row` now would be, by the rule a cancellation applies
    (`appointments.late_cancel`)."""
    if row.status is not Status.scheduled:
        return "refused"
    try:
        late = appointments.late_cancel(Principal(Role.patient, row.patient_id), row, policy, now)
    except TooLate:
        return "refused"
    return "late" if late else "free"


class ManageLinks:
    """What a link in a message lets its reader do with one appointment without signing in:
    see it, cancel it, or move it, acting as its patient, so the doctor's cutoff policy, the
    history and the events are those of the patient's own change. Every call reads the link
    again: it is refused (LinkGone) once expired, or once the appointment changed in any way
    since it was signed (its fingerprint, `links.manage_print`), which makes it single-use."""

    def __init__(
        self,
        sessions: SessionFactory,
        links: Links,
        lifecycle: Lifecycle,
        booking: Booking,
        calendar: Calendar,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._links = links
        self._lifecycle = lifecycle
        self._booking = booking
        self._calendar = calendar
        self._clock = clock

    async def check(self, token: str) -> Subject:
        """The appointment a link names and its patient; LinkGone unless the link is good."""
        async with self._sessions() as session:
            row = await self._current(session, token)
            return Subject(row.id, Principal(Role.patient, row.patient_id))

    async def show(self, token: str) -> Managed:
        """What the link's page shows (LinkGone unless the link is good)."""
        async with self._sessions() as session:
            row = await self._current(session, token)
            return await self._managed(session, row)

    async def cancel(self, token: str, reason: str | None) -> Managed:
        """Cancel the appointment as its patient (the doctor's cutoff applies); the link is
        used from then on."""
        subject = await self.check(token)
        try:
            await self._lifecycle.cancel(subject.patient, subject.appointment_id, reason)
        except InvalidTransition as exc:  # changed since the check: the link is used
            raise LinkGone(USED) from exc
        return await self._after(subject.appointment_id)

    async def reschedule(self, token: str, start: datetime) -> Managed:
        """Move the appointment to `start` as its patient (the doctor's cutoff applies to the
        old one); the new appointment, and the link is used from then on."""
        subject = await self.check(token)
        try:
            moved = await self._booking.reschedule(subject.patient, subject.appointment_id, start)
        except InvalidTransition as exc:
            raise LinkGone(USED) from exc
        return await self._after(moved.id)

    async def free_starts(self, token: str, day: date) -> tuple[int, list[datetime]]:
        """The doctor and the starts still free with them on a local date, for the visit
        type of the appointment (LinkGone unless the link is good)."""
        async with self._sessions() as session:
            row = await self._current(session, token)
            doctor_id, visit_type_id = row.doctor_id, row.visit_type_id
        layout = await self._calendar.layout(doctor_id, day, day, visit_type_id)
        return doctor_id, [slot.start for slot in layout.slots if slot.state == "free"]

    async def _current(self, session: AsyncSession, token: str) -> Appointment:
        claim = self._links.read("manage", token)
        kind, _, number = claim.subject.partition(":")
        if kind != "appointment" or not number.isdigit() or int(number) > MAX_ID:
            raise LinkGone("this link is not valid")
        row = await session.get(Appointment, int(number), options=_SHOWN)
        if (
            row is None
            or row.status is not Status.scheduled
            or manage_print(row.status.value, row.updated_at) != claim.fingerprint
        ):
            raise LinkGone(USED)
        if row.start_at <= self._clock():
            raise LinkGone("this appointment has already started")
        return row

    async def _after(self, appointment_id: int) -> Managed:
        async with self._sessions() as session:
            row = await session.get(Appointment, appointment_id, options=_SHOWN)
            if row is None:  # just written, and appointments are never deleted
                raise LinkGone(USED)
            return await self._managed(session, row)

    async def _managed(self, session: AsyncSession, row: Appointment) -> Managed:
        schedule = await schedules.load_row(session, row.doctor_id)
        policy = schedules.policy_of(schedule)
        return Managed(
            appointment=row,
            timezone=schedule.timezone,
            policy=policy,
            words=policy_words(policy),
            cancelling=cancelling(row, policy, self._clock()),
            cancel_until=row.start_at - timedelta(minutes=policy.cancel_cutoff_minutes),
        )
