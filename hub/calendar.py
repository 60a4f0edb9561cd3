from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

from sqlalchemy import bindparam, select

from hub import access, availability, events, schedules, visits
from hub.auth import Principal, Role
from hub.availability import Availability, Slot, SlotState
from hub.clock import Clock, utcnow
from hub.db import SessionFactory
from hub.errors import HoldsUnavailable, InvalidInput
from hub.holds import HoldStore
from hub.models import Appointment
from hub.schedules import Policy

MAX_DAYS = 31
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
Bound = date | datetime


@dataclass(frozen=True, slots=True)
class Window:
    """What a calendar read covers: local dates of the doctor (`last` included) or UTC instants
    (`last` excluded), at most 31 days. Dates and instants may be mixed."""

    first: Bound
    last: Bound

    @classmethod
    def parse(cls, first: str, last: str) -> Window:
        """The window `from`..`to`, checked: InvalidInput naming the field if not."""
        low, high = _bound("from", first), _bound("to", last)
        if isinstance(low, datetime) and isinstance(high, datetime):
            backwards = high <= low
        else:
            backwards = _day(high) < _day(low)
        if backwards:
            raise InvalidInput("to is before from", [{"field": "to", "message": "before from"}])
        inclusive = 0 if isinstance(high, datetime) else 1  # a date `to` counts its own day
        if (_day(high) - _day(low)).days + inclusive > MAX_DAYS:
            raise InvalidInput(
                f"at most {MAX_DAYS} days at a time",
                [{"field": "to", "message": f"at most {MAX_DAYS} days after from"}],
            )
        return cls(low, high)

    def dates(self) -> tuple[date, date]:
        """The local dates to lay out: an instant is widened by a day on its side, as its local
        date depends on the doctor's zone."""
        return _day(self.first, -1), _day(self.last, 1)

    def holds(self, start: datetime) -> bool:
        """Whether a slot starting at `start` falls inside (dates were widened to lay out)."""
        after = not isinstance(self.first, datetime) or start >= self.first
        return after and (not isinstance(self.last, datetime) or start < self.last)


@dataclass(frozen=True, slots=True)
class SlotView:
    """One offered slot as a caller may see it: who booked it only for that patient, the
    doctor and admins."""

    start: datetime
    end: datetime
    state: SlotState
    appointment_id: int | None = None
    patient_id: int | None = None


@dataclass(frozen=True, slots=True)
class CalendarView:
    doctor_id: int
    timezone: str
    slots: tuple[SlotView, ...]
    policy: Policy  # the doctor's booking rules: public, shown before a hold
    shared: bool = False  # names no one: the one view of everyone party to none of it


class Booked(NamedTuple):
    """An active appointment as a calendar lays it out: a row, not an ORM object (a week of
    a busy doctor is hundreds of them, read for every calendar a caller asks for)."""

    id: int
    doctor_id: int
    patient_id: int
    start_at: datetime
    end_at: datetime
    buffer_minutes: int


_ACTIVE = select(
    Appointment.id,
    Appointment.doctor_id,
    Appointment.patient_id,
    Appointment.start_at,
    Appointment.end_at,
    Appointment.buffer_minutes,
).where(
    Appointment.doctor_id == bindparam("doctor"),
    Appointment.active.is_not(None),
    Appointment.start_at < bindparam("high"),
    Appointment.end_at > bindparam("low"),
)


@dataclass(frozen=True, slots=True)
class Layout:
    """A doctor's offered slots on some local dates, with the active appointments by start."""

    hours: Availability
    slots: list[Slot]
    active: dict[datetime, Booked]
    policy: Policy
    patients: frozenset[int] = frozenset()  # who has one of the active appointments
    # The view of a window for callers party to none of its appointments, built once.
    public: dict[Window, CalendarView] = field(default_factory=dict)


@dataclass(slots=True)
class _Batch:
    done: asyncio.Future[tuple[int, Layout]]


def _seen_by(
    principal: Principal | None, doctor_id: int, window: Window, layout: Layout
) -> CalendarView:
    """The layout as `principal` sees it. Who sees no one's appointment sees the public view,
    one object for all of them (each viewer of a storm gets the same snapshot)."""
    if principal is not None and principal.role is Role.patient:
        party = principal.id in layout.patients  # a patient is party to their own only
    else:
        party = any(
            access.party_to(principal, doctor_id=row.doctor_id, patient_id=row.patient_id)
            for row in layout.active.values()
        )
    if not party:
        view = layout.public.get(window)
        if view is None:
            view = layout.public[window] = replace(
                _view(None, doctor_id, window, layout), shared=True
            )
        return view
    return _view(principal, doctor_id, window, layout)


def _view(
    principal: Principal | None, doctor_id: int, window: Window, layout: Layout
) -> CalendarView:
    out = []
    for slot in layout.slots:
        if not window.holds(slot.start):
            continue
        row = layout.active.get(slot.start)
        if row is not None and access.party_to(
            principal, doctor_id=row.doctor_id, patient_id=row.patient_id
        ):
            out.append(SlotView(slot.start, slot.end, slot.state, row.id, row.patient_id))
        else:
            out.append(SlotView(slot.start, slot.end, slot.state))
    return CalendarView(doctor_id, layout.hours.timezone, tuple(out), layout.policy)


class Calendar:
    """Calendar reads: the slots a doctor offers with their state (free, held, booked), and
    who booked them for the callers who may know."""

    def __init__(self, sessions: SessionFactory, holds: HoldStore, clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._holds = holds
        self._clock = clock
        self._waiting: dict[tuple[int, date, date], _Batch] = {}  # the next shared read
        self._reading: dict[tuple[int, date, date], asyncio.Future[tuple[int, Layout]]] = {}

    async def view(
        self,
        principal: Principal | None,
        doctor_id: int,
        window: Window,
        visit_type_id: int | None = None,
    ) -> CalendarView:
        """Every offered slot of a doctor inside a window with its state (public), for a visit
        type (by default the first the caller may book: see `hub.visits.pick`); who booked a
        slot only for that patient, the doctor and admins. Callers who see the default visit
        type as everyone does share their read as `snapshot` shares it."""
        if visit_type_id is None and not visits.books_offline(principal, doctor_id):
            _, layout = await self._shared(doctor_id, window)
        else:
            layout = await self.layout(doctor_id, *window.dates(), visit_type_id, principal)
        return _seen_by(principal, doctor_id, window, layout)

    async def snapshot(
        self, principal: Principal | None, doctor_id: int, window: Window
    ) -> tuple[int, CalendarView]:
        """The doctor's version, then the view (read in that order: a change that lands in
        between is in the view and also follows as an event). Callers asking for the same
        doctor and dates while a read is under way (a storm of viewers) share the next one,
        which starts as soon as that read ends: at most one read per doctor and dates runs,
        and each caller's read starts after it asked."""
        version, layout = await self._shared(doctor_id, window)
        return version, _seen_by(principal, doctor_id, window, layout)

    async def _shared(self, doctor_id: int, window: Window) -> tuple[int, Layout]:
        key = (doctor_id, *window.dates())
        batch = self._waiting.get(key)
        if batch is not None:
            try:
                version, layout = await asyncio.shield(batch.done)
            except Exception:  # the shared read failed: try alone
                version, layout = await self._versioned(doctor_id, window)
        else:
            batch = self._waiting[key] = _Batch(asyncio.get_running_loop().create_future())
            try:
                version, layout = await self._lead(key, batch, doctor_id, window)
            except BaseException as exc:
                if not batch.done.done():
                    batch.done.set_exception(RuntimeError(f"shared read failed: {exc!r}"))
                    batch.done.exception()  # retrieved: nobody may be waiting
                raise
            batch.done.set_result((version, layout))
        return version, layout

    async def _lead(
        self, key: tuple[int, date, date], batch: _Batch, doctor_id: int, window: Window
    ) -> tuple[int, Layout]:
        # Whoever asks until the read before this one ends (or, with none, in this moment)
        # joins this read.
        try:
            before = self._reading.get(key)
            if before is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait([before])
        finally:
            if self._waiting.get(key) is batch:
                del self._waiting[key]
        self._reading[key] = batch.done
        try:
            return await self._versioned(doctor_id, window)
        finally:
            if self._reading.get(key) is batch.done:
                del self._reading[key]

    async def _versioned(self, doctor_id: int, window: Window) -> tuple[int, Layout]:
        async with self._sessions() as session:
            version = await events.current_version(session, doctor_id)
        return version, await self.layout(doctor_id, *window.dates())

    async def free_starts(self, doctor_id: int, day: date) -> list[datetime]:
        """The starts still free on a local date with a doctor (public)."""
        layout = await self.layout(doctor_id, day, day)
        return [slot.start for slot in layout.slots if slot.state == "free"]

    async def layout(
        self,
        doctor_id: int,
        first: date,
        last: date,
        visit_type_id: int | None = None,
        principal: Principal | None = None,
    ) -> Layout:
        """Every offered slot of a doctor on local dates first..last with its state, for a
        visit type (by default the first online one), and the active appointments by start."""
        async with self._sessions() as session:
            row = await schedules.load_row(session, doctor_id)
            policy = schedules.policy_of(row)
            _, hours = await visits.chosen(
                session,
                doctor_id,
                schedules.availability_of(row),
                visit_type_id,
                principal,
                booking=False,
            )
            now = self._clock()
            # Nothing is offered before now or past the horizon: clamp, which also keeps
            # far-off dates from overflowing.
            first = max(first, now.date() - timedelta(days=1))
            last = min(last, (now + timedelta(days=hours.horizon_days + 1)).date())
            if first > last:
                return Layout(hours, [], {}, policy)
            zone = hours.zone
            low = datetime.combine(first - timedelta(days=1), time(), tzinfo=zone)
            high = datetime.combine(last + timedelta(days=2), time(), tzinfo=zone)
            rows = await session.execute(_ACTIVE, {"doctor": doctor_id, "low": low, "high": high})
            active = {row.start_at: Booked(*row) for row in rows}
        try:
            held = set(await self._holds.held(doctor_id))
        except HoldsUnavailable:
            held = set()  # the calendar still shows what is booked
        booked = [
            (row.start_at, row.end_at + timedelta(minutes=row.buffer_minutes))
            for row in active.values()
        ]
        slots = availability.calendar(hours, first, last, now, booked, held)
        return Layout(
            hours, slots, active, policy, frozenset(row.patient_id for row in active.values())
        )


def _bound(name: str, text: str) -> Bound:
    try:
        if DATE.fullmatch(text):
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"{name} is not a date or an ISO 8601 time",
            [{"field": name, "message": "must be YYYY-MM-DD or an ISO 8601 time with offset"}],
        ) from exc
    if moment.tzinfo is None:
        raise InvalidInput(
            f"{name} needs an offset", [{"field": name, "message": "add Z or an offset"}]
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        problem = [{"field": name, "message": "out of range in UTC"}]
        raise InvalidInput(f"{name} is out of range", problem) from exc


def _day(bound: Bound, pad: int = 0) -> date:
    if not isinstance(bound, datetime):
        return bound
    try:
        return bound.date() + timedelta(days=pad)
    except OverflowError:
        return date.max if pad > 0 else date.min
