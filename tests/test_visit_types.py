"""Visit types of their own lengths, and the database's occupancy that refuses two overlapping
active appointments of one doctor whatever their starts and lengths."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from hub.auth import Principal, Role, Tokens
from hub.config import Settings
from tests.conftest import Actor, World, insert_patients, iso, slot
from tests.server import hub_processes

INSERT = text(
    "INSERT INTO appointments (doctor_id, patient_id, start_at, end_at, status, "
    "created_at, updated_at) VALUES (:doctor, :patient, :start, :end, :status, :now, :now)"
)
EVERY_DAY = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CONTENDERS = 200


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _raw_appointment(
    raw: Engine, doctor: int, patient: int, start: datetime, minutes: int, status: str = "scheduled"
) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    end = start + timedelta(minutes=minutes)
    row = {"doctor": doctor, "patient": patient, "start": _naive(start), "end": _naive(end)}
    with raw.begin() as conn:
        conn.execute(INSERT, {**row, "status": status, "now": now})


def _hours(slot_minutes: int = 15, **policy: Any) -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "weekly": {day: [{"start": "09:00", "end": "17:00"}] for day in EVERY_DAY},
        "slot_minutes": slot_minutes,
        "notice_minutes": 60,
        "policy": {"one_per_patient": False, **policy},
    }


def _set_types(world: World, doctor: Actor, types: list[dict[str, Any]]) -> list[dict[str, Any]]:
    hours = world.client.put(
        f"/doctors/{doctor.id}/availability", json=_hours(), headers=doctor.headers
    )
    assert hours.status_code == 200, hours.text
    answer = world.client.put(
        f"/doctors/{doctor.id}/visit-types", json=types, headers=doctor.headers
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def _clinic(world: World, doctor: Actor) -> dict[str, int]:
    """A doctor on a 15-minute grid with three visit types; their ids by name."""
    made = _set_types(
        world,
        doctor,
        [
            {"name": "Follow-up", "minutes": 15},
            {"name": "First visit", "minutes": 45, "buffer_minutes": 15},
            {"name": "Procedure", "minutes": 30, "online": False},
        ],
    )
    return {item["name"]: item["id"] for item in made}


def _book(
    world: World, who: Actor, doctor: Actor, start: datetime, visit_type_id: int, **more: Any
) -> Any:
    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(start), **more}
    return world.client.post(
        "/appointments/", json={**body, "visit_type_id": visit_type_id}, headers=who.headers
    )


def _states(world: World, doctor: Actor, visit_type_id: int) -> dict[str, str]:
    day = slot(10).date().isoformat()
    answer = world.client.get(
        f"/doctors/{doctor.id}/slots",
        params={"from": day, "to": day, "visit_type_id": str(visit_type_id)},
    )
    assert answer.status_code == 200, answer.text
    return {item["start"][11:16]: item["state"] for item in answer.json()["slots"]}


def test_raw_sql_overlapping_appointment_with_another_start_is_refused(
    world: World, raw: Engine
) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    _raw_appointment(raw, doctor.id, first.id, slot(10), 60)
    with pytest.raises(IntegrityError), raw.begin() as conn:
        start, end = _naive(slot(10) + timedelta(minutes=30)), _naive(slot(11))
        now = datetime.now(UTC).replace(tzinfo=None)
        conn.execute(
            INSERT,
            {"doctor": doctor.id, "patient": second.id, "start": start, "end": end}
            | {"status": "scheduled", "now": now},
        )
    _raw_appointment(raw, doctor.id, second.id, slot(11), 30)  # touching is not overlapping
    with raw.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM appointments")).scalar_one() == 2


def test_raw_sql_occupancy_for_another_appointment_over_taken_time_is_refused(
    world: World, raw: Engine
) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    _raw_appointment(raw, doctor.id, first.id, slot(10), 60)
    _raw_appointment(raw, doctor.id, second.id, slot(12), 30)
    with raw.connect() as conn:
        taken = conn.execute(text("SELECT MIN(unit_start) FROM occupancy")).scalar_one()
        other = conn.execute(
            text("SELECT id FROM appointments WHERE patient_id = :p"), {"p": second.id}
        ).scalar_one()
    with pytest.raises(IntegrityError), raw.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO occupancy (doctor_id, unit_start, appointment_id) "
                "VALUES (:doctor, :unit, :appointment)"
            ),
            {"doctor": doctor.id, "unit": taken + 15, "appointment": other},
        )


def test_a_cancelled_appointment_leaves_no_occupancy_even_by_raw_sql(
    world: World, raw: Engine
) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    _raw_appointment(raw, doctor.id, first.id, slot(10), 60)
    with raw.begin() as conn:
        conn.execute(text("UPDATE appointments SET status = 'cancelled'"))
        assert conn.execute(text("SELECT COUNT(*) FROM occupancy")).scalar_one() == 0
    _raw_appointment(raw, doctor.id, second.id, slot(10) + timedelta(minutes=30), 60)


def test_a_doctor_without_visit_types_has_one_as_long_as_their_slots(world: World) -> None:
    doctor = world.doctor()
    answer = world.client.get(f"/doctors/{doctor.id}/visit-types")
    assert answer.status_code == 200, answer.text
    assert answer.json() == [
        {"id": None, "name": "Visit", "minutes": 60, "buffer_minutes": 0, "online": True}
    ]


def test_slots_are_offered_per_visit_type_around_appointments_of_other_lengths(
    world: World,
) -> None:
    doctor, patient = world.doctor(), world.patient()
    types = _clinic(world, doctor)
    booked = _book(world, patient, doctor, slot(10), types["Follow-up"])  # 10:00-10:15
    assert booked.status_code == 201, booked.text
    assert booked.json()["end_datetime"] == iso(slot(10) + timedelta(minutes=15))
    short = _states(world, doctor, types["Follow-up"])
    assert (short["09:45"], short["10:00"], short["10:15"]) == ("free", "booked", "free")
    # 45 minutes and a 15-minute buffer: 09:00 ends its buffer at 10:00, 09:15 would run into
    # the follow-up, and the day's last start leaves the hour for it before 17:00.
    long = _states(world, doctor, types["First visit"])
    assert (long["09:00"], long["09:15"], long["09:45"], long["10:15"]) == (
        "free",
        "booked",
        "booked",
        "free",
    )
    assert "16:00" in long and "16:15" not in long and "16:45" in short


def test_a_45_minute_booking_refuses_an_overlapping_15_minute_one_at_another_start(
    world: World,
) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    types = _clinic(world, doctor)
    long = _book(world, first, doctor, slot(10), types["First visit"])
    assert long.status_code == 201, long.text
    inside = _book(world, second, doctor, slot(10) + timedelta(minutes=30), types["Follow-up"])
    assert (inside.status_code, inside.json()["error"]) == (409, "slot_taken")
    buffer = _book(world, second, doctor, slot(10) + timedelta(minutes=45), types["Follow-up"])
    assert (buffer.status_code, buffer.json()["error"]) == (409, "slot_taken")
    after = _book(world, second, doctor, slot(11), types["Follow-up"])
    assert after.status_code == 201, after.text


def test_a_front_desk_only_type_is_refused_to_patients_and_booked_by_the_doctor(
    world: World,
) -> None:
    doctor, patient = world.doctor(), world.patient()
    types = _clinic(world, doctor)
    listed = world.client.get(f"/doctors/{doctor.id}/visit-types", headers=patient.headers)
    assert [t["name"] for t in listed.json()] == ["Follow-up", "First visit"]
    admin = world.admin()
    everything = world.client.get(f"/doctors/{doctor.id}/visit-types", headers=admin.headers)
    assert [t["online"] for t in everything.json()] == [True, True, False]
    refused = _book(world, patient, doctor, slot(10), types["Procedure"])
    assert (refused.status_code, refused.json()["error"]) == (403, "front_desk_only")
    hold = world.client.post(
        "/appointments/holds",
        json={"doctor_id": doctor.id, "scheduled_datetime": iso(slot(10))}
        | {"visit_type_id": types["Procedure"]},
        headers=patient.headers,
    )
    assert (hold.status_code, hold.json()["error"]) == (403, "front_desk_only")
    by_doctor = _book(world, doctor, doctor, slot(10), types["Procedure"], patient_id=patient.id)
    assert by_doctor.status_code == 201, by_doctor.text
    assert by_doctor.json()["visit_type_id"] == types["Procedure"]


def test_the_reason_is_seen_by_the_doctor_and_never_by_others_or_in_events(
    world: World, raw: Engine
) -> None:
    doctor, patient, other = world.doctor(), world.patient(), world.patient()
    types = _clinic(world, doctor)
    reason = "Recurring migraine since March"
    booked = _book(world, patient, doctor, slot(10), types["Follow-up"], reason=reason)
    assert booked.status_code == 201, booked.text
    assert booked.json()["reason"] is None  # the patient's own answer: only the doctor's view
    listing = world.client.get(f"/appointments/doctor/{doctor.id}", headers=doctor.headers)
    assert [row["reason"] for row in listing.json()] == [reason]
    day = slot(10).date().isoformat()
    for caller in (other, None):
        seen = world.client.get(
            f"/doctors/{doctor.id}/slots",
            params={"from": day, "to": day},
            headers=caller.headers if caller else None,
        )
        assert seen.status_code == 200 and reason not in seen.text
    with raw.connect() as conn:
        payloads = conn.execute(text("SELECT payload FROM outbox")).scalars().all()
    assert payloads and not [p for p in payloads if reason in str(p)]


def test_replacing_visit_types_keeps_their_ids_and_refuses_another_doctors(world: World) -> None:
    doctor, other = world.doctor(), world.doctor()
    types = _clinic(world, doctor)
    theirs = _clinic(world, other)
    again = world.client.put(
        f"/doctors/{doctor.id}/visit-types",
        json=[{"id": types["First visit"], "name": "New patient", "minutes": 40}],
        headers=doctor.headers,
    )
    assert again.status_code == 200, again.text
    assert [(t["id"], t["name"]) for t in again.json()] == [(types["First visit"], "New patient")]
    foreign = world.client.put(
        f"/doctors/{doctor.id}/visit-types",
        json=[{"id": theirs["Follow-up"], "name": "Mine", "minutes": 15}],
        headers=doctor.headers,
    )
    assert (foreign.status_code, foreign.json()["error"]) == (422, "invalid")
    odd = world.client.put(
        f"/doctors/{doctor.id}/visit-types",
        json=[{"name": "Odd", "minutes": 17}],
        headers=doctor.headers,
    )
    assert odd.status_code == 422


async def test_200_mixed_length_bookings_over_two_processes_never_overlap(
    world: World, settings: Settings, raw: Engine, backend: str, tmp_path: Path
) -> None:
    if backend == "embedded":
        pytest.skip("the embedded default is one process by design")
    doctor = world.doctor()
    hours = world.client.put(
        f"/doctors/{doctor.id}/availability", json=_hours(5), headers=doctor.headers
    )
    assert hours.status_code == 200, hours.text
    made = world.client.put(
        f"/doctors/{doctor.id}/visit-types",
        json=[
            {"name": "Short", "minutes": 15},
            {"name": "Half hour", "minutes": 30, "buffer_minutes": 5},
            {"name": "Long", "minutes": 45, "buffer_minutes": 15},
        ],
        headers=doctor.headers,
    )
    type_ids = [item["id"] for item in made.json()]
    tokens = Tokens(settings)
    day = datetime.combine(slot(10).date(), datetime.min.time(), tzinfo=UTC)
    chooser = random.Random(13)
    requests = []
    for pid in insert_patients(raw, CONTENDERS, "mixed"):
        token = tokens.issue(Principal(Role.patient, pid)).access_token
        start = day + timedelta(hours=9, minutes=5 * chooser.randrange(0, 12 * 7))
        body = {"doctor_id": doctor.id, "scheduled_datetime": iso(start)}
        requests.append(({"Authorization": f"Bearer {token}"}, body, chooser.choice(type_ids)))
    with hub_processes(settings, tmp_path, 2) as hubs:
        urls = [url for url, _ in hubs]
        limits = httpx.Limits(max_connections=CONTENDERS)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            answers = await asyncio.gather(
                *(
                    client.post(
                        f"{urls[n % 2]}/appointments/",
                        json={**body, "visit_type_id": visit},
                        headers=headers,
                    )
                    for n, (headers, body, visit) in enumerate(requests)
                )
            )
    statuses = Counter(answer.status_code for answer in answers)
    print(f"\n{CONTENDERS} mixed-length bookings over 2 processes: {dict(statuses)}")
    assert not [answer.text for answer in answers if answer.status_code >= 500]
    assert statuses[201] >= 5 and set(statuses) <= {201, 409}
    with raw.connect() as conn:
        overlapping = conn.execute(
            text(
                "SELECT COUNT(*) FROM appointments a JOIN appointments b "
                "ON a.doctor_id = b.doctor_id AND a.id < b.id "
                "WHERE a.active IS NOT NULL AND b.active IS NOT NULL "
                "AND a.start_at < DATE_ADD(b.end_at, INTERVAL b.buffer_minutes MINUTE) "
                "AND b.start_at < DATE_ADD(a.end_at, INTERVAL a.buffer_minutes MINUTE)"
            )
        ).scalar_one()
        stored = conn.execute(text("SELECT COUNT(active) FROM appointments")).scalar_one()
    assert overlapping == 0
    assert stored == statuses[201]
