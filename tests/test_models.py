from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from tests.conftest import World, slot

INSERT = text(
    "INSERT INTO appointments (doctor_id, patient_id, start_at, end_at, status, "
    "created_at, updated_at) VALUES (:doctor, :patient, :start, :end, :status, :now, :now)"
)


def _row(doctor: int, patient: int, status: str = "scheduled") -> dict[str, object]:
    start = slot(10).astimezone(UTC).replace(tzinfo=None)
    now = datetime.now(UTC).replace(tzinfo=None)
    end = start.replace(hour=11)
    return {
        "doctor": doctor,
        "patient": patient,
        "start": start,
        "end": end,
        "status": status,
        "now": now,
    }


def test_database_refuses_second_active_appointment_for_doctor_and_start(
    world: World, raw: Engine
) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    with raw.begin() as conn:
        conn.execute(INSERT, _row(doctor.id, first.id))
    with pytest.raises(IntegrityError), raw.begin() as conn:
        conn.execute(INSERT, _row(doctor.id, second.id))
    with raw.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM appointments")).scalar_one() == 1


def test_database_refuses_second_active_appointment_for_patient_and_start(
    world: World, raw: Engine
) -> None:
    patient, first, second = world.patient(), world.doctor(), world.doctor()
    with raw.begin() as conn:
        conn.execute(INSERT, _row(first.id, patient.id))
    with pytest.raises(IntegrityError), raw.begin() as conn:
        conn.execute(INSERT, _row(second.id, patient.id))


def test_cancelled_appointments_do_not_hold_the_slot(world: World, raw: Engine) -> None:
    doctor, first, second, third = world.doctor(), world.patient(), world.patient(), world.patient()
    with raw.begin() as conn:
        conn.execute(INSERT, _row(doctor.id, first.id, "cancelled"))
        conn.execute(INSERT, _row(doctor.id, second.id, "cancelled"))
        conn.execute(INSERT, _row(doctor.id, third.id))
    with raw.connect() as conn:
        actives = conn.execute(text("SELECT COUNT(active) FROM appointments")).scalar_one()
    assert actives == 1


def test_reactivating_a_cancelled_duplicate_is_refused(world: World, raw: Engine) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    with raw.begin() as conn:
        conn.execute(INSERT, _row(doctor.id, first.id, "cancelled"))
        conn.execute(INSERT, _row(doctor.id, second.id))
    with pytest.raises(IntegrityError), raw.begin() as conn:
        conn.execute(text("UPDATE appointments SET status = 'scheduled'"))


def test_unknown_status_is_refused(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    # SQLite reports a failed CHECK as an integrity error, MariaDB as error 4025.
    with pytest.raises((IntegrityError, OperationalError)), raw.begin() as conn:
        conn.execute(INSERT, _row(doctor.id, patient.id, "pending"))


def test_migration_seeds_the_twelve_original_specializations(raw: Engine) -> None:
    with raw.connect() as conn:
        names = set(conn.execute(text("SELECT name FROM specializations")).scalars())
    assert names == {
        "Cardiology",
        "Dermatology",
        "Neurology",
        "Pediatrics",
        "Psychiatry",
        "Oncology",
        "Orthopedics",
        "Radiology",
        "Urology",
        "Gastroenterology",
        "Endocrinology",
        "Ophthalmology",
    }
