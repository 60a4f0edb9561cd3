"""A patient's own data: the export holds everything the hub keeps about them, and erasure
anonymises the account while the doctor keeps the record of past visits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from tests.conftest import PASSWORD, World, slot


def test_the_export_holds_the_record_every_appointment_its_history_and_the_audit(
    world: World,
) -> None:
    patient, doctor, admin = world.patient(), world.doctor(), world.admin()
    booked = world.book(patient, doctor, slot(10))
    cancel = world.client.put(
        f"/appointments/{booked['id']}/cancel", json={"reason": "ill"}, headers=patient.headers
    )
    assert cancel.status_code == 200
    world.client.get(f"/patients/{patient.id}", headers=doctor.headers)  # refused: cancelled
    answer = world.client.get(f"/patients/{patient.id}/export", headers=patient.headers)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["patient"]["email"] == patient.email and "password_hash" not in str(data)
    (appointment,) = data["appointments"]
    assert appointment["id"] == booked["id"] and appointment["status"] == "cancelled"
    assert [e["to_status"] for e in appointment["history"]] == ["scheduled", "cancelled"]
    assert ("doctor", doctor.id, "patient.read", "forbidden") in {
        (e["actor_role"], e["actor_id"], e["action"], e["outcome"]) for e in data["audit"]
    }
    assert (
        world.client.get(f"/patients/{patient.id}/export", headers=admin.headers).status_code == 200
    )
    other = world.patient()
    assert (
        world.client.get(f"/patients/{patient.id}/export", headers=other.headers).status_code == 403
    )


def test_erasure_anonymises_the_account_and_keeps_the_doctors_record(
    world: World, raw: Engine
) -> None:
    patient, doctor = world.patient(), world.doctor()
    past = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
    with raw.begin() as conn:  # a visit that took place: the doctor's record to keep
        conn.execute(
            text(
                "INSERT INTO appointments (doctor_id, patient_id, start_at, end_at, status, "
                "late_cancel, created_at, updated_at) VALUES (:d, :p, :s, :e, 'completed', "
                "0, :s, :s)"
            ),
            {
                "d": doctor.id,
                "p": patient.id,
                "s": past.replace(tzinfo=None),
                "e": (past + timedelta(hours=1)).replace(tzinfo=None),
            },
        )
    upcoming = world.book(patient, doctor, slot(10))
    path = f"/patients/{patient.id}"
    wrong = world.client.request(
        "DELETE", path, json={"current_password": "nope"}, headers=patient.headers
    )
    assert wrong.status_code == 403
    refused = world.client.request(
        "DELETE", path, json={"current_password": PASSWORD}, headers=patient.headers
    )
    assert refused.status_code == 409, refused.text  # an upcoming appointment
    world.client.put(f"/appointments/{upcoming['id']}/cancel", json={}, headers=patient.headers)
    erased = world.client.request(
        "DELETE", path, json={"current_password": PASSWORD}, headers=patient.headers
    )
    assert erased.status_code == 204, erased.text
    assert world.client.get("/patients/me", headers=patient.headers).status_code == 401
    form = {"username": patient.email, "password": PASSWORD}
    assert world.client.post("/patients/login", data=form).status_code == 401
    with raw.connect() as conn:
        row = (
            conn.execute(text("SELECT * FROM patients WHERE id = :p"), {"p": patient.id})
            .mappings()
            .one()
        )
        kept = (
            conn.execute(
                text("SELECT status FROM appointments WHERE patient_id = :p ORDER BY id"),
                {"p": patient.id},
            )
            .scalars()
            .all()
        )
    assert patient.email not in str(dict(row)) and row["first_name"] == "Erased"
    assert row["phone"] == "00000" and row["address"] is None
    assert kept == ["completed", "cancelled"]  # the doctor's records stay, anonymised
    visits = world.client.get(f"/appointments/doctor/{doctor.id}", headers=doctor.headers).json()
    assert {v["patient"]["first_name"] for v in visits} <= {"Erased"}


def test_the_export_holds_the_waitlist_and_erasure_takes_the_patient_off_it(world: World) -> None:
    patient, doctor = world.patient(), world.doctor()
    day = slot(10).date().isoformat()
    body = {
        "doctor_id": doctor.id,
        "from": day,
        "to": day,
        "times": [{"start": "02:00", "end": "03:00"}],
    }
    joined = world.client.post("/waitlist", json=body, headers=patient.headers)  # nothing fits
    assert joined.status_code == 201, joined.text
    data = world.client.get(f"/patients/{patient.id}/export", headers=patient.headers).json()
    (entry,) = data["waitlist"]
    assert (entry["id"], entry["doctor_id"], entry["from"], entry["status"]) == (
        joined.json()["id"],
        doctor.id,
        day,
        "waiting",
    )
    erased = world.client.request(
        "DELETE",
        f"/patients/{patient.id}",
        json={"current_password": PASSWORD},
        headers=patient.headers,
    )
    assert erased.status_code == 204, erased.text
    listed = world.client.get(
        "/waitlist", params={"doctor_id": doctor.id}, headers=world.staff().headers
    )
    assert listed.json() == []
