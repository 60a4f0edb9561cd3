"""The clinic's day: the front desk and admins see every active doctor's appointments of a
date (in each doctor's own zone), filtered by specialization, with what the desk needs of each
patient; cancelled and moved appointments stay in the answer with their status."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Actor, World, iso, next_workday, slot

DAY = "/appointments/day"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


def _day(world: World, who: Actor, date: str, **params: Any) -> list[dict[str, Any]]:
    answer = world.client.get(DAY, params={"date": date, **params}, headers=who.headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def _by_doctor(days: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    return {day["doctor"]["id"]: day["appointments"] for day in days}


def test_staff_and_admins_see_every_doctors_day_with_the_patients_name_and_phone(
    world: World,
) -> None:
    house = world.doctor(first_name="Gregory", last_name="House")
    bailey = world.doctor(first_name="Miranda", last_name="Bailey")
    idle = world.doctor(first_name="James", last_name="Wilson")
    ada, blaise = world.patient(), world.patient()
    first = world.book(ada, house, slot(11))
    second = world.book(blaise, house, slot(9))
    third = world.book(ada, bailey, slot(10))
    world.book(blaise, bailey, slot(10, days_ahead=14))  # another day
    for who in (world.staff(), world.admin()):
        days = _day(world, who, slot(10).date().isoformat())
        assert [d["doctor"]["id"] for d in days] == [bailey.id, house.id, idle.id]  # by name
        assert days[0]["doctor"]["specialization"]["id"] == 1
        assert days[0]["timezone"] == "UTC"
        shown = _by_doctor(days)
        assert [a["id"] for a in shown[house.id]] == [second["id"], first["id"]]  # by start
        assert [a["id"] for a in shown[bailey.id]] == [third["id"]]
        assert shown[idle.id] == []
        (item,) = shown[bailey.id]
        assert item["start"] == iso(slot(10)) and item["end"] == iso(slot(11))
        assert item["status"] == "scheduled"
        assert item["patient"] == {
            "id": ada.id,
            "first_name": third["patient"]["first_name"],
            "last_name": third["patient"]["last_name"],
            "phone": "+44 20 7946 0000",
        }


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_patients_and_doctors_are_refused_the_day(world: World, role: str) -> None:
    who = world.patient() if role == "patient" else world.doctor()
    answer = world.client.get(DAY, params={"date": "2030-01-07"}, headers=who.headers)
    assert answer.status_code == 403 and answer.json()["error"] == "forbidden"
    anonymous = world.client.get(DAY, params={"date": "2030-01-07"})
    assert anonymous.status_code == 401


def test_the_day_filters_by_specialization(world: World) -> None:
    heart = world.doctor(specialization_id=1)
    skin = world.doctor(specialization_id=2)
    patient = world.patient()
    world.book(patient, skin, slot(10))
    staff = world.staff()
    date = slot(10).date().isoformat()
    only = _day(world, staff, date, specialization_id=2)
    assert [d["doctor"]["id"] for d in only] == [skin.id]
    assert len(only[0]["appointments"]) == 1
    assert [d["doctor"]["id"] for d in _day(world, staff, date, specialization_id=1)] == [heart.id]
    assert _day(world, staff, date, specialization_id=999) == []


def test_a_cancelled_and_a_moved_appointment_show_with_their_status(world: World) -> None:
    doctor, patient, staff = world.doctor(), world.patient(), world.staff()
    world.allow_repeat_bookings(doctor)
    dropped = world.book(patient, doctor, slot(9))
    moving = world.book(patient, doctor, slot(11))
    path = f"/appointments/{dropped['id']}/cancel"
    cancelled = world.client.put(path, json={"reason": "ill"}, headers=staff.headers)
    assert cancelled.status_code == 200, cancelled.text
    path = f"/appointments/{moving['id']}/reschedule"
    moved = world.client.put(
        path, json={"scheduled_datetime": iso(slot(14))}, headers=staff.headers
    )
    assert moved.status_code == 200, moved.text
    (shown,) = _day(world, staff, slot(10).date().isoformat())
    rows = {a["id"]: a for a in shown["appointments"]}
    assert rows[dropped["id"]]["status"] == "cancelled"
    assert rows[dropped["id"]]["cancel_reason"] == "ill"
    assert rows[dropped["id"]]["moved_to"] is None
    assert rows[moving["id"]]["status"] == "cancelled"
    assert rows[moving["id"]]["moved_to"] == iso(slot(14))
    new = rows[moved.json()["id"]]
    assert new["status"] == "scheduled" and new["rescheduled_from_id"] == moving["id"]


def test_the_date_is_the_doctors_own_local_date(world: World) -> None:
    tokyo, patient, staff = world.doctor(), world.patient(), world.staff()
    hours = {
        "timezone": "Asia/Tokyo",
        "weekly": {d: [{"start": "08:00", "end": "17:00"}] for d in WEEKDAYS},
    }
    put = world.client.put(f"/doctors/{tokyo.id}/availability", json=hours, headers=tokyo.headers)
    assert put.status_code == 200, put.text
    local = next_workday()
    start = datetime.combine(local, time(8), tzinfo=ZoneInfo("Asia/Tokyo")).astimezone(UTC)
    assert start.date() == local - timedelta(days=1)  # the day before, in UTC
    booked = world.book(patient, tokyo, start)
    (day,) = _day(world, staff, local.isoformat())
    assert day["timezone"] == "Asia/Tokyo"
    assert [a["id"] for a in day["appointments"]] == [booked["id"]]
    (before,) = _day(world, staff, (local - timedelta(days=1)).isoformat())
    assert before["appointments"] == []


def test_a_deactivated_doctor_is_left_out(world: World) -> None:
    kept, gone, admin = world.doctor(), world.doctor(), world.admin()
    off = world.client.put(
        f"/doctors/{gone.id}/active", json={"active": False}, headers=admin.headers
    )
    assert off.status_code == 204, off.text
    days = _day(world, admin, slot(10).date().isoformat())
    assert [d["doctor"]["id"] for d in days] == [kept.id]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"date": "tomorrow"},
        {"date": "2030-13-01"},
        {"date": "2030-1-7"},
        {"date": "0001-01-01"},
        {"date": "9999-12-31"},
        {"date": "2030-01-07", "specialization_id": "heart"},
        {"date": "2030-01-07", "specialization_id": "0"},
        {"date": "2030-01-07", "specialization_id": str(2**31)},
    ],
)
def test_a_bad_query_is_a_422_naming_its_field(world: World, params: dict[str, str]) -> None:
    staff = world.staff()
    answer = world.client.get(DAY, params=params, headers=staff.headers)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "invalid"
    named = "specialization_id" if "specialization_id" in params else "date"
    assert [f["field"] for f in body["fields"]] == [named]
