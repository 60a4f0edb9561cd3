"""The audit trail: every read or change of a patient's record or appointments, and every
refused attempt, is one row with ids and codes only; admins read it; the application's
database user cannot rewrite it."""

from __future__ import annotations

from typing import Any

import pymysql
import pytest
from sqlalchemy import Engine, make_url, text

from hub.config import Settings
from tests.conftest import World, iso, slot


def _trail(world: World, admin: Any, **params: str) -> list[dict[str, Any]]:
    answer = world.client.get("/audit", params=params, headers=admin.headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def _row(entry: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("actor_role", "actor_id", "action", "resource", "outcome", "channel")
    return tuple(entry[key] for key in keys)


def test_reads_changes_and_refusals_of_a_patients_record_are_each_one_row(world: World) -> None:
    patient, other, doctor, admin = world.patient(), world.patient(), world.doctor(), world.admin()
    me = f"patient:{patient.id}"
    world.client.get(f"/patients/{patient.id}", headers=patient.headers)
    world.client.put(
        f"/patients/{patient.id}", json={"address": "2 Rue X"}, headers=patient.headers
    )
    world.client.get(f"/patients/{patient.id}", headers=other.headers)
    world.client.get(f"/patients/{patient.id}", headers=doctor.headers)
    world.client.get(f"/patients/{patient.id}")
    rows = [_row(e) for e in _trail(world, admin, resource=me)]
    assert rows[::-1] == [
        ("patient", patient.id, "patient.read", me, "ok", "rest"),
        ("patient", patient.id, "patient.update", me, "ok", "rest"),
        ("patient", other.id, "patient.read", me, "forbidden", "rest"),
        ("doctor", doctor.id, "patient.read", me, "forbidden", "rest"),
        (None, None, "patient.read", me, "unauthenticated", "rest"),
    ]


def test_bookings_over_rest_and_websocket_are_audited_with_the_request_id(world: World) -> None:
    patient, doctor, admin = world.patient(), world.doctor(), world.admin()
    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(10))}
    headers = {**patient.headers, "X-Request-ID": "call-7f3a"}
    booked = world.client.post("/appointments/", json=body, headers=headers)
    assert booked.status_code == 201 and booked.headers["X-Request-ID"] == "call-7f3a"
    with world.client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": patient.token})
        ws.receive_json()
        command = {"type": "cancel", "appointment_id": booked.json()["id"], "ref": "c"}
        ws.send_json(command)
        while ws.receive_json().get("ref") != "c":
            pass
    trail = _trail(world, admin, actor_role="patient", actor_id=str(patient.id))
    assert [(e["action"], e["outcome"], e["channel"]) for e in trail[::-1]] == [
        ("appointment.book", "ok", "rest"),
        ("appointment.cancel", "ok", "ws"),
    ]
    assert trail[-1]["request_id"] == "call-7f3a"
    assert trail[0]["resource"] == f"appointment:{booked.json()['id']}"
    # Nothing personal in a row: ids and codes only.
    assert not any(patient.email in str(entry) for entry in trail)


def test_only_admins_read_the_trail(world: World) -> None:
    patient, doctor = world.patient(), world.doctor()
    for who in (patient, doctor):
        assert world.client.get("/audit", headers=who.headers).status_code == 403
    assert world.client.get("/audit").status_code == 401
    admin = world.admin()
    assert (
        world.client.get("/audit", params={"limit": "0"}, headers=admin.headers).status_code == 422
    )


def test_the_applications_database_user_cannot_update_or_delete_audit_rows(
    world: World, settings: Settings, backend: str, raw: Engine
) -> None:
    if backend == "embedded":
        pytest.skip("SQLite has no users: the grant is MariaDB's")
    world.client.get("/patients/me", headers=world.patient().headers)
    world.client.get("/audit", headers=world.admin().headers)  # writes what was noted
    url = make_url(settings.database_url)
    database = url.database
    user = "hub_app_audit_test"
    with raw.begin() as conn:
        conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'app-secret'"))
        tables = conn.execute(text("SHOW TABLES")).scalars().all()
        # As README's "Audit trail" grants it: everything on the other tables, on the
        # trail only what appends to it and reads it.
        for table in tables:
            rights = "SELECT, INSERT" if table == "audit_events" else "ALL PRIVILEGES"
            conn.execute(text(f"GRANT {rights} ON `{database}`.`{table}` TO '{user}'@'%'"))
    try:
        app = pymysql.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 3306,
            user=user,
            password="app-secret",
            database=database,
        )
        with app.cursor() as cur:
            cur.execute(
                "INSERT INTO audit_events (at, action, resource, outcome, channel) "
                "VALUES (NOW(), 'patient.read', 'patient:1', 'ok', 'rest')"
            )
            for statement in (
                "UPDATE audit_events SET outcome = 'ok'",
                "DELETE FROM audit_events",
                "TRUNCATE TABLE audit_events",
            ):
                with pytest.raises(pymysql.err.OperationalError) as refused:
                    cur.execute(statement)
                assert refused.value.args[0] == 1142, statement  # command denied
        app.commit()
        app.close()
    finally:
        with raw.begin() as conn:
            conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
