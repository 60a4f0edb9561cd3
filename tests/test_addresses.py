from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from hub.addresses import reset_print
from hub.app import create_app
from hub.config import Settings
from hub.links import Links
from tests.conftest import PASSWORD, Actor, World, iso, slot

NEW_PASSWORD = "a brand new passphrase"


def _links(world: World, kind: str) -> list[tuple[str, int, str]]:
    """(role, account id, token) of each notification of `kind`, oldest first."""
    with world.raw.connect() as conn:
        rows = conn.execute(
            text("SELECT role, account_id, payload FROM notifications WHERE kind = :k ORDER BY id"),
            {"k": kind},
        ).all()
    return [(role, int(account), _payload(payload)["token"]) for role, account, payload in rows]


def _payload(value: Any) -> dict[str, Any]:
    return dict(json.loads(value) if isinstance(value, str | bytes) else value)


def _token(world: World, kind: str, actor: Actor) -> str:
    mine = [
        t for role, account, t in _links(world, kind) if (role, account) == (actor.role, actor.id)
    ]
    assert mine, f"no {kind} link for {actor.role} {actor.id}"
    return mine[-1]


def _reset(world: World, email: str, role: str = "patient") -> Any:
    return world.client.post("/password-reset", json={"email": email, "role": role})


def _me(world: World, actor: Actor) -> Any:
    return world.client.get("/patients/me", headers=actor.headers)


@contextmanager
def _world_with(settings: Settings, raw: Engine, **changes: Any) -> Iterator[World]:
    with TestClient(create_app(replace(settings, **changes))) as client:
        yield World(client, replace(settings, **changes), raw)


def test_a_reset_answers_an_unknown_and_a_known_address_alike(world: World) -> None:
    patient = world.patient()
    known, unknown = _reset(world, patient.email), _reset(world, "nobody@example.org")
    varying = {"date", "x-request-id"}
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert {k: v for k, v in known.headers.items() if k not in varying} == {
        k: v for k, v in unknown.headers.items() if k not in varying
    }
    assert [(role, account) for role, account, _ in _links(world, "reset")] == [
        ("patient", patient.id)
    ]


def test_a_reset_of_another_role_or_address_writes_nothing(world: World) -> None:
    patient = world.patient()
    assert _reset(world, patient.email, role="doctor").status_code == 202
    assert _reset(world, patient.email.upper(), role="patient").status_code == 202  # any case
    assert [account for _, account, _ in _links(world, "reset")] == [patient.id]


def test_a_reset_link_sets_the_password_once_and_ends_every_session(world: World) -> None:
    patient = world.patient()
    _reset(world, patient.email)
    token = _token(world, "reset", patient)
    done = world.client.post(
        "/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert done.status_code == 204, done.text
    assert _me(world, patient).status_code == 401  # the session from before the reset ended
    assert world.login("patient", patient.email, NEW_PASSWORD)
    old = world.client.post(
        "/patients/login", data={"username": patient.email, "password": PASSWORD}
    )
    assert old.status_code == 401
    again = world.client.post(
        "/password-reset/confirm", json={"token": token, "password": "yet another passphrase"}
    )
    assert (again.status_code, again.json()["error"]) == (410, "link_gone")
    assert world.login("patient", patient.email, NEW_PASSWORD)


def test_a_reset_verifies_the_address_it_was_sent_to(world: World) -> None:
    patient = world.patient()
    assert _me(world, patient).json()["email_verified"] is False
    _reset(world, patient.email)
    body = {"token": _token(world, "reset", patient), "password": NEW_PASSWORD}
    assert world.client.post("/password-reset/confirm", json=body).status_code == 204
    fresh = world.login("patient", patient.email, NEW_PASSWORD)
    me = world.client.get("/patients/me", headers={"Authorization": f"Bearer {fresh}"})
    assert me.json()["email_verified"] is True


def test_the_front_desk_and_admins_reset_their_passwords_too(world: World) -> None:
    staff = world.staff()
    assert _reset(world, staff.email, role="staff").status_code == 202
    body = {"token": _token(world, "reset", staff), "password": NEW_PASSWORD}
    assert world.client.post("/password-reset/confirm", json=body).status_code == 204
    assert world.login("staff", staff.email, NEW_PASSWORD)


def test_an_expired_reset_link_is_refused(world: World) -> None:
    patient = world.patient()
    with world.raw.connect() as conn:
        hashed, epoch = conn.execute(
            text("SELECT password_hash, session_epoch FROM patients WHERE id = :id"),
            {"id": patient.id},
        ).one()
    links = Links(world.settings)
    stale = links.sign(
        "reset", f"patient:{patient.id}", reset_print(hashed, epoch), now=time.time() - 3601
    )
    fresh = links.sign("reset", f"patient:{patient.id}", reset_print(hashed, epoch))
    body = {"token": stale, "password": NEW_PASSWORD}
    refused = world.client.post("/password-reset/confirm", json=body)
    assert (refused.status_code, refused.json()["error"]) == (410, "link_gone")
    body["token"] = fresh
    assert world.client.post("/password-reset/confirm", json=body).status_code == 204


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/password-reset", {"email": "a@example.org"}, 422),
        ("/password-reset", {"email": "a@example.org", "role": "root"}, 422),
        ("/password-reset", {"email": "", "role": "patient"}, 422),
        ("/password-reset", {"email": "a" * 101, "role": "patient"}, 422),
        ("/password-reset", [], 422),
        ("/password-reset/confirm", {"token": "x", "password": "short"}, 422),
        ("/password-reset/confirm", {"token": "", "password": NEW_PASSWORD}, 422),
        ("/password-reset/confirm", {"token": "x" * 2001, "password": NEW_PASSWORD}, 422),
        ("/password-reset/confirm", {"token": "not.a.token", "password": NEW_PASSWORD}, 410),
        ("/password-reset/confirm", {"token": 5, "password": NEW_PASSWORD}, 422),
        ("/verify", {"token": "not.a.token"}, 410),
        ("/verify", {}, 422),
        ("/verify", {"token": "x", "extra": 1}, 422),
    ],
)
def test_a_bad_request_is_a_clean_refusal(world: World, path: str, body: Any, status: int) -> None:
    answer = world.client.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] in ("invalid", "link_gone")


def test_a_link_of_another_purpose_is_refused(world: World) -> None:
    patient = world.patient()
    verify = _token(world, "verify", patient)
    body = {"token": verify, "password": NEW_PASSWORD}
    assert world.client.post("/password-reset/confirm", json=body).status_code == 410
    _reset(world, patient.email)
    reset = _token(world, "reset", patient)
    assert world.client.post("/verify", json={"token": reset}).status_code == 410
    access = patient.token  # a login token is no link either
    assert world.client.post("/verify", json={"token": access}).status_code == 410


def test_registering_sends_a_link_that_verifies_the_address(world: World) -> None:
    patient = world.patient()
    assert _me(world, patient).json()["email_verified"] is False
    token = _token(world, "verify", patient)
    assert world.client.post("/verify", json={"token": token}).status_code == 204
    assert _me(world, patient).json()["email_verified"] is True
    assert world.client.post("/verify", json={"token": token}).status_code == 204  # no harm


def test_the_front_desk_registering_a_patient_sends_them_a_link(world: World) -> None:
    desk = world.staff()
    body = {k: v for k, v in world.person().items() if k != "password"}
    made = world.client.post("/staff/patients", json=body, headers=desk.headers)
    assert made.status_code == 201, made.text
    assert ("patient", made.json()["id"]) in [(r, a) for r, a, _ in _links(world, "verify")]


def test_a_new_email_address_is_unverified_until_its_own_link_is_followed(world: World) -> None:
    patient = world.patient()
    first = _token(world, "verify", patient)
    assert world.client.post("/verify", json={"token": first}).status_code == 204
    change = {"email": "moved@example.org", "current_password": PASSWORD}
    changed = world.client.put(f"/patients/{patient.id}", json=change, headers=patient.headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["email_verified"] is False
    stale = world.client.post("/verify", json={"token": first})
    assert (stale.status_code, stale.json()["error"]) == (410, "link_gone")
    second = _token(world, "verify", patient)
    assert second != first
    assert world.client.post("/verify", json={"token": second}).status_code == 204
    renewed = {"Authorization": f"Bearer {changed.json()['access_token']}"}
    assert world.client.get("/patients/me", headers=renewed).json()["email_verified"] is True


def test_a_patient_asks_for_the_link_again(world: World) -> None:
    patient = world.patient()
    again = world.client.post("/patients/me/verify-email", headers=patient.headers)
    assert again.status_code == 202, again.text
    assert len([a for _, a, _ in _links(world, "verify") if a == patient.id]) == 2
    token = _token(world, "verify", patient)
    assert world.client.post("/verify", json={"token": token}).status_code == 204
    done = world.client.post("/patients/me/verify-email", headers=patient.headers)
    assert done.status_code == 202
    assert len([a for _, a, _ in _links(world, "verify") if a == patient.id]) == 2  # no more


def test_resets_to_one_account_are_capped_silently(settings: Settings, raw: Engine) -> None:
    with _world_with(settings, raw, registrations=20) as world:
        patient = world.patient()
        answers = {_reset(world, patient.email).status_code for _ in range(8)}
        assert answers == {202}
        assert len(_links(world, "reset")) == 5  # MAILS_PER_RECIPIENT


def test_resets_from_one_address_are_throttled(settings: Settings, raw: Engine) -> None:
    with _world_with(settings, raw, registrations=3) as world:
        statuses = [_reset(world, f"someone{n}@example.org").status_code for n in range(4)]
        assert statuses == [202, 202, 202, 429]


def test_links_and_addresses_stay_out_of_the_log(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    patient = world.patient()
    _reset(world, patient.email)
    token = _token(world, "reset", patient)
    body = {"token": token, "password": NEW_PASSWORD}
    world.client.post("/password-reset/confirm", json=body)
    world.client.post("/password-reset/confirm", json=body)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("hub"))
    assert token not in logged
    assert patient.email not in logged
    assert NEW_PASSWORD not in logged


def test_an_unverified_patient_holds_but_does_not_book_when_the_clinic_requires_it(
    settings: Settings, raw: Engine
) -> None:
    with _world_with(settings, raw, require_verified_email=True) as world:
        patient, doctor, desk = world.patient(), world.doctor(), world.staff()
        wanted = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(10))}
        held = world.client.post("/appointments/holds", json=wanted, headers=patient.headers)
        assert held.status_code == 201, held.text
        hold = {"hold_id": held.json()["hold_id"]}
        refused = world.client.post("/appointments/", json=hold, headers=patient.headers)
        assert (refused.status_code, refused.json()["error"]) == (403, "unverified_email")
        direct = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(11))}
        refused = world.client.post("/appointments/", json=direct, headers=patient.headers)
        assert (refused.status_code, refused.json()["error"]) == (403, "unverified_email")
        for_them = {**direct, "patient_id": patient.id}
        booked = world.client.post("/appointments/", json=for_them, headers=desk.headers)
        assert booked.status_code == 201, booked.text


def test_a_verified_patient_books_when_the_clinic_requires_it(
    settings: Settings, raw: Engine
) -> None:
    with _world_with(settings, raw, require_verified_email=True) as world:
        patient, doctor = world.patient(), world.doctor()
        token = _token(world, "verify", patient)
        assert world.client.post("/verify", json={"token": token}).status_code == 204
        assert world.book(patient, doctor, slot(10))["patient_id"] == patient.id


def test_unverified_patients_book_by_default(world: World) -> None:
    patient, doctor = world.patient(), world.doctor()
    assert world.book(patient, doctor, slot(10))["patient_id"] == patient.id
