from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from hub.auth import Principal, Role
from hub.driver import Statement
from hub.errors import InvalidTransition, NotFound, TooLate
from hub.models import Appointment, AppointmentEvent, Status
from hub.schedules import Policy

# The one state machine: a scheduled appointment becomes completed, cancelled or no_show, and
# nothing ever leaves those.
MOVES: dict[Status, frozenset[Status]] = {
    Status.scheduled: frozenset({Status.completed, Status.cancelled, Status.no_show}),
    Status.completed: frozenset(),
    Status.cancelled: frozenset(),
    Status.no_show: frozenset(),
}
# What the edges show of an appointment besides its own columns (AppointmentOut).
PARTIES = (selectinload(Appointment.doctor), selectinload(Appointment.patient))


def transition(row: Appointment, to: Status) -> None:
    """Move an appointment along the state machine (`MOVES`); InvalidTransition if it may
    not go there."""
    _refuse_unless_moves(row, to)
    row.status = to


def _refuse_unless_moves(row: Appointment, to: Status) -> None:
    if to not in MOVES[row.status]:
        raise InvalidTransition(f"a {row.status.value} appointment cannot become {to.value}")


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


def actor(principal: Principal) -> dict[str, object]:
    """Who acted, as a history row stores it."""
    return {"actor_role": principal.role.value, "actor_id": principal.id}


def record(
    session: AsyncSession, row: Appointment, by: Principal, at: datetime, reason: str | None = None
) -> AppointmentEvent:
    """Add the history row of what just happened to `row` (now in its new status): who, when,
    to, why; from nothing, as for a new appointment, unless the caller says (`change` does)."""
    event = AppointmentEvent(**_history(row, by, at, reason))
    session.add(event)
    return event


def _history(
    row: Appointment, by: Principal, at: datetime, reason: str | None
) -> dict[str, object]:
    """The columns of a history row of `row` reaching its current status."""
    history = {"appointment_id": row.id, "to_status": row.status.value, "reason": reason, "at": at}
    return history | actor(by)


_HISTORY = Statement.into(cast(Table, AppointmentEvent.__table__))


async def record_new(
    session: AsyncSession, row: Appointment, by: Principal, at: datetime, reason: str | None
) -> None:
    """Write the history row of a new appointment at once (Core: the booking path runs no
    unit of work)."""
    await _HISTORY.run(session, {**_history(row, by, at, reason), "from_status": None})


def change(
    session: AsyncSession,
    row: Appointment,
    to: Status,
    by: Principal,
    at: datetime,
    reason: str | None = None,
) -> None:
    """Move `row` to `to` (see `transition`) and record who did it."""
    before = row.status
    transition(row, to)
    record(session, row, by, at, reason).from_status = before.value


def cancel(
    session: AsyncSession,
    row: Appointment,
    by: Principal,
    policy: Policy,
    now: datetime,
    reason: str | None,
) -> None:
    """Cancel an appointment and record who did it: InvalidTransition unless it is
    scheduled, then the doctor's cutoff policy (`late_cancel`) decides."""
    _refuse_unless_moves(row, Status.cancelled)
    late = late_cancel(by, row, policy, now)
    change(session, row, Status.cancelled, by, now, reason)
    row.cancel_reason = reason
    row.late_cancel = late


async def find(
    session: AsyncSession, appointment_id: int, *, lock: bool = False, parties: bool = False
) -> Appointment:
    """An appointment, NotFound if there is none. `lock` holds its row until the transaction
    ends; `parties` loads its doctor and patient, for the edges to show."""
    row = await session.get(
        Appointment,
        appointment_id,
        with_for_update=lock or None,
        options=PARTIES if parties else (),
    )
    if row is None:
        raise NotFound(f"appointment {appointment_id} not found")
    return row


async def series_of(session: AsyncSession, row: Appointment) -> tuple[int, int]:
    """The first appointment of the chain of reschedules that ends at `row`, and how many
    moves led here: a calendar's UID and SEQUENCE for it (hub.invites)."""
    first, moves = row, 0
    while first.rescheduled_from_id is not None and moves < 1000:
        earlier = await session.get(Appointment, first.rescheduled_from_id)
        if earlier is None:
            break
        first, moves = earlier, moves + 1
    return first.id, moves
