from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Mapper
from starlette.testclient import TestClient

from hub import accounts, db
from hub.app import create_app
from hub.auth import Passwords, Role, Tokens
from hub.config import Settings
from hub.models import Doctor, Patient
from tests.conftest import PASSWORD, World, bearer, insert_patients

TOO_BIG = 64 * 1024 + 1
PRIVATE = {"password", "password_hash"}


def _error(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["error"] == code, body
    return body


def _named(body: dict[str, Any]) -> set[str]:
    return {entry["field"] for entry in body["fields"]}


def _register(world: World, role: str, **fields: Any) -> httpx.Response:
    extra = {"specialization_id": 1} if role == "doctor" else {}
    return world.client.post(f"/{role}s/", json=world.person(**extra, **fields))


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_registration_answers_201_with_the_record(world: World, role: str) -> None:
    sent = world.person(**({"specialization_id": 3} if role == "doctor" else {}))
    answer = world.client.post(f"/{role}s/", json=sent)
    assert answer.status_code == 201, answer.text
    record = answer.json()
    assert isinstance(record["id"], int)
    for name, value in sent.items():
        if name != "password":
            assert record[name] == value, name
    if role == "doctor":
        assert record["specialization"] == {"id": 3, "name": "Neurology"}


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_registration_never_answers_the_password_or_its_hash(world: World, role: str) -> None:
    answer = _register(world, role)
    assert answer.status_code == 201, answer.text
    assert not PRIVATE & set(answer.json())
    assert PASSWORD not in answer.text and "$argon2" not in answer.text


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_duplicate_email_is_409_email_taken(world: World, role: str) -> None:
    assert _register(world, role, email="twice@example.org").status_code == 201
    _error(_register(world, role, email="twice@example.org"), 409, "email_taken")


def test_duplicate_email_in_another_case_is_409_email_taken(world: World) -> None:
    assert _register(world, "patient", email="case@example.org").status_code == 201
    _error(_register(world, "patient", email="Case@EXAMPLE.org"), 409, "email_taken")


def test_registered_email_is_lower_cased(world: World) -> None:
    answer = _register(world, "patient", email="Mixed.Case@Example.ORG")
    assert answer.json()["email"] == "mixed.case@example.org"
    assert world.login("patient", "MIXED.case@example.org")


def test_unknown_field_is_refused_and_named(world: World) -> None:
    body = _error(_register(world, "patient", is_admin=True), 422, "invalid")
    assert "is_admin" in _named(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("first_name", "x" * 51),
        ("last_name", "x" * 51),
        ("date_of_birth", str(datetime.now(UTC).date() + timedelta(days=1))),
    ],
)
def test_invalid_registration_field_is_422_naming_it(world: World, field: str, value: str) -> None:
    body = _error(_register(world, "patient", **{field: value}), 422, "invalid")
    assert _named(body) == {field}


def test_doctor_with_unknown_specialization_is_404(world: World) -> None:
    answer = world.client.post("/doctors/", json=world.person(specialization_id=9999))
    _error(answer, 404, "not_found")


@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_login_with_the_oauth2_password_form_answers_a_bearer_token(
    world: World, settings: Settings, role: str
) -> None:
    email = _register(world, role).json()["email"]
    answer = world.client.post(f"/{role}s/login", data={"username": email, "password": PASSWORD})
    assert answer.request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.token_ttl
    assert world.client.get(f"/{role}s/me", headers=bearer(body["access_token"])).status_code == 200


def test_login_with_json_answers_a_bearer_token(world: World) -> None:
    email = _register(world, "patient").json()["email"]
    answer = world.client.post("/patients/login", json={"username": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "bearer"


def test_unknown_email_answers_exactly_like_a_wrong_password(world: World) -> None:
    email = _register(world, "patient").json()["email"]
    wrong = world.client.post("/patients/login", data={"username": email, "password": "wrong!!!"})
    unknown = world.client.post(
        "/patients/login", data={"username": "nobody@example.org", "password": PASSWORD}
    )
    _error(wrong, 401, "invalid_credentials")
    assert (unknown.status_code, unknown.json()) == (wrong.status_code, wrong.json())
    assert unknown.headers.get("www-authenticate") == wrong.headers.get("www-authenticate")


def test_a_patient_cannot_sign_in_as_a_doctor(world: World) -> None:
    email = _register(world, "patient").json()["email"]
    answer = world.client.post("/doctors/login", data={"username": email, "password": PASSWORD})
    _error(answer, 401, "invalid_credentials")


def test_patients_me_is_the_signed_in_patients_record(world: World) -> None:
    patient = world.patient()
    answer = world.client.get("/patients/me", headers=patient.headers)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["id"], answer.json()["email"]) == (patient.id, patient.email)


def test_doctors_me_is_the_signed_in_doctors_full_record(world: World) -> None:
    doctor = world.doctor(specialization_id=2)
    answer = world.client.get("/doctors/me", headers=doctor.headers)
    assert answer.status_code == 200, answer.text
    record = answer.json()
    assert (record["id"], record["email"], record["specialization_id"]) == (
        doctor.id,
        doctor.email,
        2,
    )


def test_me_without_a_token_is_401(world: World) -> None:
    _error(world.client.get("/patients/me"), 401, "unauthenticated")


def test_patients_me_with_a_doctors_token_is_403(world: World) -> None:
    _error(world.client.get("/patients/me", headers=world.doctor().headers), 403, "forbidden")


def test_put_patient_changes_the_given_fields(world: World) -> None:
    patient = world.patient()
    change = {"first_name": "Renamed", "phone": "+1 555 0100", "address": None}
    answer = world.client.put(f"/patients/{patient.id}", json=change, headers=patient.headers)
    assert answer.status_code == 200, answer.text
    record = world.client.get("/patients/me", headers=patient.headers).json()
    assert {name: record[name] for name in change} == change
    assert record["email"] == patient.email


def test_new_password_signs_in_and_the_old_one_no_longer_does(world: World) -> None:
    patient = world.patient()
    other_session = {"Authorization": f"Bearer {world.login('patient', patient.email)}"}
    change = {"password": "a brand new password", "current_password": PASSWORD}
    answer = world.client.put(f"/patients/{patient.id}", json=change, headers=patient.headers)
    assert answer.status_code == 200, answer.text
    assert world.login("patient", patient.email, "a brand new password")
    old = {"username": patient.email, "password": PASSWORD}
    _error(world.client.post("/patients/login", data=old), 401, "invalid_credentials")
    # Every session of the old password ended; the one that changed it goes on with a new token.
    for ended in (patient.headers, other_session):
        _error(world.client.get("/patients/me", headers=ended), 401, "unauthenticated")
    renewed = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    assert world.client.get("/patients/me", headers=renewed).status_code == 200


@pytest.mark.parametrize("change", [{"password": "a brand new password"}, {"email": "n@e.org"}])
def test_changing_ones_email_or_password_needs_the_current_password(
    world: World, change: dict[str, str]
) -> None:
    patient = world.patient()
    path = f"/patients/{patient.id}"
    missing = world.client.put(path, json=change, headers=patient.headers)
    assert _error(missing, 422, "invalid")["fields"][0]["field"] == "current_password"
    wrong = {**change, "current_password": "not the password"}
    _error(world.client.put(path, json=wrong, headers=patient.headers), 403, "forbidden")
    assert (
        world.client.get("/patients/me", headers=patient.headers).json()["email"] == patient.email
    )
    # An admin resets it without: the patient's sessions end all the same.
    admin = world.admin()
    assert world.client.put(path, json=change, headers=admin.headers).status_code == 200
    _error(world.client.get("/patients/me", headers=patient.headers), 401, "unauthenticated")


def test_put_patient_with_null_first_name_is_422(world: World) -> None:
    patient = world.patient()
    answer = world.client.put(
        f"/patients/{patient.id}", json={"first_name": None}, headers=patient.headers
    )
    body = _error(answer, 422, "invalid")
    assert any("first_name" in entry["field"] + entry["message"] for entry in body["fields"])


def test_put_another_patient_is_403(world: World) -> None:
    patient, other = world.patient(), world.patient()
    answer = world.client.put(
        f"/patients/{other.id}", json={"first_name": "X"}, headers=patient.headers
    )
    _error(answer, 403, "forbidden")


@pytest.mark.parametrize("query", ["specialization_id=2", "specialization=Dermatology"])
def test_doctors_are_filtered_by_specialization(world: World, query: str) -> None:
    world.doctor(specialization_id=1)
    wanted = [world.doctor(specialization_id=2).id, world.doctor(specialization_id=2).id]
    answer = world.client.get(f"/doctors/?{query}")
    assert answer.status_code == 200, answer.text
    assert [doctor["id"] for doctor in answer.json()] == wanted


def test_anonymous_doctor_listing_shows_public_profiles_only(world: World) -> None:
    world.doctor()
    (profile,) = world.client.get("/doctors/").json()
    assert set(profile) == {"id", "first_name", "last_name", "specialization", "address"}


def test_stored_password_hash_is_argon2id(world: World, raw: Engine) -> None:
    patient = world.patient()
    with raw.connect() as conn:
        stored = conn.execute(
            text("SELECT password_hash FROM patients WHERE id = :id"), {"id": patient.id}
        ).scalar_one()
    assert stored.startswith("$argon2id$")


def test_malformed_json_body_is_422_invalid(world: World) -> None:
    answer = world.client.post(
        "/patients/", content=b'{"first_name": ', headers={"content-type": "application/json"}
    )
    assert _named(_error(answer, 422, "invalid")) == {"body"}


def _big_json() -> bytes:
    return b'{"first_name": "' + b"x" * TOO_BIG + b'"}'


JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
BIG_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "json": lambda: {"content": _big_json(), "headers": JSON},
    "chunked-json": lambda: {"content": iter([_big_json()]), "headers": JSON},
    "form": lambda: {"data": {"username": "x" * TOO_BIG, "password": "x"}},
    "chunked-form": lambda: {
        "content": iter([b"password=x&username=" + b"x" * TOO_BIG]),
        "headers": FORM,
    },
}


@pytest.mark.parametrize("kind", BIG_BODIES)
def test_body_over_64_kib_is_413_payload_too_large(world: World, kind: str) -> None:
    path = "/patients/login" if "form" in kind else "/patients/"
    answer = world.client.post(path, **BIG_BODIES[kind]())
    assert ("content-length" in answer.request.headers) != kind.startswith("chunked")
    _error(answer, 413, "payload_too_large")


def _twice(world: World) -> httpx.Response:
    world.client.post("/patients/", json=world.person(email="twice@example.org"))
    return world.client.post("/patients/", json=world.person(email="twice@example.org"))


ERRORS: dict[str, Callable[[World], httpx.Response]] = {
    "401": lambda w: w.client.get("/patients/me", headers=bearer("not.a.token")),
    "401-credentials": lambda w: w.client.post(
        "/patients/login", data={"username": "a@example.org", "password": "b"}
    ),
    "403": lambda w: w.client.get("/patients/", headers=w.patient().headers),
    "404": lambda w: w.client.get("/doctors/999999"),
    "404-route": lambda w: w.client.get("/no/such/route"),
    "405": lambda w: w.client.delete("/patients/"),
    "409": _twice,
    "413": lambda w: w.client.post("/patients/", content=_big_json()),
    "422-body": lambda w: w.client.post("/patients/", json={"first_name": ""}),
    "422-json": lambda w: w.client.post("/patients/", content=b"{"),
    "422-query": lambda w: w.client.get("/doctors/?specialization_id=0"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_every_error_body_is_error_and_detail_plus_fields_on_422(world: World, case: str) -> None:
    answer = ERRORS[case](world)
    assert answer.status_code == int(case[:3]), answer.text
    body = answer.json()
    assert set(body) == (
        {"error", "detail", "fields"} if answer.status_code == 422 else {"error", "detail"}
    )
    assert isinstance(body["error"], str) and isinstance(body["detail"], str)
    for entry in body.get("fields", []):
        assert set(entry) == {"field", "message"}
        assert all(isinstance(value, str) for value in entry.values())


def test_unknown_route_is_404_not_found(world: World) -> None:
    _error(world.client.get("/no/such/route"), 404, "not_found")


def test_wrong_method_is_405_with_allow(world: World) -> None:
    answer = world.client.delete("/patients/")
    _error(answer, 405, "method_not_allowed")
    assert "GET" in answer.headers["allow"]


# The production cost (Settings' defaults): what a login costs in a real hub.
PRODUCTION = Settings(database_url="sqlite://", secret_key="unused")


def _accounts_at_production_cost(raw: Engine, count: int) -> tuple[list[str], float]:
    """`count` patients whose password hash has the production cost, and how long one
    verification of that hash takes on this machine, now."""
    hasher = PasswordHasher(
        time_cost=PRODUCTION.argon2_time_cost,
        memory_cost=PRODUCTION.argon2_memory_kib,
        type=Type.ID,
    )
    stored = hasher.hash(PASSWORD)
    ids = insert_patients(raw, count, "costly")
    with raw.begin() as conn:
        conn.execute(text("UPDATE patients SET password_hash = :hash"), {"hash": stored})
    started = time.perf_counter()
    hasher.verify(stored, PASSWORD)
    return [f"costly{n}@example.org" for n in range(len(ids))], time.perf_counter() - started


async def test_logins_at_production_cost_leave_the_event_loop_running(
    settings: Settings, raw: Engine
) -> None:
    emails, one_verify = _accounts_at_production_cost(raw, 5)
    passwords = Passwords(PRODUCTION.argon2_time_cost, PRODUCTION.argon2_memory_kib)
    engine = db.create_engine(settings.database_url)
    sessions = db.session_factory(engine)
    stop = asyncio.Event()
    gaps = [0.0]

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        tokens = await asyncio.gather(
            *(
                accounts.login(sessions, passwords, Tokens(settings), Role.patient, email, PASSWORD)
                for email in emails
            )
        )
    finally:
        stop.set()
        await ticker
        await engine.dispose()
    assert len(tokens) == 5
    assert max(gaps) < one_verify / 2, (max(gaps), one_verify)


async def test_more_concurrent_logins_than_database_connections_all_succeed(
    settings: Settings, raw: Engine
) -> None:
    # Four connections, and a pool wait of a few verifications: a login that hashed on the
    # loop, or held its connection while it hashed, would leave the others waiting longer.
    emails, one_verify = _accounts_at_production_cost(raw, 40)
    passwords = Passwords(PRODUCTION.argon2_time_cost, PRODUCTION.argon2_memory_kib)
    engine = create_async_engine(
        settings.database_url, pool_size=4, max_overflow=0, pool_timeout=8 * one_verify
    )
    sessions = db.session_factory(engine)
    try:
        answers = await asyncio.gather(
            *(
                accounts.login(sessions, passwords, Tokens(settings), Role.patient, email, PASSWORD)
                for email in emails
            ),
            return_exceptions=True,
        )
    finally:
        await engine.dispose()
    failures = [repr(answer) for answer in answers if isinstance(answer, BaseException)]
    assert not failures, f"{len(failures)} of 40 failed: {failures[:3]}"


@contextmanager
def before_writing(
    table: type[Any], when: str, act: Callable[[Connection, Any], None]
) -> Iterator[None]:
    """Run `act` on the service's own connection just before it writes a row of `table`
    (`when` is `before_insert` or `before_update`): a real refusal from the real database."""

    def hook(_mapper: Mapper[Any], connection: Connection, row: Any) -> None:
        act(connection, row)

    event.listen(table, when, hook)
    try:
        yield
    finally:
        event.remove(table, when, hook)


def doomed_specialization(raw: Engine) -> int:
    with raw.begin() as conn:
        conn.execute(text("INSERT INTO specializations (name) VALUES ('Doomed')"))
        return int(
            conn.execute(text("SELECT id FROM specializations WHERE name = 'Doomed'")).scalar_one()
        )


def deleting(sid: int) -> Callable[[Connection, Any], None]:
    def delete(connection: Connection, _row: Any) -> None:
        connection.execute(text("DELETE FROM specializations WHERE id = :id"), {"id": sid})

    return delete


def test_doctor_whose_specialization_vanishes_before_the_insert_is_404(
    world: World, raw: Engine
) -> None:
    sid = doomed_specialization(raw)
    with before_writing(Doctor, "before_insert", deleting(sid)):
        answer = world.client.post("/doctors/", json=world.person(specialization_id=sid))
    assert _error(answer, 404, "not_found")["detail"] == f"specialization {sid} not found"


def test_doctor_moved_to_a_specialization_that_vanishes_before_the_update_is_404(
    world: World, raw: Engine
) -> None:
    doctor = world.doctor()
    sid = doomed_specialization(raw)
    with before_writing(Doctor, "before_update", deleting(sid)):
        answer = world.client.put(
            f"/doctors/{doctor.id}", json={"specialization_id": sid}, headers=doctor.headers
        )
    assert _error(answer, 404, "not_found")["detail"] == f"specialization {sid} not found"


def test_an_integrity_error_other_than_a_taken_email_is_a_500_not_email_taken(
    settings: Settings, world: World
) -> None:
    def blank(_connection: Connection, row: Any) -> None:
        row.last_name = None  # NOT NULL

    with (
        TestClient(create_app(settings), raise_server_exceptions=False) as client,
        before_writing(Patient, "before_insert", blank),
    ):
        answer = client.post("/patients/", json=world.person())
    _error(answer, 500, "internal")


def test_email_taken_by_a_concurrent_registration_is_409_email_taken(world: World) -> None:
    taken = world.person()
    twin = world.person(email=taken["email"])

    def register_twin(connection: Connection, _row: Any) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        connection.execute(
            text(
                "INSERT INTO patients (first_name, last_name, date_of_birth, gender, email, "
                "phone, password_hash, created_at, updated_at) VALUES ('Twin', 'Twin', "
                "'1990-01-01', 'other', :email, '+4420794600', 'x', :now, :now)"
            ),
            {"email": twin["email"], "now": now},
        )

    with before_writing(Patient, "before_insert", register_twin):
        answer = world.client.post("/patients/", json=taken)
    _error(answer, 409, "email_taken")
