from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from hub.bus import MemoryBus
from tests.conftest import Actor, World, iso, next_workday, slot

INSERT = text(
    "INSERT INTO appointments (doctor_id, patient_id, start_at, end_at, status, "
    "created_at, updated_at) VALUES (:doctor, :patient, :start, :end, :status, :now, :now)"
)


def _book(world: World, patient: Actor, body: dict[str, Any]) -> Any:
    return world.client.post("/appointments/", json=body, headers=patient.headers)


def _request(world: World, doctor: Actor, moment: datetime | str) -> dict[str, Any]:
    when = moment if isinstance(moment, str) else iso(moment)
    return {"doctor_id": doctor.id, "scheduled_datetime": when}


def _slots(world: World, doctor_id: int, day: date) -> Any:
    return world.client.get(f"/appointments/doctor/{doctor_id}/available-slots?date={day}")


def _cancel(world: World, actor: Actor, appointment_id: int, reason: str | None = None) -> Any:
    body = {} if reason is None else {"reason": reason}
    return world.client.put(
        f"/appointments/{appointment_id}/cancel", json=body, headers=actor.headers
    )


def _complete(world: World, actor: Actor, appointment_id: int) -> Any:
    return world.client.put(f"/appointments/{appointment_id}/complete", headers=actor.headers)


def _next_weekday(weekday: int, days_ahead: int = 7) -> date:
    day = datetime.now(UTC).date() + timedelta(days=days_ahead)
    while day.weekday() != weekday:
        day += timedelta(days=1)
    return day


def _past_workday() -> date:
    day = datetime.now(UTC).date() - timedelta(days=7)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _past_appointment(raw: Engine, doctor: Actor, patient: Actor) -> int:
    """A scheduled appointment that has already started: the API refuses to book one."""
    start = datetime.combine(_past_workday(), time(10))
    now = datetime.now(UTC).replace(tzinfo=None)
    row = {
        "doctor": doctor.id,
        "patient": patient.id,
        "start": start,
        "end": start + timedelta(hours=1),
        "status": "scheduled",
        "now": now,
    }
    with raw.begin() as conn:
        conn.execute(INSERT, row)
        return int(
            conn.execute(
                text("SELECT id FROM appointments WHERE doctor_id = :doctor AND start_at = :start"),
                row,
            ).scalar_one()
        )


class SlotFeed:
    """The `slot` events of one doctor, from the bus the backend runs: the in-process bus of
    the embedded hub, Redis pub/sub otherwise. Read after the request that causes them."""

    def __init__(self, client: TestClient, backend: str) -> None:
        self._client = client
        self._backend = backend
        self._closers: list[Any] = []
        self._read: Any = None

    def subscribe(self, doctor_id: int) -> None:
        channel = f"doctor:{doctor_id}:slots"
        if self._backend == "embedded":
            bus = self._client.app_state["hub"].bus  # type: ignore[attr-defined]
            assert isinstance(bus, MemoryBus)
            seen: list[dict[str, Any]] = []
            portal = self._client.portal  # the app's own loop
            assert portal is not None
            portal.call(bus.subscribe, channel, seen.append)
            self._closers.append(lambda: portal.call(bus.unsubscribe, channel, seen.append))
            self._read = lambda: seen.pop(0)
            return
        client = redis.Redis.from_url(os.environ["HUB_TEST_REDIS_URL"])
        database = client.connection_pool.connection_kwargs.get("db", 0)
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        self._closers += [client.close, pubsub.close]
        pubsub.ssubscribe(f"hub:{database}:{channel}")  # the hub publishes with SPUBLISH
        confirmation = pubsub.get_message(timeout=5)
        assert confirmation is not None and confirmation["type"] == "ssubscribe"
        self._read = lambda: self._next_message(pubsub)

    @staticmethod
    def _next_message(pubsub: Any) -> dict[str, Any]:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None, "no event on the channel"
        return dict(json.loads(message["data"]))

    def next(self) -> dict[str, Any]:
        assert self._read is not None, "subscribe first"
        return dict(self._read())

    def close(self) -> None:
        for close in reversed(self._closers):
            close()


@pytest.fixture
def slot_feed(client: TestClient, backend: str) -> Iterator[SlotFeed]:
    feed = SlotFeed(client, backend)
    yield feed
    feed.close()


# Booking


def test_booking_answers_201_with_the_appointment_in_utc(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    answer = _book(world, patient, _request(world, doctor, slot(10)))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["scheduled_datetime"] == iso(slot(10))
    assert body["scheduled_datetime"].endswith("Z")
    assert body["end_datetime"] == iso(slot(11))
    assert body["status"] == "scheduled"
    assert body["cancel_reason"] is None
    assert body["doctor_id"] == doctor.id
    assert body["patient_id"] == patient.id
    assert body["doctor"]["id"] == doctor.id
    assert body["patient"]["id"] == patient.id
    assert {"first_name", "last_name"} <= body["doctor"].keys()
    assert {"first_name", "last_name"} <= body["patient"].keys()


def test_an_offset_start_books_the_same_slot_in_utc(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    local = datetime.combine(next_workday(), time(13), tzinfo=timezone(timedelta(hours=3)))
    answer = _book(world, patient, _request(world, doctor, local.isoformat()))
    assert answer.status_code == 201, answer.text
    assert answer.json()["scheduled_datetime"] == iso(slot(10))


def test_a_slot_booked_in_another_offset_is_taken_for_the_next_patient(world: World) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    local = datetime.combine(next_workday(), time(13), tzinfo=timezone(timedelta(hours=3)))
    assert _book(world, first, _request(world, doctor, local.isoformat())).status_code == 201
    answer = _book(world, second, _request(world, doctor, slot(10)))
    assert answer.status_code == 409
    assert answer.json()["error"] == "slot_taken"


def test_a_patient_cannot_see_two_doctors_at_the_same_start(world: World) -> None:
    patient, first, second = world.patient(), world.doctor(), world.doctor()
    world.book(patient, first, slot(10))
    answer = _book(world, patient, _request(world, second, slot(10)))
    assert answer.status_code == 409
    assert answer.json()["error"] == "patient_busy"


@pytest.mark.parametrize(
    ("moment", "reason"),
    [
        (lambda: datetime.combine(_next_weekday(5), time(10), tzinfo=UTC), "day_off"),
        (lambda: slot(10).replace(minute=30), "misaligned"),
        (lambda: slot(8), "outside_hours"),
        (lambda: slot(17), "outside_hours"),
        (lambda: datetime.combine(_past_workday(), time(10), tzinfo=UTC), "too_soon"),
    ],
    ids=["saturday", "half-past", "eight", "seventeen", "past-weekday"],
)
def test_a_start_the_rule_does_not_offer_is_refused_with_its_reason(
    world: World, moment: Any, reason: str
) -> None:
    doctor, patient = world.doctor(), world.patient()
    answer = _book(world, patient, _request(world, doctor, moment()))
    assert answer.status_code == 422
    assert answer.json()["error"] == "not_offered"
    assert answer.json()["reason"] == reason


def test_a_naive_start_is_refused_as_invalid(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    naive = slot(10).replace(tzinfo=None).isoformat()
    answer = _book(world, patient, _request(world, doctor, naive))
    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid"
    assert [field["field"] for field in answer.json()["fields"]] == ["scheduled_datetime"]


@pytest.mark.parametrize(
    "when",
    ["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"],
    ids=["after-year-9999-in-utc", "before-year-1-in-utc"],
)
def test_a_start_that_cannot_be_expressed_in_utc_is_refused_as_invalid(
    world: World, when: str
) -> None:
    doctor, patient = world.doctor(), world.patient()
    answer = _book(world, patient, _request(world, doctor, when))
    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid"


def test_booking_the_same_slot_twice_is_a_conflict(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    world.book(patient, doctor, slot(10))
    answer = _book(world, patient, _request(world, doctor, slot(10)))
    assert answer.status_code == 409


def test_booking_with_an_unknown_doctor_is_not_found(world: World) -> None:
    patient = world.patient()
    body = {"doctor_id": 999_999, "scheduled_datetime": iso(slot(10))}
    answer = _book(world, patient, body)
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"


def test_a_patient_cannot_book_for_another_patient(world: World) -> None:
    doctor, patient, other = world.doctor(), world.patient(), world.patient()
    body = {**_request(world, doctor, slot(10)), "patient_id": other.id}
    answer = _book(world, patient, body)
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"


def test_a_patient_may_name_themselves_as_the_patient(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    body = {**_request(world, doctor, slot(10)), "patient_id": patient.id}
    answer = _book(world, patient, body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["patient_id"] == patient.id


@pytest.mark.parametrize("role", ["doctor", "admin"])
def test_neither_an_admin_nor_another_doctor_books_in_a_doctors_calendar(
    world: World, role: str
) -> None:
    doctor = world.doctor()
    caller = world.doctor() if role == "doctor" else world.admin()
    answer = _book(world, caller, _request(world, doctor, slot(10)))
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"


def test_booking_requires_signing_in(world: World) -> None:
    doctor = world.doctor()
    answer = world.client.post("/appointments/", json=_request(world, doctor, slot(10)))
    assert answer.status_code == 401


# Available slots


def test_available_slots_of_a_workday_are_the_eight_hourly_starts_in_utc(world: World) -> None:
    doctor = world.doctor()
    answer = _slots(world, doctor.id, next_workday())
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "doctor_id": doctor.id,
        "date": next_workday().isoformat(),
        "slots": [iso(slot(hour)) for hour in range(9, 17)],
    }


def test_available_slots_leave_out_the_booked_start(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    world.book(patient, doctor, slot(12))
    slots = _slots(world, doctor.id, next_workday()).json()["slots"]
    assert slots == [iso(slot(hour)) for hour in range(9, 17) if hour != 12]


def test_available_slots_are_per_doctor(world: World) -> None:
    doctor, other, patient = world.doctor(), world.doctor(), world.patient()
    world.book(patient, other, slot(12))
    assert iso(slot(12)) in _slots(world, doctor.id, next_workday()).json()["slots"]


def test_a_cancelled_start_is_available_again(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(12))
    assert _cancel(world, patient, booked["id"]).status_code == 200
    slots = _slots(world, doctor.id, next_workday()).json()["slots"]
    assert slots == [iso(slot(hour)) for hour in range(9, 17)]


def test_available_slots_of_a_weekend_day_are_empty(world: World) -> None:
    doctor = world.doctor()
    answer = _slots(world, doctor.id, _next_weekday(6))
    assert answer.status_code == 200
    assert answer.json()["slots"] == []


@pytest.mark.parametrize("query", ["", "?date=", "?date=tomorrow", "?date=2030-02-30"], ids=str)
def test_available_slots_need_a_valid_date(world: World, query: str) -> None:
    doctor = world.doctor()
    answer = world.client.get(f"/appointments/doctor/{doctor.id}/available-slots{query}")
    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid"


def test_available_slots_of_the_last_representable_day_are_empty_beyond_the_horizon(
    world: World,
) -> None:
    doctor = world.doctor()
    answer = _slots(world, doctor.id, date(9999, 12, 31))  # a Friday, far past 90 days
    assert answer.status_code == 200
    assert answer.json()["slots"] == []


def test_available_slots_of_an_unknown_doctor_are_not_found(world: World) -> None:
    answer = _slots(world, 999_999, next_workday())
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"


# Cancelling


def test_a_patient_cancels_their_appointment_with_a_reason(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(10))
    answer = _cancel(world, patient, booked["id"], "feeling better")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    assert answer.json()["cancel_reason"] == "feeling better"


def test_a_cancelled_slot_can_be_booked_at_once_by_another_patient(world: World) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    booked = world.book(first, doctor, slot(10))
    assert _cancel(world, first, booked["id"]).status_code == 200
    answer = _book(world, second, _request(world, doctor, slot(10)))
    assert answer.status_code == 201, answer.text
    assert answer.json()["patient_id"] == second.id


def test_the_doctor_may_cancel_an_appointment(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(10))
    answer = _cancel(world, doctor, booked["id"], "called away")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_an_uninvolved_caller_cannot_cancel(world: World, role: str) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(10))
    stranger = world.patient() if role == "patient" else world.doctor()
    answer = _cancel(world, stranger, booked["id"])
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"


def test_cancelling_an_unknown_appointment_is_not_found(world: World) -> None:
    patient = world.patient()
    answer = _cancel(world, patient, 999_999)
    assert answer.status_code == 404


def test_cancelling_twice_is_an_invalid_transition(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(10))
    assert _cancel(world, patient, booked["id"]).status_code == 200
    answer = _cancel(world, patient, booked["id"])
    assert answer.status_code == 409
    assert answer.json()["error"] == "invalid_transition"


# Completing


def test_a_future_appointment_cannot_be_completed(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(10))
    answer = _complete(world, doctor, booked["id"])
    assert answer.status_code == 409
    assert answer.json()["error"] == "invalid_transition"


def test_the_doctor_completes_an_appointment_that_has_started(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _past_appointment(raw, doctor, patient)
    answer = _complete(world, doctor, appointment_id)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed"


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_only_the_appointments_doctor_completes_it(world: World, raw: Engine, role: str) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _past_appointment(raw, doctor, patient)
    caller = patient if role == "patient" else world.doctor()
    answer = _complete(world, caller, appointment_id)
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"


def test_completing_twice_is_an_invalid_transition(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _past_appointment(raw, doctor, patient)
    assert _complete(world, doctor, appointment_id).status_code == 200
    answer = _complete(world, doctor, appointment_id)
    assert answer.status_code == 409
    assert answer.json()["error"] == "invalid_transition"


def test_a_completed_appointment_cannot_be_cancelled(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    appointment_id = _past_appointment(raw, doctor, patient)
    assert _complete(world, doctor, appointment_id).status_code == 200
    answer = _cancel(world, patient, appointment_id)
    assert answer.status_code == 409
    assert answer.json()["error"] == "invalid_transition"


# Listing


def test_a_patients_appointments_are_listed_by_start(world: World) -> None:
    patient, first, second = world.patient(), world.doctor(), world.doctor()
    world.allow_repeat_bookings(first)
    for doctor, start in ((first, slot(14)), (second, slot(9)), (first, slot(11, days_ahead=1))):
        world.book(patient, doctor, start)
    answer = world.client.get(f"/appointments/patient/{patient.id}", headers=patient.headers)
    assert answer.status_code == 200, answer.text
    starts = [row["scheduled_datetime"] for row in answer.json()]
    assert starts == [iso(slot(11, days_ahead=1)), iso(slot(9)), iso(slot(14))]
    assert {row["patient_id"] for row in answer.json()} == {patient.id}


def test_a_doctors_appointments_are_listed_by_start(world: World) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    world.allow_repeat_bookings(doctor)
    for patient, start in ((first, slot(15)), (second, slot(10)), (first, slot(12))):
        world.book(patient, doctor, start)
    answer = world.client.get(f"/appointments/doctor/{doctor.id}", headers=doctor.headers)
    assert answer.status_code == 200, answer.text
    starts = [row["scheduled_datetime"] for row in answer.json()]
    assert starts == [iso(slot(10)), iso(slot(12)), iso(slot(15))]
    assert [row["patient_id"] for row in answer.json()] == [second.id, first.id, first.id]


def test_another_patient_cannot_list_a_patients_appointments(world: World) -> None:
    patient, other = world.patient(), world.patient()
    answer = world.client.get(f"/appointments/patient/{patient.id}", headers=other.headers)
    assert answer.status_code == 403


# Events


def test_a_booking_announces_the_slot_as_booked(world: World, slot_feed: SlotFeed) -> None:
    doctor, patient = world.doctor(), world.patient()
    slot_feed.subscribe(doctor.id)
    world.book(patient, doctor, slot(10))
    event = slot_feed.next()
    # The committing process stamps when it committed (for measuring delivery).
    assert datetime.fromisoformat(event.pop("committed_at")) <= datetime.now(UTC)
    assert event == {
        "type": "slot",
        "doctor_id": doctor.id,
        "start": iso(slot(10)),
        "state": "booked",
        "version": 1,
    }


def test_a_cancel_announces_the_slot_as_free(world: World, slot_feed: SlotFeed) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(10))
    slot_feed.subscribe(doctor.id)
    assert _cancel(world, patient, booked["id"]).status_code == 200
    event = slot_feed.next()
    # The committing process stamps when it committed (for measuring delivery).
    assert datetime.fromisoformat(event.pop("committed_at")) <= datetime.now(UTC)
    assert event == {
        "type": "slot",
        "doctor_id": doctor.id,
        "start": iso(slot(10)),
        "state": "free",
        "version": 2,
    }


def _hold(world: World, patient: Actor, body: dict[str, Any]) -> Any:
    return world.client.post("/appointments/holds", json=body, headers=patient.headers)


def test_a_hold_the_one_per_patient_rule_would_refuse_is_409_already_booked(
    world: World,
) -> None:
    doctor, patient = world.doctor(), world.patient()
    world.book(patient, doctor, slot(10))
    answer = _hold(world, patient, _request(world, doctor, slot(11)))
    assert (answer.status_code, answer.json()["error"]) == (409, "already_booked"), answer.text
    # Nothing is held: the slot stays free for everyone else.
    day = slot(11).date().isoformat()
    calendar = world.client.get(f"/doctors/{doctor.id}/slots?from={day}&to={day}").json()
    assert [s["state"] for s in calendar["slots"] if s["start"] == iso(slot(11))] == ["free"]


def test_a_hold_to_move_the_patients_appointment_is_granted(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(10))
    body = {**_request(world, doctor, slot(11)), "appointment_id": booked["id"]}
    answer = _hold(world, patient, body)
    assert answer.status_code == 201, answer.text


def test_the_public_slots_answer_carries_the_doctors_policy(world: World) -> None:
    doctor = world.doctor()
    day = slot(10).date().isoformat()
    answer = world.client.get(f"/doctors/{doctor.id}/slots?from={day}&to={day}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["policy"] == {
        "cancel_cutoff_minutes": 24 * 60,
        "allow_late_cancel": False,
        "one_per_patient": True,
        "no_show_grace_minutes": 15,
    }
