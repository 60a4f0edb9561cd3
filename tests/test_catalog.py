from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from starlette.testclient import TestClient

from hub import db
from hub.app import create_app
from hub.auth import Principal, Role, Tokens
from hub.config import Settings
from hub.models import Specialization
from tests.conftest import bearer
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
