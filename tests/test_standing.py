"""Sessions end when they should: a token outlives neither its account nor a sign-out, a
deactivation or a password change; and doctors are vetted: a self-registered doctor is
neither listed nor bookable, nor shown patients, until an admin approves them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from hub import runtime
from hub.app import create_app
from hub.auth import Principal, Role, Tokens
from hub.config import Settings
from hub.standing import Standing
from hub.ws import connection
from tests.conftest import World, bearer, iso, slot


@pytest.fixture
def vetting(settings: Settings, raw: Engine) -> Iterator[World]:
    """A world on a hub that vets doctors (the default)."""
    vetted = dataclasses.replace(settings, approve_doctors=True)
    with TestClient(create_app(vetted)) as client:
        yield World(client, vetted, raw)


def _status(world: World, method: str, path: str, headers: dict[str, str], **kw: object) -> int:
    return world.client.request(method, path, headers=headers, **kw).status_code  # type: ignore[arg-type]


def test_a_validly_signed_token_of_an_account_that_does_not_exist_is_refused(
    world: World,
) -> None:
    # Found by a probe: a nonexistent admin's token listed every patient.
    tokens = Tokens(world.settings)
    for role, path in ((Role.admin, "/patients/"), (Role.patient, "/patients/me")):
        ghost = bearer(tokens.issue(Principal(role, 987_654)).access_token)
        answer = world.client.get(path, headers=ghost)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "unauthenticated"
    ghost = tokens.issue(Principal(Role.patient, 987_654)).access_token
    with world.client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": ghost})
        with pytest.raises(Exception) as closed:
            ws.receive_json()
    assert getattr(closed.value, "code", None) == 4401


def test_sign_out_everywhere_ends_every_session_of_the_account(world: World) -> None:
    patient = world.patient()
    other = bearer(world.login("patient", patient.email))
    assert _status(world, "POST", "/patients/me/sign-out", patient.headers) == 204
    for ended in (patient.headers, other):
        assert _status(world, "GET", "/patients/me", ended) == 401
    fresh = bearer(world.login("patient", patient.email))
    assert _status(world, "GET", "/patients/me", fresh) == 200


def test_a_deactivated_account_is_signed_out_and_cannot_sign_in_until_reactivated(
    world: World,
) -> None:
    patient, admin = world.patient(), world.admin()
    path = f"/patients/{patient.id}/active"
    assert _status(world, "PUT", path, admin.headers, json={"active": False}) == 204
    assert _status(world, "GET", "/patients/me", patient.headers) == 401
    form = {"username": patient.email, "password": "correct horse battery"}
    refused = world.client.post("/patients/login", data=form)
    assert refused.status_code == 403 and "deactivated" in refused.json()["detail"]
    assert _status(world, "PUT", path, admin.headers, json={"active": True}) == 204
    assert world.client.post("/patients/login", data=form).status_code == 200


def test_a_live_websocket_session_ends_when_its_account_is_deactivated(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "STANDING_CHECK", 0.2)
    patient, admin = world.patient(), world.admin()
    with world.client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": patient.token})
        assert ws.receive_json()["type"] == "ready"
        path = f"/patients/{patient.id}/active"
        assert _status(world, "PUT", path, admin.headers, json={"active": False}) == 204
        with pytest.raises(Exception) as closed:
            while True:
                ws.receive_json()
    assert getattr(closed.value, "code", None) == 4401


def test_a_self_registered_doctor_waits_for_an_admin(vetting: World) -> None:
    world = vetting
    doctor, patient, admin = world.doctor(), world.patient(), world.admin()
    me = world.client.get("/doctors/me", headers=doctor.headers).json()
    assert me["approved"] is False
    listed = [d["id"] for d in world.client.get("/doctors/").json()]
    assert doctor.id not in listed
    assert world.client.get(f"/doctors/{doctor.id}").status_code == 404
    booking = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(10))}
    for path in ("/appointments/", "/appointments/holds"):
        refused = world.client.post(path, json=booking, headers=patient.headers)
        assert refused.status_code == 404, refused.text
    everyone = [d["id"] for d in world.client.get("/doctors/", headers=admin.headers).json()]
    assert doctor.id in everyone  # admins see who waits
    approval = f"/doctors/{doctor.id}/approval"
    assert _status(world, "PUT", approval, patient.headers, json={"approved": True}) == 403
    assert _status(world, "PUT", approval, doctor.headers, json={"approved": True}) == 403
    approved = world.client.put(approval, json={"approved": True}, headers=admin.headers)
    assert approved.status_code == 200 and approved.json()["approved"] is True
    assert doctor.id in [d["id"] for d in world.client.get("/doctors/").json()]
    world.book(patient, doctor, slot(10))


def test_a_pending_doctor_reads_no_patient_record(vetting: World, raw: Engine) -> None:
    world = vetting
    doctor, patient, admin = world.doctor(), world.patient(), world.admin()
    approval = f"/doctors/{doctor.id}/approval"
    world.client.put(approval, json={"approved": True}, headers=admin.headers)
    world.book(patient, doctor, slot(10))
    assert _status(world, "GET", f"/patients/{patient.id}", doctor.headers) == 200
    world.client.put(approval, json={"approved": False}, headers=admin.headers)
    assert _status(world, "GET", f"/patients/{patient.id}", doctor.headers) == 403
    assert world.client.get("/patients/", headers=doctor.headers).json() == []


def test_a_doctor_reads_a_patient_only_through_an_appointment_not_cancelled(
    world: World, raw: Engine
) -> None:
    # Found by a probe: a doctor kept reading the record of a patient who had cancelled.
    doctor, patient = world.doctor(), world.patient()
    appointment = world.book(patient, doctor, slot(10))
    assert _status(world, "GET", f"/patients/{patient.id}", doctor.headers) == 200
    cancel = f"/appointments/{appointment['id']}/cancel"
    assert _status(world, "PUT", cancel, patient.headers, json={}) == 200
    assert _status(world, "GET", f"/patients/{patient.id}", doctor.headers) == 403
    assert world.client.get("/patients/", headers=doctor.headers).json() == []
    with raw.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM appointments")).scalar_one() == 1


def test_open_registration_keeps_the_original_design(world: World) -> None:
    # HUB_APPROVE_DOCTORS=false (the suite's setting): listed and bookable at once.
    doctor = world.doctor()
    assert doctor.id in [d["id"] for d in world.client.get("/doctors/").json()]
    world.book(world.patient(), doctor, slot(10))


async def test_many_asks_about_one_account_at_once_read_it_once(
    world: World, settings: Settings, raw: Engine
) -> None:
    patient = world.patient()
    async with runtime.open_hub(settings) as hub:
        standings = hub.standings
        real, reads, gate = standings._read, 0, asyncio.Event()

        async def counted(role: Role, id_: int) -> Standing | None:
            nonlocal reads
            reads += 1
            await gate.wait()
            return await real(role, id_)

        standings._read = counted  # type: ignore[method-assign]
        asks = [asyncio.create_task(standings.of(Role.patient, patient.id)) for _ in range(50)]
        await asyncio.sleep(0.05)
        gate.set()
        answers = await asyncio.gather(*asks)
        assert reads == 1
        assert {answer for answer in answers} == {Standing(True, 0, True)}

        # A change made by this process while a read is under way: that read's answer is
        # neither kept nor joined by whoever asks after the change.
        standings._cache.clear()
        gate.clear()
        before = asyncio.create_task(standings.of(Role.patient, patient.id))
        await asyncio.sleep(0.05)
        with raw.begin() as conn:
            conn.execute(text("UPDATE patients SET active = 0 WHERE id = :id"), {"id": patient.id})
        standings.forget(Role.patient, patient.id)
        after = asyncio.create_task(standings.of(Role.patient, patient.id))
        await asyncio.sleep(0.05)
        gate.set()
        await before
        assert reads == 3
        assert (await after) == Standing(False, 0, True)
        assert (await standings.of(Role.patient, patient.id)) == Standing(False, 0, True)
