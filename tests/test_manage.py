"""Links that manage one appointment (hub/manage.py, hub/api/manage.py): no sign-in, the
link is the key; it is refused once used, once its appointment changed, past its expiry,
and when it is any other kind of token."""

from __future__ import annotations

import logging
import time
from datetime import UTC, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from hub.auth import Principal, Role, Tokens
from hub.config import Settings
from hub.links import LIFETIME, Links, manage_print
from hub.models import Appointment
from tests.conftest import Actor, World, iso, slot


def manage_token(settings: Settings, raw: Engine, appointment_id: int, **sign: Any) -> str:
    """A manage link's token for an appointment as it is now, as the notices sign one."""
    with raw.connect() as conn:
        status, updated_at = conn.execute(
            select(Appointment.status, Appointment.updated_at).where(
                Appointment.id == appointment_id
            )
        ).one()
    updated_at = updated_at if updated_at.tzinfo else updated_at.replace(tzinfo=UTC)
    fingerprint = manage_print(status.value, updated_at)
    return Links(settings).sign("manage", f"appointment:{appointment_id}", fingerprint, **sign)


def _booked(world: World, start_hour: int = 10) -> tuple[Actor, Actor, dict[str, Any]]:
    patient, doctor = world.patient(), world.doctor()
    return patient, doctor, world.book(patient, doctor, slot(start_hour))


def _gone(answer: Any) -> bool:
    return answer.status_code == 410 and answer.json()["error"] == "link_gone"


def test_a_manage_link_shows_the_appointment_and_the_policy(world: World, raw: Engine) -> None:
    _patient, _doctor, booked = _booked(world)
    token = manage_token(world.settings, raw, booked["id"])
    answer = world.client.get(f"/manage/{token}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == booked["id"]
    assert body["start"] == iso(slot(10))
    assert body["status"] == "scheduled"
    assert body["timezone"] == "UTC"
    assert body["doctor"]["last_name"].startswith("Last")
    assert body["doctor"]["specialization"]["id"] == 1
    assert body["policy"]["words"].startswith("Free cancellation until 24 hours before the visit")
    assert body["cancelling"] == "free"
    assert body["cancel_until"] == iso(slot(10) - timedelta(days=1))
    # No patient identity beyond a first name, no reason for the visit.
    assert body["patient_first_name"].startswith("First")
    assert not {"patient", "patient_id", "reason", "email"} & body.keys()


def test_a_link_cancels_once_and_is_refused_the_second_time(world: World, raw: Engine) -> None:
    patient, _doctor, booked = _booked(world)
    token = manage_token(world.settings, raw, booked["id"])
    first = world.client.post(f"/manage/{token}/cancel", json={"reason": "I am better"})
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "cancelled"
    assert _gone(world.client.post(f"/manage/{token}/cancel", json={}))
    assert _gone(world.client.get(f"/manage/{token}"))
    history = world.client.get(f"/appointments/{booked['id']}/history", headers=patient.headers)
    last = history.json()[-1]
    assert (last["to_status"], last["actor_role"], last["actor_id"]) == (
        "cancelled",
        "patient",
        patient.id,
    )


def test_a_cancel_needs_no_body(world: World, raw: Engine) -> None:
    _patient, _doctor, booked = _booked(world)
    token = manage_token(world.settings, raw, booked["id"])
    answer = world.client.post(f"/manage/{token}/cancel")
    assert answer.status_code == 200, answer.text


def test_a_link_is_refused_after_the_patient_rescheduled(world: World, raw: Engine) -> None:
    patient, _doctor, booked = _booked(world)
    token = manage_token(world.settings, raw, booked["id"])
    moved = world.client.put(
        f"/appointments/{booked['id']}/reschedule",
        json={"scheduled_datetime": iso(slot(11))},
        headers=patient.headers,
    )
    assert moved.status_code == 200, moved.text
    assert _gone(world.client.get(f"/manage/{token}"))
    assert _gone(world.client.post(f"/manage/{token}/cancel", json={}))
    assert _gone(world.client.get(f"/manage/{token}/slots", params={"date": "2030-01-07"}))


def test_a_link_reschedules_and_the_old_link_is_then_refused(world: World, raw: Engine) -> None:
    patient, doctor, booked = _booked(world)
    token = manage_token(world.settings, raw, booked["id"])
    day = slot(10).date().isoformat()
    free = world.client.get(f"/manage/{token}/slots", params={"date": day})
    assert free.status_code == 200, free.text
    assert iso(slot(10)) not in free.json()["slots"]  # its own time is taken
    assert iso(slot(14)) in free.json()["slots"]
    answer = world.client.post(f"/manage/{token}/reschedule", json={"start": iso(slot(14))})
    assert answer.status_code == 200, answer.text
    new = answer.json()
    assert (new["start"], new["status"], new["rescheduled_from_id"]) == (
        iso(slot(14)),
        "scheduled",
        booked["id"],
    )
    assert _gone(world.client.post(f"/manage/{token}/reschedule", json={"start": iso(slot(15))}))
    mine = world.client.get(f"/appointments/patient/{patient.id}", headers=patient.headers)
    live = [a for a in mine.json() if a["status"] == "scheduled"]
    assert [(a["id"], a["doctor_id"]) for a in live] == [(new["id"], doctor.id)]
    # The new appointment's own link works.
    assert world.client.get(f"/manage/{manage_token(world.settings, raw, new['id'])}").is_success


def test_a_link_refuses_a_start_that_is_not_offered(world: World, raw: Engine) -> None:
    _patient, _doctor, booked = _booked(world)
    token = manage_token(world.settings, raw, booked["id"])
    night = slot(10).replace(hour=3)
    answer = world.client.post(f"/manage/{token}/reschedule", json={"start": iso(night)})
    assert answer.status_code == 422 and answer.json()["error"] == "not_offered", answer.text
    assert world.client.get(f"/manage/{token}").is_success  # nothing changed: still good


@pytest.mark.parametrize(
    "body", [{}, {"start": "tomorrow"}, {"start": "2030-01-07T10:00:00"}, {"start": 5}, []]
)
def test_bad_reschedule_bodies_are_422(world: World, raw: Engine, body: Any) -> None:
    _patient, _doctor, booked = _booked(world)
    token = manage_token(world.settings, raw, booked["id"])
    answer = world.client.post(f"/manage/{token}/reschedule", json=body)
    assert answer.status_code == 422, answer.text


def test_a_bad_date_for_the_free_times_is_422(world: World, raw: Engine) -> None:
    _patient, _doctor, booked = _booked(world)
    token = manage_token(world.settings, raw, booked["id"])
    for params in ({}, {"date": "7 January"}, {"date": "2030-02-30"}):
        answer = world.client.get(f"/manage/{token}/slots", params=params)
        assert answer.status_code == 422, answer.text


def test_another_purposes_token_or_a_login_token_is_refused(world: World, raw: Engine) -> None:
    patient, _doctor, booked = _booked(world)
    links, subject = Links(world.settings), f"appointment:{booked['id']}"
    fingerprint = manage_token(world.settings, raw, booked["id"])  # a good one exists
    assert world.client.get(f"/manage/{fingerprint}").is_success
    login = Tokens(world.settings).issue(Principal(Role.patient, patient.id)).access_token
    print_ = links.read("manage", fingerprint).fingerprint
    for token in (
        links.sign("reset", subject, print_),
        links.sign("verify", subject, print_),
        login,
        patient.token,
        "not-a-token",
        links.sign("manage", f"patient:{patient.id}", print_),
        links.sign("manage", "appointment:99999999999", print_),
        fingerprint[:-4] + "AAAA",
    ):
        assert _gone(world.client.get(f"/manage/{token}")), token
        assert _gone(world.client.post(f"/manage/{token}/cancel", json={})), token
    assert world.client.get(f"/manage/{fingerprint}").is_success  # nothing was cancelled


def test_a_link_is_refused_past_its_expiry(world: World, raw: Engine) -> None:
    _patient, _doctor, booked = _booked(world)
    issued = time.time() - LIFETIME["manage"] - 60
    token = manage_token(world.settings, raw, booked["id"], now=issued)
    assert _gone(world.client.get(f"/manage/{token}"))
    assert _gone(world.client.post(f"/manage/{token}/cancel", json={}))
    fresh = manage_token(world.settings, raw, booked["id"], now=time.time() - 60)
    assert world.client.get(f"/manage/{fresh}").is_success


def _policy(world: World, doctor: Actor, **policy: Any) -> None:
    hours = world.client.get(f"/doctors/{doctor.id}/availability", headers=doctor.headers)
    body = {**hours.json(), "policy": {**hours.json()["policy"], **policy}}
    answer = world.client.put(
        f"/doctors/{doctor.id}/availability", json=body, headers=doctor.headers
    )
    assert answer.status_code == 200, answer.text


def test_the_cutoff_refuses_a_late_cancel_as_for_the_patient(world: World, raw: Engine) -> None:
    _patient, doctor, booked = _booked(world)
    _policy(world, doctor, cancel_cutoff_minutes=30 * 24 * 60)  # the visit is inside it
    token = manage_token(world.settings, raw, booked["id"])
    shown = world.client.get(f"/manage/{token}").json()
    assert shown["cancelling"] == "refused"
    assert "cannot be cancelled online" in shown["policy"]["words"]
    answer = world.client.post(f"/manage/{token}/cancel", json={})
    assert answer.status_code == 409 and answer.json()["error"] == "too_late", answer.text
    moved = world.client.post(f"/manage/{token}/reschedule", json={"start": iso(slot(14))})
    assert moved.status_code == 409 and moved.json()["error"] == "too_late", moved.text
    assert world.client.get(f"/manage/{token}").is_success  # refused: nothing changed


def test_a_late_cancel_where_allowed_is_recorded_late(world: World, raw: Engine) -> None:
    _patient, doctor, booked = _booked(world)
    _policy(world, doctor, cancel_cutoff_minutes=30 * 24 * 60, allow_late_cancel=True)
    token = manage_token(world.settings, raw, booked["id"])
    assert world.client.get(f"/manage/{token}").json()["cancelling"] == "late"
    answer = world.client.post(f"/manage/{token}/cancel", json={})
    assert answer.status_code == 200, answer.text
    assert answer.json()["late_cancel"] is True


def test_link_calls_are_audited_as_the_patient_without_the_token(world: World, raw: Engine) -> None:
    patient, _doctor, booked = _booked(world)
    token = manage_token(world.settings, raw, booked["id"])
    assert world.client.post(f"/manage/{token}/cancel", json={}).is_success
    assert _gone(world.client.post(f"/manage/{token}/cancel", json={}))
    admin = world.admin()
    answer = world.client.get(
        "/audit", params={"action": "appointment.cancel"}, headers=admin.headers
    )
    rows = answer.json()
    done = [(r["actor_role"], r["actor_id"], r["resource"], r["outcome"]) for r in rows]
    assert ("patient", patient.id, f"appointment:{booked['id']}", "ok") in done
    assert (None, None, "manage-link", "link_gone") in done
    with raw.connect() as conn:
        stored = conn.execute(text("SELECT resource, request_id FROM audit_events")).all()
    assert not any(token in str(row) for row in stored)


def test_no_log_line_holds_the_token(
    world: World, raw: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    from hub import logs

    _patient, _doctor, booked = _booked(world)
    token = manage_token(world.settings, raw, booked["id"])
    assert token not in logs.redact(f'127.0.0.1:5 - "GET /manage/{token}/slots?date=x HTTP/1.1"')
    record = logging.LogRecord(
        "uvicorn.access", 20, __file__, 1, '%s - "%s %s"', ("a", "GET", f"/manage/{token}"), None
    )
    assert logs.Redact().filter(record) and token not in record.getMessage()
    with caplog.at_level(logging.DEBUG):
        world.client.get(f"/manage/{token}")
        world.client.post(f"/manage/{token}/cancel", json={"reason": "x"})
    client = ("httpx", "httpx2")  # the test's own client says what it asked
    hub = [r for r in caplog.records if r.name.split(".")[0] not in client]
    assert not [r for r in hub if token in r.getMessage()]
