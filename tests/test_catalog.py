from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from starlette.testclient import TestClient

from hub import db
from hub.app import create_app
from hub.auth import Principal, Role, Tokens
from hub.config import Settings
from hub.models import Specialization
from tests.conftest import World, bearer
from tests.test_accounts import before_writing


def _admin(settings: Settings) -> dict[str, str]:
    # An admin row straight in the database (a token of an account that does not exist is
    # refused), once per test database.
    engine = create_engine(db.sync_url(settings.database_url))
    try:
        with engine.begin() as conn:
            found = conn.execute(text("SELECT id FROM admins ORDER BY id LIMIT 1")).scalar()
            if found is None:
                conn.execute(
                    text(
                        "INSERT INTO admins (email, password_hash, created_at, updated_at) "
                        "VALUES ('catalog-admin@example.org', '$argon2id$unused', "
                        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    )
                )
                found = conn.execute(text("SELECT id FROM admins ORDER BY id LIMIT 1")).scalar()
    finally:
        engine.dispose()
    return bearer(Tokens(settings).issue(Principal(Role.admin, int(found))).access_token)


def test_specialization_names_are_unique_regardless_of_case(
    client: TestClient, settings: Settings
) -> None:
    first = client.post("/specializations/", json={"name": "Sleep"}, headers=_admin(settings))
    assert first.status_code == 201, first.text
    again = client.post("/specializations/", json={"name": "SLEEP"}, headers=_admin(settings))
    assert (again.status_code, again.json()["error"]) == (409, "name_taken")


def test_name_taken_by_a_concurrent_insert_is_409_name_taken(
    client: TestClient, settings: Settings, raw: Engine
) -> None:
    def add_twin(connection: Connection, _row: Any) -> None:
        connection.execute(text("INSERT INTO specializations (name) VALUES ('Sleep')"))

    with before_writing(Specialization, "before_insert", add_twin):
        answer = client.post("/specializations/", json={"name": "Sleep"}, headers=_admin(settings))
    assert (answer.status_code, answer.json()["error"]) == (409, "name_taken"), answer.text


def test_an_integrity_error_other_than_a_taken_name_is_a_500_not_name_taken(
    settings: Settings,
) -> None:
    def blank(_connection: Connection, row: Any) -> None:
        row.name = None  # NOT NULL

    with (
        TestClient(create_app(settings), raise_server_exceptions=False) as client,
        before_writing(Specialization, "before_insert", blank),
    ):
        answer = client.post("/specializations/", json={"name": "Sleep"}, headers=_admin(settings))
    assert (answer.status_code, answer.json()["error"]) == (500, "internal"), answer.text


def _add(client: TestClient, settings: Settings, name: str) -> int:
    answer = client.post("/specializations/", json={"name": name}, headers=_admin(settings))
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def test_an_admin_renames_a_specialization_and_its_doctors_keep_it(
    world: World, settings: Settings
) -> None:
    sid = _add(world.client, settings, "Slep Medicine")
    doctor = world.doctor(specialization_id=sid)
    answer = world.client.put(
        f"/specializations/{sid}", json={"name": "Sleep Medicine"}, headers=_admin(settings)
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": sid, "name": "Sleep Medicine"}
    listed = world.client.get(f"/doctors/{doctor.id}").json()
    assert listed["specialization"] == {"id": sid, "name": "Sleep Medicine"}


def test_a_rename_to_a_name_taken_in_another_case_is_409_name_taken(
    client: TestClient, settings: Settings
) -> None:
    sid = _add(client, settings, "Sleep")
    answer = client.put(
        f"/specializations/{sid}", json={"name": "CARDIOLOGY"}, headers=_admin(settings)
    )
    assert (answer.status_code, answer.json()["error"]) == (409, "name_taken")
    same = client.put(f"/specializations/{sid}", json={"name": "SLEEP"}, headers=_admin(settings))
    assert same.status_code == 200, same.text  # its own name, in another case


def test_a_specialization_name_past_50_characters_is_refused(
    client: TestClient, settings: Settings
) -> None:
    sid = _add(client, settings, "S" * 50)  # 50 is the most
    for answer in (
        client.put(f"/specializations/{sid}", json={"name": "S" * 51}, headers=_admin(settings)),
        client.post("/specializations/", json={"name": "T" * 51}, headers=_admin(settings)),
    ):
        assert answer.status_code == 422, answer.text
        assert answer.json()["fields"] == [{"field": "name", "message": "At most 50 characters"}]


def test_only_admins_rename_or_remove_a_specialization(world: World, settings: Settings) -> None:
    doctor = world.doctor()
    renamed = world.client.put(
        "/specializations/1", json={"name": "Hearts"}, headers=doctor.headers
    )
    removed = world.client.delete("/specializations/1", headers=doctor.headers)
    assert [renamed.status_code, removed.status_code] == [403, 403]


def test_a_specialization_no_doctor_has_is_removed(client: TestClient, settings: Settings) -> None:
    sid = _add(client, settings, "Sleep")
    answer = client.delete(f"/specializations/{sid}", headers=_admin(settings))
    assert answer.status_code == 204, answer.text
    assert client.get(f"/specializations/{sid}").status_code == 404
    again = client.delete(f"/specializations/{sid}", headers=_admin(settings))
    assert (again.status_code, again.json()["error"]) == (404, "not_found")


def test_a_specialization_a_doctor_has_is_409_in_use(world: World, settings: Settings) -> None:
    sid = _add(world.client, settings, "Sleep")
    world.doctor(specialization_id=sid)
    answer = world.client.delete(f"/specializations/{sid}", headers=_admin(settings))
    assert (answer.status_code, answer.json()["error"]) == (409, "in_use"), answer.text
    assert world.client.get(f"/specializations/{sid}").status_code == 200


def test_a_doctor_written_before_the_check_saw_it_is_still_409_in_use(
    client: TestClient, settings: Settings, raw: Engine
) -> None:
    sid = _add(client, settings, "Sleep")

    def add_doctor(connection: Connection, _row: Any) -> None:
        # A doctor of this specialization lands between the check and the delete.
        columns = {**_DOCTOR, "specialization_id": sid}
        names = ", ".join(columns)
        values = ", ".join(f":{name}" for name in columns)
        connection.execute(text(f"INSERT INTO doctors ({names}) VALUES ({values})"), columns)

    with before_writing(Specialization, "before_delete", add_doctor):
        answer = client.delete(f"/specializations/{sid}", headers=_admin(settings))
    assert (answer.status_code, answer.json()["error"]) == (409, "in_use"), answer.text


_DOCTOR = {
    "first_name": "Late",
    "last_name": "Comer",
    "date_of_birth": "1980-01-01",
    "gender": "other",
    "email": "late.comer@example.org",
    "phone": "+44 20 7946 0000",
    "password_hash": "$argon2id$unused",
    "approved": True,
    "active": True,
    "created_at": "2024-01-01 00:00:00",
    "updated_at": "2024-01-01 00:00:00",
}
