from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from hub import appointments
from hub.auth import Principal, Role
from hub.errors import InvalidTransition, TooLate
from hub.models import Appointment, AppointmentEvent, Status
from hub.schedules import Policy

NOW = datetime(2031, 3, 4, 9, tzinfo=UTC)
PATIENT = Principal(Role.patient, 7)
DOCTOR = Principal(Role.doctor, 3)
ADMIN = Principal(Role.admin, 1)
FINAL = [Status.completed, Status.cancelled, Status.no_show]


class Session:
    """Stands in for an AsyncSession where only `add` is used: keeps what was added."""

    def __init__(self) -> None:
        self.added: list[object] = []

    def add(self, row: object) -> None:
        self.added.append(row)


def _row(
    status: Status = Status.scheduled, starts_in: timedelta = timedelta(days=3)
) -> Appointment:
    return Appointment(id=11, doctor_id=3, patient_id=7, start_at=NOW + starts_in, status=status)


@pytest.mark.parametrize("to", FINAL)
def test_a_scheduled_appointment_may_become_completed_cancelled_or_no_show(to: Status) -> None:
    row = _row()
    appointments.transition(row, to)
    assert row.status is to


@pytest.mark.parametrize("to", list(Status))
@pytest.mark.parametrize("final", FINAL)
def test_a_finished_appointment_never_changes_again(final: Status, to: Status) -> None:
    row = _row(final)
    with pytest.raises(InvalidTransition) as raised:
        appointments.transition(row, to)
    assert raised.value.detail == f"a {final.value} appointment cannot become {to.value}"
    assert row.status is final


def test_a_scheduled_appointment_cannot_become_scheduled_again() -> None:
    with pytest.raises(InvalidTransition):
        appointments.transition(_row(), Status.scheduled)


def test_a_change_is_recorded_with_who_acted_when_from_to_and_why() -> None:
    session, row = Session(), _row()
    appointments.change(cast(AsyncSession, session), row, Status.cancelled, DOCTOR, NOW, "ill")
    [event] = session.added
    assert isinstance(event, AppointmentEvent)
    assert (event.appointment_id, event.at, event.reason) == (11, NOW, "ill")
    assert (event.actor_role, event.actor_id) == ("doctor", 3)
    assert (event.from_status, event.to_status) == ("scheduled", "cancelled")


def test_a_refused_change_records_nothing() -> None:
    session = Session()
    with pytest.raises(InvalidTransition):
        appointments.change(
            cast(AsyncSession, session), _row(Status.completed), Status.no_show, DOCTOR, NOW
        )
    assert session.added == []


def test_a_new_appointment_is_recorded_from_nothing() -> None:
    session = Session()
    appointments.record(cast(AsyncSession, session), _row(), PATIENT, NOW, "rescheduled from 4")
    [event] = session.added
    assert isinstance(event, AppointmentEvent)
    assert (event.from_status, event.to_status, event.reason) == (
        None,
        "scheduled",
        "rescheduled from 4",
    )
    assert (event.actor_role, event.actor_id) == ("patient", 7)


def test_a_patient_cancelling_outside_the_cutoff_is_not_late() -> None:
    row = _row(starts_in=timedelta(days=1))  # exactly the default cutoff
    assert appointments.late_cancel(PATIENT, row, Policy(), NOW) is False


def test_a_patient_cancelling_inside_the_cutoff_is_refused() -> None:
    row = _row(starts_in=timedelta(hours=23, minutes=59))
    with pytest.raises(TooLate) as raised:
        appointments.late_cancel(PATIENT, row, Policy(), NOW)
    assert raised.value.detail == "appointments can be cancelled up to 24 hours before they start"


def test_a_patient_inside_the_cutoff_cancels_late_when_the_doctor_allows_it() -> None:
    row = _row(starts_in=timedelta(hours=1))
    assert appointments.late_cancel(PATIENT, row, Policy(allow_late_cancel=True), NOW) is True


@pytest.mark.parametrize("caller", [DOCTOR, ADMIN], ids=["doctor", "admin"])
def test_doctors_and_admins_are_never_late(caller: Principal) -> None:
    row = _row(starts_in=timedelta(minutes=5))
    assert appointments.late_cancel(caller, row, Policy(), NOW) is False


def test_cancelling_a_finished_appointment_is_an_invalid_transition_not_too_late() -> None:
    row = _row(Status.cancelled, starts_in=timedelta(minutes=5))
    with pytest.raises(InvalidTransition):
        appointments.cancel(cast(AsyncSession, Session()), row, PATIENT, Policy(), NOW, None)


def test_a_late_cancel_is_marked_on_the_appointment_and_recorded() -> None:
    session, row = Session(), _row(starts_in=timedelta(hours=2))
    policy = Policy(allow_late_cancel=True)
    appointments.cancel(cast(AsyncSession, session), row, PATIENT, policy, NOW, "stuck in traffic")
    assert (row.status, row.late_cancel, row.cancel_reason) == (
        Status.cancelled,
        True,
        "stuck in traffic",
    )
    [event] = session.added
    assert isinstance(event, AppointmentEvent)
    assert (event.to_status, event.reason) == ("cancelled", "stuck in traffic")
