from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.conftest import Actor, World, iso, slot

INSERT = text(
    "INSERT INTO appointments (doctor_id, patient_id, start_at, end_at, status, late_cancel, "
    "created_at, updated_at) VALUES (:doctor, :patient, :start, :end, :status, :late, :now, :now)"
)


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _insert(
    raw: Engine, doctor: Actor, patient: Actor, start: datetime, status: str = "scheduled"
) -> int:
    """An appointment the API would not book (too soon or in the past), straight into SQL."""
    start = start.replace(second=0, microsecond=0)
    row = {
        "doctor": doctor.id,
        "patient": patient.id,
        "start": _naive(start),
        "end": _naive(start + timedelta(hours=1)),
        "status": status,
        "late": False,
        "now": _naive(datetime.now(UTC)),
    }
    with raw.begin() as conn:
        conn.execute(INSERT, row)
        return int(
            conn.execute(
                text("SELECT id FROM appointments WHERE doctor_id = :doctor AND start_at = :start"),
                row,
            ).scalar_one()
        )


def _in(minutes: int) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


def _put(world: World, actor: Actor, appointment_id: int, action: str, body: Any = None) -> Any:
    return world.client.put(
        f"/appointments/{appointment_id}/{action}", json=body or {}, headers=actor.headers
    )


def _cancel(world: World, actor: Actor, appointment_id: int, reason: str | None = None) -> Any:
    return _put(world, actor, appointment_id, "cancel", {"reason": reason} if reason else None)


def _reschedule(world: World, actor: Actor, appointment_id: int, **body: Any) -> Any:
    return _put(world, actor, appointment_id, "reschedule", body)


def _policy(world: World, doctor: Actor, **changes: Any) -> None:
    current = world.client.get(f"/doctors/{doctor.id}/availability", headers=doctor.headers)
    assert current.status_code == 200, current.text
    body = {**current.json(), "policy": {**current.json()["policy"], **changes}}
    answer = world.client.put(
        f"/doctors/{doctor.id}/availability", json=body, headers=doctor.headers
    )
    assert answer.status_code == 200, answer.text
    assert {key: answer.json()["policy"][key] for key in changes} == changes


def _book(world: World, patient: Actor, doctor: Actor, start: datetime) -> Any:
    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(start)}
    return world.client.post("/appointments/", json=body, headers=patient.headers)


def _hold(
    world: World, patient: Actor, doctor: Actor, start: datetime, moving: int | None = None
) -> str:
    body: dict[str, Any] = {"doctor_id": doctor.id, "scheduled_datetime": iso(start)}
    if moving is not None:
        body["appointment_id"] = moving  # the one-per-patient rule lets the move hold
    answer = world.client.post("/appointments/holds", json=body, headers=patient.headers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["hold_id"])


def _state(world: World, doctor: Actor, start: datetime) -> str:
    day = start.date().isoformat()
    answer = world.client.get(f"/doctors/{doctor.id}/slots", params={"from": day, "to": day})
    assert answer.status_code == 200, answer.text
    return str({row["start"]: row["state"] for row in answer.json()["slots"]}[iso(start)])


def _row(raw: Engine, appointment_id: int) -> dict[str, Any]:
    with raw.connect() as conn:
        found = conn.execute(
            text(
                "SELECT status, late_cancel, cancel_reason, rescheduled_from_id "
                "FROM appointments WHERE id = :id"
            ),
            {"id": appointment_id},
        ).one()
    return {
        "status": found[0],
        "late_cancel": bool(found[1]),
        "cancel_reason": found[2],
        "rescheduled_from_id": found[3],
    }


def _count(raw: Engine) -> int:
    with raw.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM appointments")).scalar_one())


def _history(world: World, actor: Actor, appointment_id: int) -> list[dict[str, Any]]:
    answer = world.client.get(f"/appointments/{appointment_id}/history", headers=actor.headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def _steps(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    keys = ("actor_role", "actor_id", "from_status", "to_status", "reason")
    return [tuple(event[key] for key in keys) for event in history]


def _error(answer: Any) -> tuple[int, str]:
    return answer.status_code, answer.json().get("error")


# Cancelling and the cutoff


def test_a_patient_cannot_cancel_inside_the_cutoff(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _insert(raw, doctor, patient, _in(120))
    assert _error(_cancel(world, patient, appointment_id)) == (409, "too_late")
    assert _row(raw, appointment_id)["status"] == "scheduled"
    assert _history(world, patient, appointment_id) == []


def test_a_late_cancel_succeeds_and_is_marked_when_the_doctor_allows_it(
    world: World, raw: Engine
) -> None:
    doctor, patient = world.doctor(), world.patient()
    _policy(world, doctor, allow_late_cancel=True)
    appointment_id = _insert(raw, doctor, patient, _in(120))
    answer = _cancel(world, patient, appointment_id, "stuck in traffic")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    assert answer.json()["late_cancel"] is True
    assert answer.json()["cancel_reason"] == "stuck in traffic"
    assert _row(raw, appointment_id)["late_cancel"] is True
    assert _steps(_history(world, patient, appointment_id)) == [
        ("patient", patient.id, "scheduled", "cancelled", "stuck in traffic")
    ]


def test_a_cancel_before_the_cutoff_is_not_late(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(10))
    answer = _cancel(world, patient, booked["id"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["late_cancel"] is False


def test_the_doctors_cutoff_decides_what_is_late(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    _policy(world, doctor, cancel_cutoff_minutes=60)
    appointment_id = _insert(raw, doctor, patient, _in(120))
    answer = _cancel(world, patient, appointment_id)
    assert answer.status_code == 200, answer.text
    assert answer.json()["late_cancel"] is False


@pytest.mark.parametrize("role", ["doctor", "admin"])
def test_the_doctor_or_an_admin_may_cancel_late(world: World, raw: Engine, role: str) -> None:
    doctor, patient = world.doctor(), world.patient()
    caller = doctor if role == "doctor" else world.admin()
    appointment_id = _insert(raw, doctor, patient, _in(120))
    answer = _cancel(world, caller, appointment_id, "clinic closed")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    assert answer.json()["late_cancel"] is False
    assert _steps(_history(world, caller, appointment_id)) == [
        (role, caller.id, "scheduled", "cancelled", "clinic closed")
    ]


def test_a_cancelled_slot_is_bookable_at_once(world: World) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    booked = world.book(first, doctor, slot(10))
    assert _state(world, doctor, slot(10)) == "booked"
    assert _cancel(world, first, booked["id"]).status_code == 200
    assert _state(world, doctor, slot(10)) == "free"
    answer = _book(world, second, doctor, slot(10))
    assert answer.status_code == 201, answer.text
    assert answer.json()["id"] != booked["id"]
    assert _state(world, doctor, slot(10)) == "booked"


def test_a_cancelled_slot_can_be_held_at_once(world: World) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    booked = world.book(first, doctor, slot(10))
    assert _cancel(world, doctor, booked["id"], "the doctor is away").status_code == 200
    hold_id = _hold(world, second, doctor, slot(10))
    answer = world.client.post("/appointments/", json={"hold_id": hold_id}, headers=second.headers)
    assert answer.status_code == 201, answer.text


# Rescheduling


def test_a_reschedule_moves_the_appointment(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    old = world.book(patient, doctor, slot(10))
    answer = _reschedule(world, patient, old["id"], scheduled_datetime=iso(slot(14)))
    assert answer.status_code == 200, answer.text
    new = answer.json()
    assert new["id"] != old["id"]
    assert new["status"] == "scheduled"
    assert new["scheduled_datetime"] == iso(slot(14))
    assert new["rescheduled_from_id"] == old["id"]
    assert new["late_cancel"] is False
    assert _row(raw, old["id"]) == {
        "status": "cancelled",
        "late_cancel": False,
        "cancel_reason": "rescheduled",
        "rescheduled_from_id": None,
    }
    listing = world.client.get(f"/appointments/patient/{patient.id}", headers=patient.headers)
    assert listing.status_code == 200, listing.text
    assert [(row["id"], row["status"], row["cancel_reason"]) for row in listing.json()] == [
        (old["id"], "cancelled", "rescheduled"),
        (new["id"], "scheduled", None),
    ]
    assert _state(world, doctor, slot(10)) == "free"
    assert _state(world, doctor, slot(14)) == "booked"
    assert _count(raw) == 2


def test_the_doctor_may_reschedule_an_appointment(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    old = world.book(patient, doctor, slot(10))
    answer = _reschedule(world, doctor, old["id"], scheduled_datetime=iso(slot(12)))
    assert answer.status_code == 200, answer.text
    assert answer.json()["patient_id"] == patient.id
    assert answer.json()["rescheduled_from_id"] == old["id"]


def test_a_reschedule_to_a_booked_slot_leaves_the_appointment_untouched(
    world: World, raw: Engine
) -> None:
    doctor, patient, other = world.doctor(), world.patient(), world.patient()
    old = world.book(patient, doctor, slot(10))
    world.book(other, doctor, slot(11))
    answer = _reschedule(world, patient, old["id"], scheduled_datetime=iso(slot(11)))
    assert _error(answer) == (409, "slot_taken")
    assert _row(raw, old["id"])["status"] == "scheduled"
    assert _count(raw) == 2
    assert len(_history(world, patient, old["id"])) == 1
    assert _state(world, doctor, slot(10)) == "booked"


def test_a_reschedule_to_a_slot_someone_holds_leaves_the_appointment_untouched(
    world: World, raw: Engine
) -> None:
    doctor, patient, other = world.doctor(), world.patient(), world.patient()
    old = world.book(patient, doctor, slot(10))
    _hold(world, other, doctor, slot(11))
    answer = _reschedule(world, patient, old["id"], scheduled_datetime=iso(slot(11)))
    assert _error(answer) == (409, "slot_taken")
    assert _row(raw, old["id"])["status"] == "scheduled"
    assert _count(raw) == 1
    assert _state(world, doctor, slot(11)) == "held"


def test_a_reschedule_onto_the_patients_own_hold(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    old = world.book(patient, doctor, slot(10))
    hold_id = _hold(world, patient, doctor, slot(15), moving=old["id"])
    answer = _reschedule(world, patient, old["id"], hold_id=hold_id)
    assert answer.status_code == 200, answer.text
    assert answer.json()["scheduled_datetime"] == iso(slot(15))
    assert answer.json()["rescheduled_from_id"] == old["id"]
    assert _row(raw, old["id"])["status"] == "cancelled"
    assert _state(world, doctor, slot(15)) == "booked"
    assert _state(world, doctor, slot(10)) == "free"
    spent = world.client.delete(f"/appointments/holds/{hold_id}", headers=patient.headers)
    assert _error(spent) == (404, "not_found")


def test_a_reschedule_with_someone_elses_hold_is_forbidden(world: World, raw: Engine) -> None:
    doctor, patient, other = world.doctor(), world.patient(), world.patient()
    old = world.book(patient, doctor, slot(10))
    hold_id = _hold(world, other, doctor, slot(15))
    assert _error(_reschedule(world, patient, old["id"], hold_id=hold_id)) == (403, "forbidden")
    assert _row(raw, old["id"])["status"] == "scheduled"
    assert _state(world, doctor, slot(15)) == "held"


def test_a_reschedule_needs_exactly_one_target(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    old = world.book(patient, doctor, slot(10))
    hold_id = _hold(world, patient, doctor, slot(15), moving=old["id"])
    assert _error(_reschedule(world, patient, old["id"])) == (422, "invalid")
    both = _reschedule(world, patient, old["id"], hold_id=hold_id, scheduled_datetime=iso(slot(15)))
    assert _error(both) == (422, "invalid")


def test_a_patient_cannot_reschedule_inside_the_cutoff(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _insert(raw, doctor, patient, _in(120))
    answer = _reschedule(world, patient, appointment_id, scheduled_datetime=iso(slot(10)))
    assert _error(answer) == (409, "too_late")
    assert _row(raw, appointment_id)["status"] == "scheduled"
    assert _count(raw) == 1


# Completing and no-shows


def test_the_doctor_completes_an_appointment_at_its_start(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _insert(raw, doctor, patient, _in(-1))
    answer = _put(world, doctor, appointment_id, "complete")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed"
    assert _row(raw, appointment_id)["status"] == "completed"


def test_an_appointment_cannot_be_completed_before_its_start(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _insert(raw, doctor, patient, _in(120))
    assert _error(_put(world, doctor, appointment_id, "complete")) == (409, "invalid_transition")
    assert _row(raw, appointment_id)["status"] == "scheduled"


def test_only_the_doctor_completes(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _insert(raw, doctor, patient, _in(-60))
    for caller in (patient, world.doctor()):
        assert _error(_put(world, caller, appointment_id, "complete")) == (403, "forbidden")


def test_a_no_show_inside_the_grace_period_is_refused(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _insert(raw, doctor, patient, _in(-5))
    assert _error(_put(world, doctor, appointment_id, "no-show")) == (409, "invalid_transition")
    assert _row(raw, appointment_id)["status"] == "scheduled"


def test_a_no_show_before_the_start_is_refused(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _insert(raw, doctor, patient, _in(120))
    assert _error(_put(world, doctor, appointment_id, "no-show")) == (409, "invalid_transition")


def test_a_no_show_after_the_grace_period(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _insert(raw, doctor, patient, _in(-20))
    answer = _put(world, doctor, appointment_id, "no-show")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "no_show"
    assert _row(raw, appointment_id)["status"] == "no_show"
    assert _steps(_history(world, patient, appointment_id)) == [
        ("doctor", doctor.id, "scheduled", "no_show", None)
    ]


def test_the_doctors_grace_period_decides_the_no_show(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    _policy(world, doctor, no_show_grace_minutes=60)
    appointment_id = _insert(raw, doctor, patient, _in(-20))
    assert _error(_put(world, doctor, appointment_id, "no-show")) == (409, "invalid_transition")


def test_only_the_doctor_marks_a_no_show(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _insert(raw, doctor, patient, _in(-60))
    for caller in (patient, world.doctor()):
        assert _error(_put(world, caller, appointment_id, "no-show")) == (403, "forbidden")


# Terminal states

ACTIONS = [
    ("cancel", "patient"),
    ("cancel", "doctor"),
    ("complete", "doctor"),
    ("no-show", "doctor"),
    ("reschedule", "patient"),
    ("reschedule", "doctor"),
]


@pytest.mark.parametrize("terminal", ["completed", "cancelled", "no_show"])
@pytest.mark.parametrize(("action", "role"), ACTIONS, ids=[f"{a}-by-{r}" for a, r in ACTIONS])
def test_nothing_leaves_a_terminal_state(
    world: World, raw: Engine, terminal: str, action: str, role: str
) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _insert(raw, doctor, patient, _in(-120))
    ending = {"completed": "complete", "cancelled": "cancel", "no_show": "no-show"}[terminal]
    why = {"reason": "the doctor is away"} if ending == "cancel" else None  # a doctor says why
    assert _put(world, doctor, appointment_id, ending, why).status_code == 200
    caller = patient if role == "patient" else doctor
    body = {"scheduled_datetime": iso(slot(10))} if action == "reschedule" else None
    answer = _put(world, caller, appointment_id, action, body)
    assert _error(answer) == (409, "invalid_transition")
    assert _row(raw, appointment_id)["status"] == terminal
    assert _count(raw) == 1
    assert len(_history(world, doctor, appointment_id)) == 1


def test_a_future_cancelled_appointment_cannot_be_rescheduled(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    old = world.book(patient, doctor, slot(10))
    assert _cancel(world, patient, old["id"]).status_code == 200
    answer = _reschedule(world, patient, old["id"], scheduled_datetime=iso(slot(11)))
    assert _error(answer) == (409, "invalid_transition")
    assert _count(raw) == 1
    assert _state(world, doctor, slot(11)) == "free"


# History


def test_history_lists_every_change_in_order(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    old = world.book(patient, doctor, slot(10))
    moved = _reschedule(world, patient, old["id"], scheduled_datetime=iso(slot(13)))
    assert moved.status_code == 200, moved.text
    new_id = moved.json()["id"]
    assert _cancel(world, doctor, new_id, "called away").status_code == 200
    old_history = _history(world, patient, old["id"])
    assert _steps(old_history) == [
        ("patient", patient.id, None, "scheduled", None),
        ("patient", patient.id, "scheduled", "cancelled", "rescheduled"),
    ]
    new_history = _history(world, patient, new_id)
    assert _steps(new_history) == [
        ("patient", patient.id, None, "scheduled", f"rescheduled from {old['id']}"),
        ("doctor", doctor.id, "scheduled", "cancelled", "called away"),
    ]
    for history in (old_history, new_history):
        moments = [datetime.fromisoformat(event["at"].replace("Z", "+00:00")) for event in history]
        assert moments == sorted(moments)
        assert all(moment.tzinfo is not None for moment in moments)
    assert _history(world, doctor, new_id) == new_history
    assert _history(world, world.admin(), new_id) == new_history


def test_history_records_a_reschedule_by_the_doctor_as_the_doctors(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    old = world.book(patient, doctor, slot(10))
    moved = _reschedule(world, doctor, old["id"], scheduled_datetime=iso(slot(13)))
    assert moved.status_code == 200, moved.text
    assert _steps(_history(world, doctor, old["id"]))[-1] == (
        "doctor",
        doctor.id,
        "scheduled",
        "cancelled",
        "rescheduled",
    )
    assert _steps(_history(world, doctor, moved.json()["id"])) == [
        ("doctor", doctor.id, None, "scheduled", f"rescheduled from {old['id']}")
    ]


def test_history_of_a_completed_appointment(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _insert(raw, doctor, patient, _in(-60))
    assert _put(world, doctor, appointment_id, "complete").status_code == 200
    assert _steps(_history(world, patient, appointment_id)) == [
        ("doctor", doctor.id, "scheduled", "completed", None)
    ]


def test_history_is_for_those_involved(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(10))
    for stranger in (world.patient(), world.doctor()):
        answer = world.client.get(f"/appointments/{booked['id']}/history", headers=stranger.headers)
        assert _error(answer) == (403, "forbidden")
    assert world.client.get(f"/appointments/{booked['id']}/history").status_code == 401
    unknown = world.client.get("/appointments/999999/history", headers=patient.headers)
    assert _error(unknown) == (404, "not_found")


# One upcoming appointment per patient


def test_a_second_upcoming_booking_with_the_doctor_is_refused(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    world.book(patient, doctor, slot(10))
    assert _error(_book(world, patient, doctor, slot(11, days_ahead=14))) == (
        409,
        "already_booked",
    )
    assert _count(raw) == 1
    assert _book(world, patient, world.doctor(), slot(11)).status_code == 201


def test_a_hold_for_a_second_appointment_with_the_doctor_is_refused(
    world: World, raw: Engine
) -> None:
    doctor, patient = world.doctor(), world.patient()
    world.book(patient, doctor, slot(10))
    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(11))}
    answer = world.client.post("/appointments/holds", json=body, headers=patient.headers)
    assert _error(answer) == (409, "already_booked")  # refused before a hold, not at Confirm
    assert _count(raw) == 1


def test_with_the_policy_off_a_second_booking_is_allowed(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    _policy(world, doctor, one_per_patient=False)
    world.book(patient, doctor, slot(10))
    answer = _book(world, patient, doctor, slot(11))
    assert answer.status_code == 201, answer.text
    assert _count(raw) == 2


def test_a_cancelled_or_past_appointment_does_not_count(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    _insert(raw, doctor, patient, _in(-120))
    first = world.book(patient, doctor, slot(10))
    assert _cancel(world, patient, first["id"]).status_code == 200
    answer = _book(world, patient, doctor, slot(11))
    assert answer.status_code == 201, answer.text


def test_a_reschedule_is_not_a_second_appointment(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    old = world.book(patient, doctor, slot(10))
    answer = _reschedule(world, patient, old["id"], scheduled_datetime=iso(slot(11)))
    assert answer.status_code == 200, answer.text
