from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from icalendar import Calendar
from sqlalchemy import text

from hub.config import Settings
from tests.conftest import Actor, World, iso, slot
from tests.server import serve_process, stop


def _path(url: str) -> str:
    return "/feeds/" + url.split("/feeds/", 1)[1]


def _turn_on(world: World, owner: Actor, **body: Any) -> str:
    kind = "patients" if owner.role == "patient" else "doctors"
    extra = {"json": body} if body else {}
    answer = world.client.post(f"/{kind}/{owner.id}/calendar-feed", headers=owner.headers, **extra)
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert out["webcal"] == "webcal://" + out["url"].split("://", 1)[1]
    return _path(out["url"])


def _feed(world: World, path: str) -> Calendar:
    answer = world.client.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/calendar; charset=utf-8"
    calendar = Calendar.from_ical(answer.content)
    assert str(calendar["method"]) == "PUBLISH"
    return calendar


def _events(calendar: Calendar) -> list[Any]:
    return list(calendar.walk("VEVENT"))


def _invite(world: World, actor: Actor, appointment_id: int) -> Calendar:
    answer = world.client.get(f"/appointments/{appointment_id}/invite.ics", headers=actor.headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="appointment-{appointment_id}.ics"'
    )
    return Calendar.from_ical(answer.content)


def _cancel(world: World, actor: Actor, appointment_id: int) -> None:
    answer = world.client.put(
        f"/appointments/{appointment_id}/cancel", json={"reason": "away"}, headers=actor.headers
    )
    assert answer.status_code == 200, answer.text


def test_a_booked_appointment_is_in_the_feed_with_the_uid_of_its_invite(world: World) -> None:
    patient, doctor = world.patient(), world.doctor()
    answer = world.client.post(
        "/appointments/",
        json={"doctor_id": doctor.id, "scheduled_datetime": iso(slot(10)), "reason": "Migraine"},
        headers=patient.headers,
    )
    assert answer.status_code == 201, answer.text
    booked = answer.json()
    feed = world.client.get(_turn_on(world, patient))
    assert b"Migraine" not in feed.content  # no clinical text
    (event,) = _events(Calendar.from_ical(feed.content))
    assert event.decoded("dtstart") == slot(10)
    assert str(event["status"]) == "CONFIRMED"
    assert "Dr " in str(event["summary"])
    invite = _invite(world, patient, booked["id"])
    assert str(invite["method"]) == "REQUEST"
    (sent,) = _events(invite)
    assert str(sent["uid"]) == str(event["uid"])
    assert int(sent["sequence"]) == int(event["sequence"]) == 0
    assert b"Migraine" not in invite.to_ical()


def test_a_cancelled_appointment_stays_as_cancelled_then_leaves(world: World) -> None:
    patient, doctor = world.patient(), world.doctor()
    booked = world.book(patient, doctor, slot(10))
    path = _turn_on(world, patient)
    _cancel(world, patient, booked["id"])
    (event,) = _events(_feed(world, path))
    assert str(event["status"]) == "CANCELLED"
    assert int(event["sequence"]) == 1
    invite = _invite(world, doctor, booked["id"])
    assert str(invite["method"]) == "CANCEL"
    assert str(_events(invite)[0]["status"]) == "CANCELLED"
    long_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=31)
    with world.raw.begin() as conn:
        conn.execute(
            text("UPDATE appointments SET updated_at = :at WHERE id = :id"),
            {"at": long_ago, "id": booked["id"]},
        )
    assert _events(_feed(world, path)) == []


def test_a_rescheduled_appointment_is_one_event_whose_sequence_rose(world: World) -> None:
    patient, doctor = world.patient(), world.doctor()
    booked = world.book(patient, doctor, slot(10))
    path = _turn_on(world, patient)
    (before,) = _events(_feed(world, path))
    moved = world.client.put(
        f"/appointments/{booked['id']}/reschedule",
        json={"scheduled_datetime": iso(slot(14))},
        headers=patient.headers,
    )
    assert moved.status_code == 200, moved.text
    (after,) = _events(_feed(world, path))
    assert str(after["uid"]) == str(before["uid"])
    assert int(after["sequence"]) == 1
    assert after.decoded("dtstart") == slot(14)
    # The invite of the first one is the invite of where it went, never a CANCEL of it.
    invite = _invite(world, patient, booked["id"])
    assert str(invite["method"]) == "REQUEST"
    assert _events(invite)[0].decoded("dtstart") == slot(14)


def test_a_doctors_feed_shows_initials_unless_the_doctor_chose_names(world: World) -> None:
    patient = world.patient(first_name="Ada", last_name="Lovelace")
    doctor = world.doctor()
    world.book(patient, doctor, slot(10))
    path = _turn_on(world, doctor)
    (event,) = _events(_feed(world, path))
    assert str(event["summary"]) == "Appointment: A. L."
    assert b"Lovelace" not in world.client.get(path).content
    named = _turn_on(world, doctor, names=True)
    (event,) = _events(_feed(world, named))
    assert str(event["summary"]) == "Appointment: Ada Lovelace"
    assert world.client.get(path).status_code == 404  # the new URL revoked the old
    again = _turn_on(world, doctor)  # no body: the choice stands
    assert "Ada Lovelace" in str(_events(_feed(world, again))[0]["summary"])


def test_a_revoked_feed_answers_404_and_a_new_url_revokes_the_old(world: World) -> None:
    patient = world.patient()
    first = _turn_on(world, patient)
    second = _turn_on(world, patient)
    assert first != second
    assert world.client.get(first).status_code == 404
    _feed(world, second)
    answer = world.client.delete(f"/patients/{patient.id}/calendar-feed", headers=patient.headers)
    assert answer.status_code == 204
    gone = world.client.get(second)
    assert gone.status_code == 404
    assert gone.json()["error"] == "not_found"


def test_only_the_owner_and_admins_turn_a_feed_on_or_off(world: World) -> None:
    a, b, doctor = world.patient(), world.patient(), world.doctor()
    feed = f"/patients/{a.id}/calendar-feed"
    assert world.client.post(feed).status_code == 401
    assert world.client.post(feed, headers=b.headers).status_code == 403
    assert world.client.delete(feed, headers=b.headers).status_code == 403
    assert world.client.post(feed, headers=doctor.headers).status_code == 403
    mine = f"/doctors/{doctor.id}/calendar-feed"
    assert world.client.post(mine, headers=a.headers).status_code == 403
    assert world.client.post(mine, json={"names": [1]}, headers=doctor.headers).status_code == 422
    assert world.client.post(mine, json={"other": 1}, headers=doctor.headers).status_code == 422
    admin = world.admin()
    assert (
        world.client.post("/patients/999999/calendar-feed", headers=admin.headers).status_code
        == 404
    )
    assert (
        world.client.delete("/doctors/999999/calendar-feed", headers=admin.headers).status_code
        == 404
    )


def test_an_invite_is_for_the_parties_only(world: World) -> None:
    a, b, doctor = world.patient(), world.patient(), world.doctor()
    booked = world.book(a, doctor, slot(10))
    path = f"/appointments/{booked['id']}/invite.ics"
    assert world.client.get(path).status_code == 401
    assert world.client.get(path, headers=b.headers).status_code == 403
    assert world.client.get(path, headers=world.doctor().headers).status_code == 403
    assert world.client.get(path, headers=world.staff().headers).status_code == 200
    assert world.client.get("/appointments/999999/invite.ics", headers=a.headers).status_code == 404


def test_an_unknown_or_malformed_secret_answers_404(world: World) -> None:
    for secret in ("x" * 43, "short", "a" * 300, "%00%ff", "..%2f..%2fetc"):
        answer = world.client.get(f"/feeds/{secret}.ics")
        assert answer.status_code == 404, (secret, answer.text)


def test_an_erased_patients_feed_answers_404(world: World) -> None:
    patient = world.patient()
    path = _turn_on(world, patient)
    answer = world.client.request(
        "DELETE", f"/patients/{patient.id}", json={}, headers=world.admin().headers
    )
    assert answer.status_code == 204, answer.text
    assert world.client.get(path).status_code == 404


def test_a_feeds_secret_never_reaches_the_log(
    settings: Settings, backend: str, tmp_path: Path
) -> None:
    log = tmp_path / "hub.log"
    process, url = serve_process(settings, backend, tmp_path, log, HUB_LOG_LEVEL="info")
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            person = World(client, settings, None).person()  # type: ignore[arg-type]
            created = client.post("/patients/", json=person).json()
            login = client.post(
                "/patients/login",
                data={"username": person["email"], "password": person["password"]},
            )
            bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
            feed = client.post(f"/patients/{created['id']}/calendar-feed", headers=bearer)
            path = _path(feed.json()["url"])
            assert client.get(path).status_code == 200
            assert client.head(path).status_code == 200
            assert client.get(path + "x").status_code == 404
    finally:
        stop(process)
    secret = path.removeprefix("/feeds/").removesuffix(".ics")
    written = log.read_text()
    assert "/feeds/" in written  # the access log has the requests, without their secret
    assert secret not in written
