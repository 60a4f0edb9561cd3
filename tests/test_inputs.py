from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from hub.app import ENDPOINTS
from hub.protocol import Close
from tests.conftest import Actor, World, iso, slot
from tests.test_ws import closed_with, connected, day

EDGES = [
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:00:00+05:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T01:00:00-05:00",
]
DEPTHS = [200, 900, 990, 5000, 15000]
ODD_NUMBERS = ["1e999", "-1e999", "9" * 5000, "NaN", "Infinity", "-Infinity"]
NOT_INTS: dict[str, Callable[[int], object]] = {
    "bool": lambda _: True,
    "fraction": lambda n: n + 0.5,
    "text": str,
}
JSON_BODIES = [e for e in ENDPOINTS if e.body is not None]


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _post_json(client: TestClient, path: str, text: str, **headers: str) -> httpx.Response:
    return client.post(path, content=text, headers={"content-type": "application/json", **headers})


def _as(actor: Actor) -> dict[str, Any]:
    return {"headers": actor.headers}


def _invalid(answer: httpx.Response, status: int = 422) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] in ("invalid", "not_offered"), answer.text


# Lengths: what the wire accepts fits the column it lands in


def test_every_person_field_at_its_column_length_is_stored(world: World) -> None:
    longest = {
        "first_name": "F" * 50,
        "last_name": "L" * 50,
        "email": "e" * 60 + "@" + "d" * 35 + ".org",
        "phone": "+" + "1" * 19,
        "address": "A" * 200,
    }
    for role, extra in (("patient", {}), ("doctor", {"specialization_id": 1})):
        sent = world.person(**{**longest, "email": f"{role[0]}{longest['email'][1:]}"}, **extra)
        answer = world.client.post(f"/{role}s/", json=sent)
        assert answer.status_code == 201, answer.text
        assert {k: answer.json()[k] for k in longest} == {k: sent[k] for k in longest}
    plain_phone = world.client.post("/patients/", json=world.person(phone="1" * 20))
    assert plain_phone.status_code == 201, plain_phone.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_name", "F" * 51),
        ("last_name", "L" * 51),
        ("email", "e" * 61 + "@" + "d" * 35 + ".org"),
        ("phone", "+" + "1" * 20),
        ("phone", "1" * 21),
        ("address", "A" * 201),
    ],
)
@pytest.mark.parametrize("role", ["patient", "doctor"])
def test_a_person_field_longer_than_its_column_is_a_422(
    world: World, role: str, field: str, value: str
) -> None:
    extra = {"specialization_id": 1} if role == "doctor" else {}
    _invalid(world.client.post(f"/{role}s/", json=world.person(**{field: value}, **extra)))
    patient = world.patient()
    _invalid(world.client.put(f"/patients/{patient.id}", json={field: value}, **_as(patient)))


# Unicode's White_Space, and the control characters that are not in it.
SPACES = [chr(c) for c in range(0x3001) if chr(c).isspace() and not 0x1C <= c <= 0x1F]
CONTROLS = [chr(c) for c in [*range(0x09), *range(0x0E, 0x20), *range(0x7F, 0xA0)] if c != 0x85]


def _first_name_pattern(world: World) -> str:
    schema = world.client.get("/openapi.json").json()["components"]["schemas"]
    return str(schema["PatientCreate"]["properties"]["first_name"]["pattern"])


@pytest.mark.parametrize("space", SPACES, ids=lambda c: f"U+{ord(c):04X}")
def test_a_name_is_trimmed_of_spaces_and_the_schema_says_so(world: World, space: str) -> None:
    # The published pattern is what a client (or a fuzzer) checks: it must refuse exactly what
    # the hub refuses, read as JSON Schema reads it and as Python does.
    pattern = _first_name_pattern(world)
    assert re.search(pattern, space * 3) is None
    assert re.search(pattern, f"{space}Ann{space}") is not None
    _invalid(world.client.post("/patients/", json=world.person(first_name=space * 3)))
    kept = world.client.post("/patients/", json=world.person(first_name=f"{space}Ann{space}"))
    assert kept.status_code == 201, kept.text
    assert kept.json()["first_name"] == "Ann"


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_name_with_a_control_character_is_refused_and_the_schema_says_so(
    world: World, control: str
) -> None:
    pattern = _first_name_pattern(world)
    for name in (control, f"An{control}n", f"{control}Ann"):
        assert re.search(pattern, name) is None
        _invalid(world.client.post("/patients/", json=world.person(first_name=name)))


def test_a_specialization_name_fits_its_column(world: World) -> None:
    admin = world.admin()
    longest = world.client.post("/specializations/", json={"name": "S" * 50}, **_as(admin))
    assert longest.status_code == 201, longest.text
    _invalid(world.client.post("/specializations/", json={"name": "T" * 51}, **_as(admin)))


def test_a_cancel_reason_fits_its_column(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    first = world.book(patient, doctor, slot(10))
    second = world.book(world.patient(), doctor, slot(11))
    path = "/appointments/{}/cancel"
    _invalid(world.client.put(path.format(first["id"]), json={"reason": "r" * 501}, **_as(doctor)))
    longest = world.client.put(path.format(second["id"]), json={"reason": "r" * 500}, **_as(doctor))
    assert longest.status_code == 200, longest.text
    assert longest.json()["cancel_reason"] == "r" * 500


def test_a_time_zone_longer_than_its_column_is_a_422(world: World) -> None:
    doctor = world.doctor()
    path = f"/doctors/{doctor.id}/availability"
    hours = world.client.get(path, **_as(doctor)).json()
    _invalid(
        world.client.put(path, json={**hours, "timezone": "Europe/" + "X" * 60}, **_as(doctor))
    )


def test_an_idempotency_key_fits_its_column(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(10))}
    too_long = {**patient.headers, "Idempotency-Key": "k" * 101}
    _invalid(world.client.post("/appointments/", json=body, headers=too_long))
    longest = {**patient.headers, "Idempotency-Key": "k" * 100}
    assert world.client.post("/appointments/", json=body, headers=longest).status_code == 201
    assert world.client.post("/appointments/", json=body, headers=longest).status_code == 201


# JSON that is too deep, numbers that are too big or not numbers


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("endpoint", JSON_BODIES, ids=lambda e: f"{e.method} {e.template}")
def test_deeply_nested_json_is_a_422_on_every_json_route(
    client: TestClient, endpoint: Any, depth: int
) -> None:
    path = re.sub(r"\{[^}]+\}", "1", endpoint.template)
    for text in (_nested(depth), '{"first_name": %s, "weekly": %s}' % ((_nested(depth),) * 2)):
        answer = client.request(
            endpoint.method, path, content=text, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, answer.text


@pytest.mark.parametrize("number", ODD_NUMBERS)
def test_a_number_too_big_or_not_a_number_is_a_422(world: World, number: str) -> None:
    patient = world.patient()
    start = json.dumps(iso(slot(10)))
    for path in ("/appointments/holds", "/appointments/"):
        text = f'{{"doctor_id": {number}, "scheduled_datetime": {start}}}'
        _invalid(_post_json(world.client, path, text, **patient.headers))
    login = f'{{"username": {number}, "password": {number}}}'
    _invalid(_post_json(world.client, "/patients/login", login))


@pytest.mark.parametrize("kind", NOT_INTS)
def test_an_id_that_is_not_a_json_integer_is_a_422(world: World, kind: str) -> None:
    doctor, patient, admin = world.doctor(), world.patient(), world.admin()
    value = NOT_INTS[kind](doctor.id)
    start = iso(slot(10))
    for path in ("/appointments/holds", "/appointments/"):
        body = {"doctor_id": value, "scheduled_datetime": start}
        answer = world.client.post(path, json=body, **_as(patient))
        assert answer.status_code == 422, answer.text
        assert {f["field"] for f in answer.json()["fields"]} == {"doctor_id"}, answer.text
    registration = world.person(specialization_id=value)
    _invalid(world.client.post("/doctors/", json=registration))
    moved = {"specialization_id": value}
    _invalid(world.client.put(f"/doctors/{doctor.id}", json=moved, **_as(admin)))


@pytest.mark.parametrize(
    ("field", "value"),
    [("slot_minutes", 30.5), ("slot_minutes", "30"), ("notice_minutes", True)],
)
def test_a_setting_that_is_not_a_json_integer_is_a_422(
    world: World, field: str, value: object
) -> None:
    doctor = world.doctor()
    path = f"/doctors/{doctor.id}/availability"
    hours = world.client.get(path, **_as(doctor)).json()
    _invalid(world.client.put(path, json={**hours, field: value}, **_as(doctor)))
    policy = {**hours["policy"], "allow_late_cancel": "true"}
    _invalid(world.client.put(path, json={**hours, "policy": policy}, **_as(doctor)))


def test_an_integral_number_is_an_integer_as_json_schema_counts_them(world: World) -> None:
    # JSON Schema's `integer` includes 3.0: what the schema calls valid is accepted.
    doctor, patient = world.doctor(), world.patient()
    body = {"doctor_id": float(doctor.id), "scheduled_datetime": iso(slot(10))}
    booked = world.client.post("/appointments/", json=body, **_as(patient))
    assert booked.status_code == 201, booked.text
    assert booked.json()["doctor_id"] == doctor.id


def test_a_body_is_required_where_one_is_declared(world: World) -> None:
    patient = world.patient()
    _invalid(world.client.put(f"/patients/{patient.id}", **_as(patient)))


def test_a_method_a_path_does_not_serve_is_a_405_naming_those_it_does(client: TestClient) -> None:
    for method, path, allowed in (
        ("DELETE", "/patients/", {"GET", "HEAD", "POST"}),
        ("PATCH", "/appointments/holds", {"POST"}),
        ("POST", "/doctors/1", {"GET", "HEAD", "PUT"}),
    ):
        answer = client.request(method, path)
        assert answer.status_code == 405, answer.text
        assert set(answer.headers["allow"].split(", ")) == allowed


# The edges of the calendar


@pytest.mark.parametrize("start", EDGES)
def test_a_hold_or_booking_at_the_edge_of_the_calendar_is_a_422(world: World, start: str) -> None:
    doctor, patient = world.doctor(), world.patient()
    for path in ("/appointments/holds", "/appointments/"):
        body = {"doctor_id": doctor.id, "scheduled_datetime": start}
        _invalid(world.client.post(path, json=body, **_as(patient)))
    booked = world.book(patient, doctor, slot(10))
    moved = {"scheduled_datetime": start}
    path = f"/appointments/{booked['id']}/reschedule"
    _invalid(world.client.put(path, json=moved, **_as(patient)))


@pytest.mark.parametrize(
    ("first", "last"),
    [
        ("9999-12-31", "9999-12-31"),
        ("9999-12-01", "9999-12-31"),
        ("0001-01-01", "0001-01-01"),
        ("9999-12-31T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("9999-12-31T00:00:00+14:00", "9999-12-31T23:59:59-12:00"),
        ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00-12:00"),
        ("9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59-02:00"),
        ("0001-01-01T00:00:00+01:00", "0001-01-02T00:00:00Z"),
    ],
)
def test_a_calendar_window_at_the_edge_of_the_calendar_is_empty_or_a_422(
    world: World, first: str, last: str
) -> None:
    doctor = world.doctor()
    answer = world.client.get(f"/doctors/{doctor.id}/slots", params={"from": first, "to": last})
    assert answer.status_code in (200, 422), answer.text
    assert answer.status_code == 422 or answer.json()["slots"] == []
    with connected(world.client, doctor) as peer:
        reply = peer.command("watch", doctor_id=doctor.id, **{"from": first, "to": last})
        assert reply["type"] in ("snapshot", "error"), reply
        assert reply.get("code", "invalid") == "invalid", reply


@pytest.mark.parametrize("date", ["9999-12-31", "0001-01-01"])
def test_free_slots_on_the_first_or_last_date_are_none(world: World, date: str) -> None:
    doctor = world.doctor()
    path = f"/appointments/doctor/{doctor.id}/available-slots"
    answer = world.client.get(path, params={"date": date})
    assert answer.status_code == 200, answer.text
    assert answer.json()["slots"] == []


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Etc/GMT+12"])
@pytest.mark.parametrize("date", ["9999-12-31", "0001-01-01"])
def test_hours_overridden_on_the_first_or_last_date_break_no_read(
    world: World, date: str, zone: str
) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(10))
    path = f"/doctors/{doctor.id}/availability"
    hours = world.client.get(path, **_as(doctor)).json()
    override = {"from": date, "intervals": [{"start": "00:00", "end": "24:00"}]}
    changed = {**hours, "timezone": zone, "overrides": [override]}
    assert world.client.put(path, json=changed, **_as(doctor)).status_code == 200
    listing = world.client.get(f"/appointments/doctor/{doctor.id}", **_as(doctor))
    assert [a["id"] for a in listing.json()] == [booked["id"]]
    window = {"from": date, "to": date}
    assert world.client.get(f"/doctors/{doctor.id}/slots", params=window).status_code == 200
    start = {"doctor_id": doctor.id, "scheduled_datetime": f"{date}T12:00:00Z"}
    _invalid(world.client.post("/appointments/holds", json=start, **_as(patient)))


# Time zones


@pytest.mark.parametrize(
    "zone", ["localtime", "posixrules", "Factory", "posix/Europe/Paris", "right/UTC", "Nowhere/X"]
)
def test_a_time_zone_that_is_not_an_iana_name_is_a_422(world: World, zone: str) -> None:
    doctor = world.doctor()
    path = f"/doctors/{doctor.id}/availability"
    hours = world.client.get(path, **_as(doctor)).json()
    _invalid(world.client.put(path, json={**hours, "timezone": zone}, **_as(doctor)))


@pytest.mark.parametrize("zone", ["Europe/Paris", "UTC", "Etc/GMT-14", "US/Eastern"])
def test_an_iana_time_zone_is_accepted(world: World, zone: str) -> None:
    doctor = world.doctor()
    path = f"/doctors/{doctor.id}/availability"
    hours = world.client.get(path, **_as(doctor)).json()
    answer = world.client.put(path, json={**hours, "timezone": zone}, **_as(doctor))
    assert answer.status_code == 200, answer.text


# The same on the WebSocket


def _odd_messages() -> list[str]:
    deep = [_nested(depth) for depth in DEPTHS]
    fields = [f'{{"type": "ping", "ref": {d}}}' for d in deep]
    kinds = [f'{{"type": {d}}}' for d in deep]
    numbers = [f'{{"type": "unwatch", "doctor_id": {n}}}' for n in ODD_NUMBERS]
    odd_kinds = [f'{{"type": {n}}}' for n in ODD_NUMBERS]
    return [*deep, *fields, *kinds, *numbers, *odd_kinds]


def test_odd_websocket_messages_answer_an_error_and_the_session_goes_on(world: World) -> None:
    patient = world.patient()
    with connected(world.client, patient) as peer:
        for text in _odd_messages():
            peer.session.send_text(text)
            reply = peer.next()
            assert reply["type"] == "error", (text[:40], reply)
            assert reply["code"] == "invalid", (text[:40], reply)
        assert peer.command("ping")["type"] == "pong"


@pytest.mark.parametrize("text", _odd_messages(), ids=lambda t: t[:24])
def test_an_odd_first_websocket_message_is_closed_4401(client: TestClient, text: str) -> None:
    with connected(client) as peer:
        peer.session.send_text(text)
        assert closed_with(peer) == Close.UNAUTHENTICATED


@pytest.mark.parametrize("kind", NOT_INTS)
def test_a_websocket_id_that_is_not_a_json_integer_is_an_error(world: World, kind: str) -> None:
    doctor, patient = world.doctor(), world.patient()
    value = NOT_INTS[kind](doctor.id)
    with connected(world.client, patient) as peer:
        for command, fields in (
            ("watch", {"from": day(), "to": day()}),
            ("hold", {"start": iso(slot(10))}),
            ("book", {"start": iso(slot(10))}),
            ("unwatch", {}),
        ):
            reply = peer.command(command, doctor_id=value, **fields)
            assert reply["type"] == "error", reply
            assert reply["code"] == "invalid", reply
        reply = peer.command("cancel", appointment_id=value)
        assert reply["code"] == "invalid", reply


@pytest.mark.parametrize("start", EDGES)
def test_a_websocket_hold_or_booking_at_the_edge_of_the_calendar_is_an_error(
    world: World, start: str
) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(10))
    with connected(world.client, patient) as peer:
        for kind, fields in (
            ("hold", {"doctor_id": doctor.id}),
            ("book", {"doctor_id": doctor.id}),
            ("reschedule", {"appointment_id": booked["id"]}),
        ):
            reply = peer.command(kind, start=start, **fields)
            assert reply["type"] == "error", reply
            assert reply["code"] in ("invalid", "not_offered"), reply


@pytest.mark.parametrize("authenticated", [False, True])
def test_a_binary_frame_is_closed_1008(world: World, authenticated: bool) -> None:
    actor = world.patient() if authenticated else None
    with connected(world.client, actor) as peer:
        peer.session.send_bytes(b'{"type": "ping"}')
        assert closed_with(peer) == Close.POLICY


def test_a_binary_frame_is_closed_1008_after_the_replies_before_it(world: World) -> None:
    with connected(world.client, world.patient()) as peer:
        peer.send("ping", ref="before")
        peer.session.send_bytes(b"\x00")
        assert peer.next() == {"type": "pong", "ref": "before"}
        assert closed_with(peer) == Close.POLICY


PYDANTIC_WORDS = re.compile(r"pattern|String should|Input should|Field required|Value error|\^")
BAD_REGISTRATIONS: list[dict[str, Any]] = [
    {},
    {
        "first_name": "",
        "last_name": "L" * 51,
        "date_of_birth": "2999-01-01",
        "gender": "robot",
        "email": "no-at-sign",
        "phone": "call me",
        "password": "short",
        "address": "A" * 201,
    },
    {"first_name": 5, "date_of_birth": "1-1-1", "phone": 44, "email": "", "extra": True},
]


@pytest.mark.parametrize("body", BAD_REGISTRATIONS)
@pytest.mark.parametrize("role", ["patients", "doctors"])
def test_registration_field_messages_are_plain_words(
    client: TestClient, role: str, body: dict[str, Any]
) -> None:
    answer = client.post(f"/{role}/", json=body)
    assert answer.status_code == 422, answer.text
    messages = [problem["message"] for problem in answer.json()["fields"]]
    assert messages
    assert [m for m in messages if PYDANTIC_WORDS.search(m)] == []


def test_a_phone_number_in_the_wrong_form_says_what_it_may_hold(client: TestClient) -> None:
    answer = client.post("/patients/", json={"phone": "call me"})
    phone = [p["message"] for p in answer.json()["fields"] if p["field"] == "phone"]
    assert phone == ["Use digits, spaces and + ( ) . / -, 5 to 20 characters"]
