from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub import access, events, schedules
from hub.auth import Principal, require
from hub.availability import Availability
from hub.db import SessionFactory
from hub.errors import FrontDeskOnly, InvalidInput
from hub.models import Appointment, Occupancy, VisitType
from hub.relay import Relay

UNIT = 5  # minutes: the occupancy's unit; every length and buffer is a multiple of it
MAX_TYPES = 20
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Visit:
    """A visit type as booking sees it. `id` None is the implicit type of a doctor who defined
    none: as long as their slots, no buffer, bookable online."""

    id: int | None
    name: str
    minutes: int
    buffer_minutes: int = 0
    online: bool = True


def implicit(hours: Availability) -> Visit:
    """The one visit type of a doctor who defined none: the slot length, no buffer, online."""
    return Visit(None, "Visit", hours.slot_minutes)


def fitted(hours: Availability, visit: Visit) -> Availability:
    """The doctor's hours with the visit's length (and buffer) as what must fit at a start:
    the grid of starts stays the slots'."""
    return replace(hours, visit_minutes=visit.minutes, visit_buffer=visit.buffer_minutes)


def books_offline(caller: Principal | None, doctor_id: int) -> bool:
    """Who may see and book a doctor's front-desk-only visit types: the front desk, that
    doctor, admins."""
    return access.is_staff(caller) or access.manages_doctor(caller, doctor_id)


def sees_reason(caller: Principal | None, doctor_id: int) -> bool:
    """Who reads the reason a patient gave for a visit: the doctor, the front desk, admins."""
    return access.is_staff(caller) or access.manages_doctor(caller, doctor_id)


_TYPES = (
    select(VisitType)
    .where(VisitType.doctor_id == bindparam("doctor_id"))
    .order_by(VisitType.position, VisitType.id)
)


async def of_doctor(session: AsyncSession, doctor_id: int, hours: Availability) -> list[Visit]:
    """A doctor's visit types in their order; the implicit one if they defined none."""
    rows = (await session.scalars(_TYPES, {"doctor_id": doctor_id})).all()
    if not rows:
        return [implicit(hours)]
    return [Visit(r.id, r.name, r.minutes, r.buffer_minutes, r.online) for r in rows]


def pick(
    types: Sequence[Visit],
    visit_type_id: int | None,
    caller: Principal | None,
    doctor_id: int,
    *,
    booking: bool = True,
) -> Visit:
    """The visit type a request names, or by default the first the caller may book: a type
    of another doctor is InvalidInput, a front-desk-only one FrontDeskOnly for patients. A
    calendar read (`booking` false) of a doctor with no online type shows their first."""
    offline = books_offline(caller, doctor_id)
    if visit_type_id is None:
        usable = [v for v in types if v.online or offline]
        if usable or not booking:
            return (usable or list(types))[0]
        raise FrontDeskOnly("this doctor's visits are booked by the front desk")
    found = next((v for v in types if v.id == visit_type_id), None)
    if found is None:
        raise InvalidInput(
            "no such visit type with this doctor",
            [{"field": "visit_type_id", "message": "not one of the doctor's visit types"}],
        )
    if not found.online and not offline:
        raise FrontDeskOnly(f"{found.name} is booked by the front desk, not online")
    return found


async def chosen(
    session: AsyncSession,
    doctor_id: int,
    hours: Availability,
    visit_type_id: int | None,
    caller: Principal | None,
    *,
    booking: bool = True,
) -> tuple[Visit, Availability]:
    """The visit type a request names (see `pick`) and the hours fitted to it."""
    types = await of_doctor(session, doctor_id, hours)
    return choose(types, hours, visit_type_id, caller, doctor_id, booking=booking)


def choose(
    types: Sequence[Visit],
    hours: Availability,
    visit_type_id: int | None,
    caller: Principal | None,
    doctor_id: int,
    *,
    booking: bool = True,
) -> tuple[Visit, Availability]:
    """`chosen` among visit types read already (the implicit one when there are none)."""
    visit = pick(types or [implicit(hours)], visit_type_id, caller, doctor_id, booking=booking)
    return visit, fitted(hours, visit)


def minute(moment: datetime) -> int:
    """An instant as the occupancy counts it: whole minutes since 1970-01-01 UTC."""
    return int((moment - EPOCH) // timedelta(minutes=1))


_OCCUPIED = (
    select(Occupancy.unit_start)
    .where(
        Occupancy.doctor_id == bindparam("doctor_id"),
        Occupancy.unit_start >= bindparam("low"),
        Occupancy.unit_start < bindparam("high"),
    )
    .limit(1)
)


async def is_free(session: AsyncSession, doctor_id: int, start: datetime, visit: Visit) -> bool:
    """Whether no active appointment (nor its buffer) of the doctor takes any of the time a
    visit starting at `start` would (with its own buffer)."""
    low = minute(start) // UNIT * UNIT
    high = low + visit.minutes + visit.buffer_minutes
    params = {"doctor_id": doctor_id, "low": low, "high": high}
    return (await session.execute(_OCCUPIED, params)).first() is None


async def list_types(
    sessions: SessionFactory, principal: Principal | None, doctor_id: int
) -> list[Visit]:
    """A doctor's visit types (public): patients and anonymous callers see the online ones,
    the front desk, that doctor and admins all of them."""
    async with sessions() as session:
        hours = await schedules.load(session, doctor_id)
        types = await of_doctor(session, doctor_id, hours)
    if books_offline(principal, doctor_id):
        return types
    return [visit for visit in types if visit.online]


async def replace_types(
    relay: Relay, principal: Principal | None, doctor_id: int, wanted: Sequence[Visit]
) -> list[Visit]:
    """Replace a doctor's visit types (that doctor, admins), in the order given: an item with
    the `id` of one of theirs changes it, one without is new, and one left out is removed
    (its appointments keep their times and buffer, no longer naming a type). An empty list
    goes back to the implicit type. Booked appointments never move."""
    access.ensure(
        access.manages_doctor(require(principal), doctor_id),
        "only the doctor and admins manage the visit types",
    )
    if len(wanted) > MAX_TYPES:
        raise InvalidInput(
            f"at most {MAX_TYPES} visit types",
            [{"field": "visit_types", "message": f"at most {MAX_TYPES}"}],
        )

    async def work(session: AsyncSession) -> list[Visit]:
        hours = schedules.availability_of(await schedules.load_row(session, doctor_id, lock=True))
        existing = {row.id: row for row in await session.scalars(_TYPES, {"doctor_id": doctor_id})}
        kept: set[int] = set()
        for position, visit in enumerate(wanted):
            fields = {
                "position": position,
                "name": visit.name,
                "minutes": visit.minutes,
                "buffer_minutes": visit.buffer_minutes,
                "online": visit.online,
            }
            if visit.id is None:
                session.add(VisitType(doctor_id=doctor_id, **fields))
                continue
            row = existing.get(visit.id)
            if row is None or visit.id in kept:
                raise InvalidInput(
                    "no such visit type with this doctor",
                    [{"field": f"{position}.id", "message": "not one of the doctor's types"}],
                )
            kept.add(visit.id)
            for name, value in fields.items():
                setattr(row, name, value)
        gone = set(existing) - kept
        if gone:
            # SQLite has no foreign key to set them NULL (it cannot add one in place).
            await session.execute(
                update(Appointment)
                .where(Appointment.visit_type_id.in_(gone))
                .values(visit_type_id=None, updated_at=Appointment.updated_at)
            )
            await session.execute(delete(VisitType).where(VisitType.id.in_(gone)))
        await session.flush()
        await events.record_hours(session, doctor_id)  # watchers lay the slots out again
        return await of_doctor(session, doctor_id, hours)

    return await relay.transaction(work)
