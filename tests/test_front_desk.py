"""The front desk: staff find patients, register one who calls, and book, move and cancel for
any patient (over REST and WebSocket); doctors book in their own calendar; the history says who
acted; a doctor's or the desk's cancellation gives its reason, and the patient hears it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from hub import protocol
from hub.config import Settings
from tests.conftest import PASSWORD, World, iso, slot
from tests.server import hub_env


def test_staff_find_patients_by_name_email_phone_or_birth_date_and_see_only_their_contact(
    world: World,
) -> None:
    staff = world.staff()
    ada = world.patient(
        first_name="Augusta",
        last_name="Byron",
        phone="+44 20 7946 1815",
        date_of_birth="1915-12-10",
    )
    world.patient(first_name="Charles", last_name="Babbage")
    record = world.client.get(f"/patients/{ada.id}", headers=ada.headers).json()
    for query in ("augusta", "BYRON", ada.email, "7946 1815", record["date_of_birth"], "aug byr"):
        found = world.client.get("/patients/", params={"q": query}, headers=staff.headers)
        assert found.status_code == 200, found.text
        assert [p["id"] for p in found.json()] == [ada.id], query
    (seen,) = world.client.get("/patients/", params={"q": "augusta"}, headers=staff.headers).json()
    assert set(seen) == {"id", "first_name", "last_name", "date_of_birth", "email", "phone"}
    one = world.client.get(f"/patients/{ada.id}", headers=staff.headers).json()
    assert "address" not in one and "gender" not in one
    nothing = world.client.get("/patients/", headers=staff.headers)
    assert nothing.status_code == 422  # the desk searches; it does not list everyone


def test_staff_register_a_caller_and_book_move_and_cancel_for_them(
    world: World, raw: Engine
) -> None:
    staff, doctor = world.staff(), world.doctor()
    person = {k: v for k, v in world.person().items() if k != "password"}
    registered = world.client.post("/staff/patients", json=person, headers=staff.headers)
    assert registered.status_code == 201, registered.text
    patient_id = registered.json()["id"]
    refused = world.client.post(
        "/patients/login", data={"username": person["email"], "password": PASSWORD}
    )
    assert refused.status_code == 401  # nobody knows its password until the patient sets one
    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(10)), "patient_id": patient_id}
    booked = world.client.post("/appointments/", json=body, headers=staff.headers)
    assert booked.status_code == 201, booked.text
    appointment = booked.json()
    assert appointment["patient_id"] == patient_id
    moved = world.client.put(
        f"/appointments/{appointment['id']}/reschedule",
        json={"scheduled_datetime": iso(slot(11))},
        headers=staff.headers,
    )
    assert moved.status_code == 200, moved.text
    new_id = moved.json()["id"]
    cancel = f"/appointments/{new_id}/cancel"
    without = world.client.put(cancel, json={}, headers=staff.headers)
    assert without.status_code == 422 and without.json()["fields"][0]["field"] == "reason"
    done = world.client.put(cancel, json={"reason": "the doctor is ill"}, headers=staff.headers)
    assert done.status_code == 200, done.text
    with raw.connect() as conn:
        actors = conn.execute(
            text(
                "SELECT e.actor_role, e.to_status FROM appointment_events e JOIN appointments a "
                "ON a.id = e.appointment_id WHERE a.patient_id = :p ORDER BY e.id"
            ),
            {"p": patient_id},
        ).all()
    assert all(role == "staff" for role, _ in actors)  # who acted, each time
    assert [status for _, status in actors][-1] == "cancelled"


def test_a_doctor_books_for_a_patient_in_their_own_calendar_only(world: World) -> None:
    doctor, other, patient = world.doctor(), world.doctor(), world.patient()
    mine = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(10)), "patient_id": patient.id}
    assert world.client.post("/appointments/", json=mine, headers=doctor.headers).status_code == 201
    theirs = {**mine, "doctor_id": other.id}
    refused = world.client.post("/appointments/", json=theirs, headers=doctor.headers)
    assert refused.status_code == 403, refused.text


def test_a_desk_cancellation_reaches_the_patient_with_who_and_why(world: World) -> None:
    staff, doctor, patient = world.staff(), world.doctor(), world.patient()
    with (
        world.client.websocket_connect("/ws") as desk,
        world.client.websocket_connect("/ws") as own,
    ):
        desk.send_json({"type": "auth", "token": staff.token})
        assert desk.receive_json()["type"] == "ready"
        own.send_json({"type": "auth", "token": patient.token})
        assert own.receive_json()["type"] == "ready"
        book = {
            "type": "book",
            "doctor_id": doctor.id,
            "start": iso(slot(10)),
            "patient_id": patient.id,
            "ref": "b",
        }
        desk.send_json(book)
        booked = _reply(desk, "b")
        assert booked["type"] == "booked", booked
        held = _reply_to(desk, {"type": "hold", "doctor_id": doctor.id, "start": iso(slot(12))})
        assert held["code"] == "forbidden"  # holds are a patient's own
        appointment_id = booked["appointment"]["id"]
        no_reason = _reply_to(desk, {"type": "cancel", "appointment_id": appointment_id})
        assert no_reason["code"] == "invalid"
        cancelled = _reply_to(
            desk, {"type": "cancel", "appointment_id": appointment_id, "reason": "flooded clinic"}
        )
        assert cancelled["type"] == "cancelled", cancelled
        while (event := own.receive_json()).get("event") != "cancelled":
            pass
    assert (event["by"], event["reason"]) == ("staff", "flooded clinic")


def _reply(ws: Any, ref: str) -> dict[str, Any]:
    while (message := ws.receive_json()).get("ref") != ref:
        pass
    return dict(message)


def _reply_to(ws: Any, command: dict[str, object]) -> dict[str, Any]:
    ws.send_json({**command, "ref": "r"})
    return _reply(ws, "r")


def test_create_staff_makes_an_account_that_signs_in(
    world: World, settings: Settings, backend: str, tmp_path: Path
) -> None:
    if backend == "embedded":
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env |= {"HUB_DATABASE_URL": settings.database_url, "HUB_DATA_DIR": str(tmp_path)}
    else:
        env = hub_env(settings, tmp_path)
    env |= {"HUB_STAFF_PASSWORD": PASSWORD, "HUB_ARGON2_TIME_COST": "1"}
    env |= {"HUB_ARGON2_MEMORY_KIB": "1024"}
    made = subprocess.run(
        [sys.executable, "-m", "hub", "create-staff", "--email", "desk@clinic.example"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    assert "staff desk@clinic.example created" in made.stdout
    assert world.login("staff", "desk@clinic.example")


def test_every_websocket_command_as_the_front_desk(world: World) -> None:
    # The access matrix of /ws for the desk: each command, and what the desk gets.
    staff, doctor, patient = world.staff(), world.doctor(), world.patient()
    world.allow_repeat_bookings(doctor)
    booked = world.book(patient, doctor, slot(10))
    held = world.client.post(
        "/appointments/holds",
        json={"doctor_id": doctor.id, "scheduled_datetime": iso(slot(12))},
        headers=patient.headers,
    ).json()["hold_id"]
    day = slot(10).date().isoformat()
    waiting = {"doctor_id": doctor.id, "from": day, "to": day}
    entry = world.client.post(
        "/waitlist", json={**waiting, "patient_id": world.patient().id}, headers=staff.headers
    ).json()
    assert entry["offer"], entry  # the day has free times: offered at once
    offer_id = entry["offer"]["offer_id"]
    commands: dict[str, tuple[dict[str, object], str]] = {
        "auth": ({"type": "auth", "token": staff.token}, "ready"),
        "ping": ({"type": "ping"}, "pong"),
        "watch": ({"type": "watch", "doctor_id": doctor.id, "from": day, "to": day}, "snapshot"),
        "unwatch": ({"type": "unwatch", "doctor_id": doctor.id}, "unwatched"),
        "hold": ({"type": "hold", "doctor_id": doctor.id, "start": iso(slot(13))}, "forbidden"),
        "release": ({"type": "release", "hold_id": held}, "forbidden"),
        "book": (
            {
                "type": "book",
                "doctor_id": doctor.id,
                "start": iso(slot(14)),
                "patient_id": patient.id,
            },
            "booked",
        ),
        "reschedule": (
            {"type": "reschedule", "appointment_id": booked["id"], "start": iso(slot(15))},
            "rescheduled",
        ),
        "cancel": ({"type": "cancel", "appointment_id": booked["id"]}, "invalid_transition"),
        "join_waitlist": (
            {"type": "join_waitlist", **waiting, "patient_id": world.patient().id, "urgent": True},
            "waiting",
        ),
        "accept_offer": ({"type": "accept_offer", "offer_id": offer_id}, "accepted"),
        "decline_offer": ({"type": "decline_offer", "offer_id": offer_id}, "offer_gone"),
        "leave_waitlist": ({"type": "leave_waitlist", "entry_id": entry["id"]}, "left"),
    }
    assert set(commands) == set(protocol.COMMANDS)  # a new command is added here too
    with world.client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": staff.token})
        assert ws.receive_json()["type"] == "ready"
        got = {}
        for name, (command, _) in commands.items():
            reply = _reply_to(ws, command)
            got[name] = reply["code"] if reply["type"] == "error" else reply["type"]
    assert got == {name: want for name, (_, want) in commands.items()}
