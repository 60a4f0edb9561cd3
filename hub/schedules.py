from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, time

from sqlalchemy.ext.asyncio import AsyncSession

from hub import access, events
from hub.auth import Principal, require
from hub.availability import WEEKDAYS, Availability, Interval, Override
from hub.db import SessionFactory
from hub.errors import NotFound
from hub.models import Schedule
from hub.relay import Relay


def _interval(pair: list[str]) -> Interval:
    return Interval(time.fromisoformat(pair[0]), time.fromisoformat(pair[1]))


def _pairs(intervals: tuple[Interval, ...]) -> list[list[str]]:
    return [[i.start.strftime("%H:%M"), i.end.strftime("%H:%M")] for i in intervals]


@dataclass(frozen=True, slots=True)
class Policy:
    """A doctor's booking rules."""

    cancel_cutoff_minutes: int = 24 * 60  # a patient cancels at least this long before
    allow_late_cancel: bool = False  # ...or later, recorded as late, when this is on
    one_per_patient: bool = True  # one future active appointment per patient with this doctor
    no_show_grace_minutes: int = 15  # a no-show is marked only after start + grace


def policy_of(row: Schedule) -> Policy:
    return Policy(
        row.cancel_cutoff_minutes,
        row.allow_late_cancel,
        row.one_per_patient,
        row.no_show_grace_minutes,
    )


def availability_of(row: Schedule) -> Availability:
    """The pure Availability a stored schedule describes."""
    overrides = tuple(
        Override(
            date.fromisoformat(str(item["from"])),
            date.fromisoformat(str(item["to"])),
            tuple(_interval(pair) for pair in item["intervals"]),  # type: ignore[attr-defined]
        )
        for item in row.overrides
    )
    return Availability(
        timezone=row.timezone,
        weekly=tuple(
            tuple(_interval(pair) for pair in row.weekly.get(day, [])) for day in WEEKDAYS
        ),
        slot_minutes=row.slot_minutes,
        buffer_minutes=row.buffer_minutes,
        notice_minutes=row.notice_minutes,
        horizon_days=row.horizon_days,
        overrides=overrides,
    )


# fmt: off
def row_fields(availability: Availability) -> dict[str, object]:
    """The stored columns for an Availability."""
    return {
        "timezone": availability.timezone,
        "slot_minutes": availability.slot_minutes,
        "buffer_minutes": availability.buffer_minutes,
        "notice_minutes": availability.notice_minutes,
        "horizon_days": availability.horizon_days,
        "weekly": {
            day: _pairs(intervals)
            for day, intervals in zip(WEEKDAYS, availability.weekly, strict=True)
            if intervals
        },
        "overrides": [
            {
                "from": o.first.isoformat(),
                "to": o.last.isoformat(),
                "intervals": _pairs(o.intervals),
            }
            for o in availability.overrides
        ],
    }
# fmt: on


def new_schedule(doctor_id: int) -> Schedule:
    """A new doctor's schedule row: the default hours (`Availability()`) and booking rules
    (`Policy()`), the one place a new doctor's defaults come from."""
    return Schedule(
        doctor_id=doctor_id, version=0, **row_fields(Availability()), **asdict(Policy())
    )


async def load_row(session: AsyncSession, doctor_id: int, *, lock: bool = False) -> Schedule:
    """A doctor's schedule row. `lock` holds it until the transaction ends, so the hours a
    booking was checked against cannot change before it commits, and the doctor's event
    versions follow commit order."""
    if lock:
        return await events.locked_schedule(session, doctor_id)
    row = await session.get(Schedule, doctor_id)
    if row is None:
        raise NotFound(f"doctor {doctor_id} not found")
    return row


async def load(session: AsyncSession, doctor_id: int) -> Availability:
    """A doctor's availability."""
    return availability_of(await load_row(session, doctor_id))


def _may_edit(principal: Principal | None, doctor_id: int) -> None:
    access.ensure(
        access.manages_doctor(require(principal), doctor_id),
        "only the doctor and admins manage these hours",
    )


async def get_availability(
    sessions: SessionFactory, principal: Principal | None, doctor_id: int
) -> tuple[Availability, Policy]:
    """A doctor's availability and booking policy: for that doctor and admins."""
    _may_edit(principal, doctor_id)
    async with sessions() as session:
        row = await load_row(session, doctor_id)
        return availability_of(row), policy_of(row)


async def set_availability(
    relay: Relay,
    principal: Principal | None,
    doctor_id: int,
    new: Availability,
    policy: Policy,
) -> tuple[Availability, Policy]:
    """Replace a doctor's availability. Existing appointments are never moved or deleted;
    one the new hours no longer cover stays and is marked in the doctor's listing."""
    _may_edit(principal, doctor_id)

    async def replace(session: AsyncSession) -> None:
        row = await load_row(session, doctor_id, lock=True)
        for name, value in {**row_fields(new), **asdict(policy)}.items():
            setattr(row, name, value)
        await events.record_hours(session, doctor_id)  # watchers fetch the new slots

    await relay.transaction(replace)
    return new, policy
