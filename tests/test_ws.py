from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import typing
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
import uvicorn
from sqlalchemy import Engine, text
from starlette.testclient import TestClient, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hub import events, protocol, ws
from hub.app import create_app
from hub.auth import Tokens
from hub.bus import slot_channel
from hub.config import Settings
from hub.protocol import Close
from hub.ws import commands
from tests.conftest import Actor, World, iso, next_workday, patient_token, slot
from tests.server import serve_in_thread

WAIT = 5.0  # seconds a frame may take before the test fails instead of hanging
SLOT_KEYS = {"type", "doctor_id", "start", "state", "version", "collapsed", "committed_at"}


class Peer:
    """One /ws connection through the TestClient: frames as dicts, a receive that gives up,
    and an inbox for frames that arrived before the one asked for."""

    def __init__(self, session: WebSocketTestSession) -> None:
        self.session = session
        self.inbox: list[dict[str, Any]] = []

    def send(self, kind: str, **fields: Any) -> None:
        self.session.send_text(json.dumps({"type": kind, **fields}))

    def frame(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next frame off the wire; WebSocketDisconnect once the server has closed."""

        async def receive() -> Any:
            with anyio.fail_after(timeout):
                return await self.session._send_rx.receive()

        try:
            message = self.session.portal.call(receive)
        except TimeoutError:
            pytest.fail(f"no frame from the server within {timeout:.1f} s")
        self.session._raise_on_close(message)
        frame = json.loads(message["text"])
        protocol.SERVER.validate_python(frame)  # what the AsyncAPI document says, exactly
        return dict(frame)

    def next(self, timeout: float = WAIT) -> dict[str, Any]:
        return self.inbox.pop(0) if self.inbox else self.frame(timeout)

    def expect(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        """The first frame of a type, keeping the others (in order) for later."""
        for index, message in enumerate(self.inbox):
            if message["type"] == kind:
                return self.inbox.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            message = self.frame(max(deadline - time.monotonic(), 0.01))
            if message["type"] == kind:
                return message
            self.inbox.append(message)

    def command(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a command with a fresh ref and return the reply carrying that ref."""
        ref = f"{kind}-{time.monotonic_ns()}"
        self.send(kind, ref=ref, **fields)
        deadline = time.monotonic() + WAIT
        while True:
            message = self.frame(max(deadline - time.monotonic(), 0.01))
            if message.get("ref") == ref:
                return message
            self.inbox.append(message)

    def drain(self) -> list[dict[str, Any]]:
        """Every frame before the answer to a ping: what was pending, after a round trip."""
        self.send("ping", ref="drain")
        while (message := self.frame())["type"] != "pong" or message.get("ref") != "drain":
            self.inbox.append(message)
        drained, self.inbox = self.inbox, []
        return drained


@contextmanager
def connected(
    client: TestClient, actor: Actor | None = None, origin: str | None = None
) -> Iterator[Peer]:
    """A /ws connection, authenticated as `actor` (its ready consumed) when one is given."""
    headers = {} if origin is None else {"origin": origin}
    with client.websocket_connect("/ws", headers=headers) as session:
        peer = Peer(session)
        if actor is not None:
            peer.send("auth", token=actor.token)
            ready = peer.next()
            assert ready["type"] == "ready", ready
        yield peer


def closed_with(peer: Peer, timeout: float = WAIT) -> int:
    """Read until the server closes; the close code."""
    with pytest.raises(WebSocketDisconnect) as closed:
        while True:
            peer.next(timeout)
    return closed.value.code


def day() -> str:
    return next_workday().isoformat()


def watch(peer: Peer, doctor: Actor, **fields: Any) -> dict[str, Any]:
    return peer.command("watch", doctor_id=doctor.id, **{"from": day(), "to": day()}, **fields)


def hold(peer: Peer, doctor: Actor, start: datetime) -> dict[str, Any]:
    return peer.command("hold", doctor_id=doctor.id, start=iso(start))


def book(peer: Peer, doctor: Actor, start: datetime, **fields: Any) -> dict[str, Any]:
    return peer.command("book", doctor_id=doctor.id, start=iso(start), **fields)


def own_world(world: World, settings: Settings, client: TestClient) -> World:
    return World(client, settings, world.raw)


# Authentication


def test_auth_first_answers_ready_with_the_user_its_expiry_and_the_ref(
    world: World, client: TestClient
) -> None:
    patient = world.patient()
    with connected(client) as peer:
        peer.send("auth", token=patient.token, ref="a1")
        ready = peer.next()
    expires = Tokens(world.settings).decode(patient.token)[1]
    assert ready == {
        "type": "ready",
        "user": {"role": "patient", "id": patient.id},
        "expires_at": iso(datetime.fromtimestamp(expires, UTC)),
        "ref": "a1",
    }


def test_a_bad_token_is_closed_with_4401(client: TestClient) -> None:
    with connected(client) as peer:
        peer.send("auth", token="not-a-token")
        assert closed_with(peer) == Close.UNAUTHENTICATED


def test_a_first_message_other_than_auth_is_closed_with_4401(
    world: World, client: TestClient
) -> None:
    with connected(client) as peer:
        peer.send("ping")
        assert closed_with(peer) == Close.UNAUTHENTICATED


def test_no_auth_within_five_seconds_is_closed_with_4408(client: TestClient) -> None:
    with connected(client) as peer:
        started = time.monotonic()
        assert closed_with(peer, timeout=ws.AUTH_TIMEOUT + 3) == Close.AUTH_TIMEOUT
    assert ws.AUTH_TIMEOUT - 0.5 <= time.monotonic() - started < ws.AUTH_TIMEOUT + 3


def test_reauth_with_a_fresh_token_of_the_same_user_answers_ready_again(
    world: World, client: TestClient
) -> None:
    patient = world.patient()
    with connected(client, patient) as peer:
        fresh = world.login("patient", patient.email)
        ready = peer.command("auth", token=fresh)
    assert ready["type"] == "ready"
    assert ready["user"] == {"role": "patient", "id": patient.id}


def test_reauth_as_another_user_is_an_error_and_the_connection_stays_open(
    world: World, client: TestClient
) -> None:
    patient, other = world.patient(), world.patient()
    with connected(client, patient) as peer:
        refused = peer.command("auth", token=other.token)
        assert refused["type"] == "error"
        assert refused["code"] == "unauthenticated"
        assert peer.command("ping")["type"] == "pong"


def test_the_server_closes_with_4401_when_the_token_expires(
    world: World, settings: Settings
) -> None:
    short = replace(settings, token_ttl=2)
    with TestClient(create_app(short)) as client:
        patient = own_world(world, short, client).patient()
        with connected(client, patient) as peer:
            assert peer.command("ping")["type"] == "pong"  # open after ready
            started = time.monotonic()
            assert closed_with(peer, timeout=short.token_ttl + 3) == Close.UNAUTHENTICATED
    assert time.monotonic() - started < short.token_ttl + 1


# Origin


def test_a_foreign_origin_is_refused_before_accept(world: World, client: TestClient) -> None:
    patient = world.patient()
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        connected(client, patient, origin="http://evil.example"),
    ):
        pytest.fail("the handshake was accepted")  # pragma: no cover
    assert refused.value.code == Close.POLICY


@pytest.mark.parametrize("origin", ["https://testserver", "ws://testserver", "testserver"])
def test_the_same_host_under_another_scheme_is_refused(
    world: World, client: TestClient, origin: str
) -> None:
    patient = world.patient()
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        connected(client, patient, origin=origin),
    ):
        pytest.fail("the handshake was accepted")  # pragma: no cover
    assert refused.value.code == Close.POLICY


def test_an_allowed_origin_under_another_scheme_is_refused(
    world: World, settings: Settings
) -> None:
    allowing = replace(settings, allowed_origins=("https://clinic.example",))
    with TestClient(create_app(allowing)) as client:
        patient = own_world(world, allowing, client).patient()
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            connected(client, patient, origin="http://clinic.example"),
        ):
            pytest.fail("the handshake was accepted")  # pragma: no cover
    assert refused.value.code == Close.POLICY


def test_the_same_origin_is_accepted(world: World, client: TestClient) -> None:
    patient = world.patient()
    with connected(client, patient, origin="http://testserver") as peer:
        assert peer.command("ping")["type"] == "pong"


def test_an_allowed_origin_is_accepted(world: World, settings: Settings) -> None:
    allowing = replace(settings, allowed_origins=("https://clinic.example",))
    with TestClient(create_app(allowing)) as client:
        patient = own_world(world, allowing, client).patient()
        with connected(client, patient, origin="https://clinic.example") as peer:
            assert peer.command("ping")["type"] == "pong"


# Commands and replies


def test_watch_answers_a_snapshot_of_the_range(world: World, client: TestClient) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        snapshot = watch(peer, doctor)
    assert snapshot["type"] == "snapshot"
    assert snapshot["doctor_id"] == doctor.id
    assert snapshot["version"] == 0
    assert snapshot["timezone"] == "UTC"
    starts = [s["start"] for s in snapshot["slots"]]
    assert iso(slot(9)) in starts and iso(slot(16)) in starts
    assert {s["state"] for s in snapshot["slots"]} == {"free"}


def test_unwatch_answers_unwatched_and_the_events_stop(world: World, client: TestClient) -> None:
    doctor, patient, viewer = world.doctor(), world.patient(), world.patient()
    with connected(client, viewer) as watcher, connected(client, patient) as peer:
        watch(watcher, doctor)
        unwatched = watcher.command("unwatch", doctor_id=doctor.id)
        assert (unwatched["type"], unwatched["doctor_id"]) == ("unwatched", doctor.id)
        assert hold(peer, doctor, slot(10))["type"] == "held"
        assert [m for m in watcher.drain() if m["type"] == "slot"] == []


def test_hold_answers_held_with_its_id_and_expiry(world: World, client: TestClient) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        held = hold(peer, doctor, slot(10))
    assert held["type"] == "held"
    assert held["hold_id"].startswith(f"{doctor.id}-")
    assert held["doctor_id"] == doctor.id
    assert held["start"] == iso(slot(10))
    expires = datetime.fromisoformat(held["expires_at"])
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= world.settings.hold_ttl + 1


def test_release_answers_released(world: World, client: TestClient) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        hold_id = hold(peer, doctor, slot(10))["hold_id"]
        released = peer.command("release", hold_id=hold_id)
    assert released["type"] == "released"
    assert released["hold_id"] == hold_id


def test_book_directly_answers_booked(world: World, client: TestClient) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        booked = book(peer, doctor, slot(10))
    assert booked["type"] == "booked"
    assert booked["replayed"] is False
    appointment = booked["appointment"]
    assert appointment["doctor_id"] == doctor.id
    assert appointment["patient_id"] == patient.id
    assert appointment["status"] == "scheduled"
    assert datetime.fromisoformat(appointment["scheduled_datetime"]) == slot(10)


def test_book_from_a_hold_answers_booked(world: World, client: TestClient) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        hold_id = hold(peer, doctor, slot(11))["hold_id"]
        booked = peer.command("book", hold_id=hold_id)
    assert booked["type"] == "booked"
    assert booked["appointment"]["doctor_id"] == doctor.id
    assert datetime.fromisoformat(booked["appointment"]["scheduled_datetime"]) == slot(11)


def test_book_twice_with_one_idempotency_key_replays_the_appointment(
    world: World, client: TestClient
) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        first = book(peer, doctor, slot(10), idempotency_key="k-1")
        again = book(peer, doctor, slot(10), idempotency_key="k-1")
    assert first["type"] == again["type"] == "booked"
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["appointment"]["id"] == first["appointment"]["id"]


def test_cancel_answers_cancelled(world: World, client: TestClient) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        appointment_id = book(peer, doctor, slot(10))["appointment"]["id"]
        cancelled = peer.command("cancel", appointment_id=appointment_id, reason="ill")
    assert cancelled["type"] == "cancelled"
    assert cancelled["appointment"]["id"] == appointment_id
    assert cancelled["appointment"]["status"] == "cancelled"
    assert cancelled["appointment"]["cancel_reason"] == "ill"


def test_reschedule_answers_rescheduled(world: World, client: TestClient) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        old = book(peer, doctor, slot(10))["appointment"]["id"]
        moved = peer.command("reschedule", appointment_id=old, start=iso(slot(14)))
    assert moved["type"] == "rescheduled"
    assert moved["appointment"]["rescheduled_from_id"] == old
    assert moved["appointment"]["status"] == "scheduled"
    assert datetime.fromisoformat(moved["appointment"]["scheduled_datetime"]) == slot(14)


def test_ping_answers_pong_with_the_ref(world: World, client: TestClient) -> None:
    patient = world.patient()
    with connected(client, patient) as peer:
        peer.send("ping", ref="p1")
        assert peer.next() == {"type": "pong", "ref": "p1"}


# Events


def test_watchers_get_held_booked_free_with_consecutive_versions_and_no_patient(
    world: World, client: TestClient
) -> None:
    doctor, patient, viewer = world.doctor(), world.patient(), world.patient()
    start = iso(slot(10))
    with connected(client, viewer) as watcher, connected(client, patient) as peer:
        version = watch(watcher, doctor)["version"]
        hold_id = hold(peer, doctor, slot(10))["hold_id"]
        held = watcher.expect("slot")
        appointment_id = peer.command("book", hold_id=hold_id)["appointment"]["id"]
        booked = watcher.expect("slot")
        assert peer.command("cancel", appointment_id=appointment_id)["type"] == "cancelled"
        freed = watcher.expect("slot")
        assert [m for m in watcher.drain() if m["type"] == "slot"] == []
    assert [(e["start"], e["state"], e["version"]) for e in (held, booked, freed)] == [
        (start, "held", version + 1),
        (start, "booked", version + 2),
        (start, "free", version + 3),
    ]
    for event in (held, booked, freed):
        assert event["doctor_id"] == doctor.id
        assert set(event) <= SLOT_KEYS, event  # no patient, no appointment


def test_the_patient_and_the_doctor_get_appointment_events_and_no_one_else(
    world: World, client: TestClient
) -> None:
    doctor = world.doctor()
    patient = world.patient(first_name="Ada", last_name="Lovelace")
    other = world.patient()
    with (
        connected(client, patient) as mine,
        connected(client, doctor) as doctors,
        connected(client, other) as others,
    ):
        appointment_id = book(mine, doctor, slot(10))["appointment"]["id"]
        seen = [mine.expect("appointment"), doctors.expect("appointment")]
        assert mine.command("cancel", appointment_id=appointment_id)["type"] == "cancelled"
        seen += [mine.expect("appointment"), doctors.expect("appointment")]
        assert others.drain() == []
    assert [event["event"] for event in seen] == ["booked", "booked", "cancelled", "cancelled"]
    for event in seen:
        assert event["appointment_id"] == appointment_id
        assert event["doctor_id"] == doctor.id
        assert event["patient_id"] == patient.id
        assert event["patient_name"] == "Ada Lovelace"
        assert event["start"] == iso(slot(10))


def _three_changes(peer: Peer, doctor: Actor) -> None:
    """Three versions of one doctor, on three slots (changes to one slot would collapse):
    10:00 held, 11:00 held, 12:00 booked."""
    assert hold(peer, doctor, slot(10))["type"] == "held"
    assert hold(peer, doctor, slot(11))["type"] == "held"
    assert book(peer, doctor, slot(12))["type"] == "booked"


def test_watch_since_replays_the_missed_events_in_order_then_resynced(
    world: World, client: TestClient
) -> None:
    doctor, patient, viewer = world.doctor(), world.patient(), world.patient()
    with connected(client, viewer) as first, connected(client, patient) as peer:
        before = watch(first, doctor)["version"]
        _three_changes(peer, doctor)
    with connected(client, viewer) as later:
        later.send("watch", doctor_id=doctor.id, since=before, ref="w", **{"from": day()}, to=day())
        frames = [later.next() for _ in range(4)]
        assert later.drain() == []
    assert [(f["type"], f.get("start"), f.get("state"), f.get("version")) for f in frames] == [
        ("slot", iso(slot(10)), "held", before + 1),
        ("slot", iso(slot(11)), "held", before + 2),
        ("slot", iso(slot(12)), "booked", before + 3),
        ("resynced", None, None, before + 3),
    ]
    assert frames[-1] == {
        "type": "resynced",
        "doctor_id": doctor.id,
        "version": before + 3,
        "ref": "w",
    }


def test_replayed_changes_to_one_slot_collapse_to_the_newest(
    world: World, client: TestClient
) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        hold_id = hold(peer, doctor, slot(10))["hold_id"]
        assert peer.command("release", hold_id=hold_id)["type"] == "released"
        assert book(peer, doctor, slot(10))["type"] == "booked"
    with connected(client, patient) as later:
        later.send("watch", doctor_id=doctor.id, since=0, **{"from": day()}, to=day())
        resynced = later.expect("resynced")
        # (The patient's own feed may still deliver an `appointment` event of the first
        # connection's booking: it goes to every connection they have open.)
        frames = [f for f in later.inbox if f["type"] != "appointment"]
        later.inbox = []
        assert [f for f in later.drain() if f["type"] != "appointment"] == []
    slots = [f for f in frames if f["type"] == "slot"]
    # One slot changed three times: what the reader gets of it ends at the newest state.
    assert slots[-1] == {
        "type": "slot",
        "doctor_id": doctor.id,
        "start": iso(slot(10)),
        "state": "booked",
        "version": 3,
        "collapsed": True,
    }
    assert len(slots) <= 3 and all(f["start"] == iso(slot(10)) for f in slots)
    assert resynced == {"type": "resynced", "doctor_id": doctor.id, "version": 3}


def test_watch_since_the_current_version_is_just_resynced(world: World, client: TestClient) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        _three_changes(peer, doctor)
        current = watch(peer, doctor)["version"]
    with connected(client, patient) as later:
        answer = watch(later, doctor, since=current)
        # Nothing to replay. (The patient's own `appointment` feed may still deliver an event
        # of the first connection's bookings: it goes to every connection they have open.)
        assert [m for m in later.drain() if m["type"] == "slot"] == []
    assert answer["type"] == "resynced"
    assert answer["version"] == current == 3


def test_watch_since_a_version_ahead_of_the_doctor_gets_a_snapshot_and_the_changes_after(
    world: World, client: TestClient
) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        _three_changes(peer, doctor)
    with connected(client, patient) as later, connected(client, world.patient()) as other:
        answer = watch(later, doctor, since=1000)
        assert answer["type"] == "snapshot"
        assert answer["version"] == 3
        assert hold(other, doctor, slot(13))["type"] == "held"
        change = later.expect("slot")
    assert (change["version"], change["start"], change["state"]) == (4, iso(slot(13)), "held")


def test_watch_since_a_version_no_longer_kept_gets_a_snapshot(
    world: World, client: TestClient, raw: Engine
) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        _three_changes(peer, doctor)
    with raw.begin() as conn:
        conn.execute(text("DELETE FROM outbox WHERE doctor_id = :d"), {"d": doctor.id})
    with connected(client, patient) as later:
        answer = watch(later, doctor, since=0)
        # (The patient's own feed may still bring the first connection's bookings.)
        assert [m for m in later.drain() if m["type"] == "slot"] == []
    assert answer["type"] == "snapshot"
    assert answer["version"] == 3
    states = {s["start"]: s["state"] for s in answer["slots"]}
    assert [states[iso(slot(hour))] for hour in (10, 11, 12, 13)] == [
        "held",
        "held",
        "booked",
        "free",
    ]


def _gap(peer: Peer, client: TestClient, doctor: Actor, version: int) -> None:
    """Deliver a slot event that skips ahead, as if pub/sub had lost the ones before it."""
    hub = client.app_state["hub"]
    event = {"type": "slot", "doctor_id": doctor.id, "start": iso(slot(15)), "state": "held"}
    peer.session.portal.call(
        hub.bus.publish, slot_channel(doctor.id), {**event, "version": version}
    )


def test_a_failed_catch_up_falls_back_to_a_snapshot_and_the_viewer_stays_live(
    world: World, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    doctor, patient, viewer = world.doctor(), world.patient(), world.patient()

    async def broken(*args: object) -> None:
        raise RuntimeError("the outbox cannot be read")

    monkeypatch.setattr(events, "replay", broken)
    with connected(client, viewer) as watching, connected(client, patient) as peer:
        version = watch(watching, doctor)["version"]
        _gap(watching, client, doctor, version + 5)
        snapshot = watching.expect("snapshot")
        assert (snapshot["doctor_id"], snapshot["version"]) == (doctor.id, version)
        assert hold(peer, doctor, slot(10))["type"] == "held"
        live = watching.expect("slot")
        assert (live["start"], live["state"], live["version"]) == (
            iso(slot(10)),
            "held",
            version + 1,
        )


def test_a_catch_up_with_neither_replay_nor_snapshot_is_an_error_then_1013(
    world: World, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    doctor, viewer = world.doctor(), world.patient()

    async def broken(*args: object) -> None:
        raise RuntimeError("the database is away")

    with connected(client, viewer) as watching:
        version = watch(watching, doctor)["version"]
        monkeypatch.setattr(events, "replay", broken)
        monkeypatch.setattr(client.app_state["hub"].calendar, "snapshot", broken)
        _gap(watching, client, doctor, version + 5)
        assert watching.expect("error")["code"] == "resync_failed"
        assert closed_with(watching) == Close.TRY_AGAIN_LATER


# Errors


INVALID = {
    "malformed-json": '{"type": "ping"',
    "unknown-type": '{"type": "teleport"}',
    "missing-field": '{"type": "hold", "start": "2030-01-01T10:00:00Z"}',
    "extra-field": '{"type": "ping", "colour": "blue"}',
}


@pytest.mark.parametrize("frame", list(INVALID.values()), ids=list(INVALID))
def test_an_invalid_message_is_an_error_and_the_connection_stays_open(
    world: World, client: TestClient, frame: str
) -> None:
    patient = world.patient()
    with connected(client, patient) as peer:
        peer.session.send_text(frame)
        error = peer.next()
        assert error["type"] == "error"
        assert error["code"] == "invalid"
        assert error["message"]
        assert peer.command("ping")["type"] == "pong"


def test_an_invalid_command_error_echoes_its_ref(world: World, client: TestClient) -> None:
    patient = world.patient()
    with connected(client, patient) as peer:
        peer.send("hold", ref="h1", start=iso(slot(10)))  # no doctor_id
        error = peer.next()
    assert error["type"] == "error"
    assert error["code"] == "invalid"
    assert error.get("ref") == "h1"


def test_a_taken_slot_is_a_slot_taken_error(world: World, client: TestClient) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    with connected(client, first) as mine, connected(client, second) as theirs:
        assert book(mine, doctor, slot(10))["type"] == "booked"
        error = book(theirs, doctor, slot(10))
    assert error["type"] == "error"
    assert error["code"] == "slot_taken"


def test_a_start_not_offered_is_a_not_offered_error_saying_why(
    world: World, client: TestClient
) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        error = hold(peer, doctor, slot(20))
    assert error["type"] == "error"
    assert error["code"] == "not_offered"
    assert error["message"] == "the doctor does not work at that time"
    assert error["reason"] == "outside_hours"
    # The client sent `start`, and is told about `start` (REST says scheduled_datetime).
    assert [problem["field"] for problem in error["fields"]] == ["start"]


def test_a_doctor_holding_is_a_forbidden_error(world: World, client: TestClient) -> None:
    doctor = world.doctor()
    with connected(client, doctor) as peer:
        error = hold(peer, doctor, slot(10))
    assert error["type"] == "error"
    assert error["code"] == "forbidden"


def test_a_hold_the_one_per_patient_rule_would_refuse_is_an_already_booked_error(
    world: World, client: TestClient
) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(10))
    with connected(client, patient) as peer:
        error = hold(peer, doctor, slot(11))
        moving = peer.command(
            "hold", doctor_id=doctor.id, start=iso(slot(12)), appointment_id=booked["id"]
        )
    assert (error["type"], error["code"]) == ("error", "already_booked")
    assert moving["type"] == "held"  # a hold to move that appointment is not a second one


def test_a_hold_past_the_cap_is_a_too_many_holds_error(world: World, client: TestClient) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        for hour in range(10, 10 + world.settings.max_holds):
            assert hold(peer, doctor, slot(hour))["type"] == "held"
        error = hold(peer, doctor, slot(15))
    assert error["type"] == "error"
    assert error["code"] == "too_many_holds"


def test_cancelling_twice_is_an_invalid_transition_error(world: World, client: TestClient) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        appointment_id = book(peer, doctor, slot(10))["appointment"]["id"]
        assert peer.command("cancel", appointment_id=appointment_id)["type"] == "cancelled"
        error = peer.command("cancel", appointment_id=appointment_id)
    assert error["type"] == "error"
    assert error["code"] == "invalid_transition"


def test_watching_more_than_the_cap_of_doctors_is_an_error(
    world: World, client: TestClient
) -> None:
    doctors = [world.doctor() for _ in range(ws.MAX_WATCHED + 1)]
    patient = world.patient()
    with connected(client, patient) as peer:
        for doctor in doctors[:-1]:
            assert watch(peer, doctor)["type"] == "snapshot"
        assert watch(peer, doctors[0])["type"] == "snapshot"  # again: not one more
        error = watch(peer, doctors[-1])
        assert error["type"] == "error"
        assert error["code"] == "invalid"
        assert peer.command("unwatch", doctor_id=doctors[0].id)["type"] == "unwatched"
        assert watch(peer, doctors[-1])["type"] == "snapshot"


def test_a_refused_watch_does_not_count_toward_the_cap(world: World, client: TestClient) -> None:
    doctor, patient = world.doctor(), world.patient()
    with connected(client, patient) as peer:
        for missing in range(10**6, 10**6 + ws.MAX_WATCHED):
            refused = peer.command("watch", doctor_id=missing, **{"from": day(), "to": day()})
            assert refused["code"] == "not_found"
        assert watch(peer, doctor)["type"] == "snapshot"


def test_a_refused_rewatch_keeps_the_watch_it_had(world: World, client: TestClient) -> None:
    doctor, patient, viewer = world.doctor(), world.patient(), world.patient()
    with connected(client, viewer) as watcher, connected(client, patient) as peer:
        version = watch(watcher, doctor)["version"]
        refused = watcher.command("watch", doctor_id=doctor.id, **{"from": day()}, to="2000-01-01")
        assert (refused["type"], refused["code"]) == ("error", "invalid")
        assert hold(peer, doctor, slot(10))["type"] == "held"
        event = watcher.expect("slot")
    assert (event["state"], event["version"]) == ("held", version + 1)


def test_connections_past_the_per_user_cap_are_closed_with_4429(
    world: World, client: TestClient
) -> None:
    patient, other = world.patient(), world.patient()
    with ExitStack() as stack:
        for _ in range(ws.MAX_CONNECTIONS):
            stack.enter_context(connected(client, patient))
        with connected(client) as extra:
            extra.send("auth", token=patient.token)
            assert closed_with(extra) == Close.RATE_LIMITED
        with connected(client, other) as peer:  # the cap is per user
            assert peer.command("ping")["type"] == "pong"
    with connected(client, patient) as again:  # closed connections give their places back
        assert again.command("ping")["type"] == "pong"


def test_flooding_is_rate_limited_then_closed_with_4429(world: World, client: TestClient) -> None:
    patient = world.patient()
    with connected(client, patient) as peer:
        for _ in range(100):
            peer.send("ping")
        for _ in range(200):
            peer.send("ping")
        answers: list[dict[str, Any]] = []
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                answers.append(peer.next())
    assert closed.value.code == Close.RATE_LIMITED
    limited = [a for a in answers if a["type"] == "error"]
    assert limited and {a["code"] for a in limited} == {"rate_limited"}
    assert 0 < len([a for a in answers if a["type"] == "pong"]) < 300


# The AsyncAPI document


def test_asyncapi_names_exactly_the_messages_of_the_protocol(client: TestClient) -> None:
    answer = client.get("/asyncapi.json")
    assert answer.status_code == 200
    document = answer.json()
    assert document["asyncapi"] == "3.0.0"
    messages = document["components"]["messages"]
    assert {m["name"] for m in messages.values()} == set(protocol.COMMANDS) | set(protocol.EVENTS)
    assert set(document["channels"]["ws"]["messages"]) == set(messages)


def test_every_command_the_parser_accepts_has_a_handler() -> None:
    union = typing.get_args(protocol.Command)
    accepted = {typing.get_args(typing.get_type_hints(kind)["type"])[0] for kind in union}
    assert accepted == set(protocol.COMMANDS)
    assert set(commands.TABLE) == set(protocol.COMMANDS)


# A real server


@contextmanager
def serving(settings: Settings, **options: Any) -> Iterator[tuple[str, uvicorn.Server]]:
    """A real uvicorn with the WebSocket options `python -m hub` serves with (`options`
    override them); yields the ws:// URL and the server, to stop it from the test."""
    with serve_in_thread(settings, **options) as (url, server):
        yield url.replace("http", "ws", 1) + "/ws", server


@asynccontextmanager
async def authenticated(url: str, settings: Settings) -> AsyncIterator[ClientConnection]:
    token = patient_token(settings)
    async with connect(url, open_timeout=WAIT, close_timeout=WAIT) as conn:
        await conn.send(json.dumps({"type": "auth", "token": token}))
        ready = json.loads(await asyncio.wait_for(conn.recv(), WAIT))
        assert ready["type"] == "ready"
        yield conn


async def _closed_with(conn: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(conn.recv(), WAIT)
    return conn.close_code


async def test_a_frame_over_64_kib_is_closed_with_1009(settings: Settings) -> None:
    with serving(settings) as (url, _):
        async with authenticated(url, settings) as conn:
            await conn.send(json.dumps({"type": "ping", "ref": "x" * 60_000}))  # under: an error
            answer = json.loads(await asyncio.wait_for(conn.recv(), WAIT))
            assert (answer["type"], answer["code"]) == ("error", "invalid")
            await conn.send(json.dumps({"type": "ping", "ref": "x" * 64 * 1024}))
            assert await _closed_with(conn) == Close.TOO_BIG


async def test_the_replies_queued_before_a_4429_close_are_sent_first(settings: Settings) -> None:
    with serving(settings) as (url, _):
        async with authenticated(url, settings) as conn:
            for n in range(300):
                await conn.send(json.dumps({"type": "ping", "ref": str(n)}))
            answers = []
            with pytest.raises(ConnectionClosed):
                while True:
                    answers.append(json.loads(await asyncio.wait_for(conn.recv(), WAIT)))
            assert conn.close_code == Close.RATE_LIMITED
    pongs = [int(a["ref"]) for a in answers if a["type"] == "pong"]
    assert pongs == list(range(len(pongs)))
    # Every command read got its reply (a pong or a refusal) but the one that closed: the
    # last 20 refusals, after the last pong, all arrived.
    assert [a["type"] for a in answers[-21:]] == ["pong"] + ["error"] * 20


async def test_a_binary_frame_is_closed_1008_by_a_real_server(settings: Settings) -> None:
    with serving(settings) as (url, _):
        async with authenticated(url, settings) as conn:
            await conn.send(b'{"type": "ping"}')
            assert await _closed_with(conn) == Close.POLICY


async def test_a_server_shutting_down_closes_with_1012(settings: Settings) -> None:
    with serving(settings) as (url, server):
        async with authenticated(url, settings) as conn:
            await conn.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(conn.recv(), WAIT))["type"] == "pong"
            server.should_exit = True
            assert await _closed_with(conn) == Close.RESTART


async def _frames(reader: asyncio.StreamReader) -> AsyncIterator[tuple[int, bytes]]:
    """(opcode, payload) of each server frame (unmasked) until the server ends the TCP
    connection; a raw reader never answers a ping, as a dead peer would not."""
    while True:
        try:
            first, second = await reader.readexactly(2)
            length = second & 0x7F
            if length >= 126:
                size = 2 if length == 126 else 8
                length = int.from_bytes(await reader.readexactly(size), "big")
            payload = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            return
        yield first & 0x0F, payload


def _masked(payload: bytes) -> bytes:
    """A client text frame (clients must mask), for payloads under 64 KiB."""
    mask = os.urandom(4)
    body = bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))
    return bytes([0x81, 0xFE]) + len(payload).to_bytes(2, "big") + mask + body


async def test_a_peer_that_stops_answering_pings_is_dropped(settings: Settings) -> None:
    # `python -m hub serve` pings every 20 s and waits 20 s for the pong; the same mechanism
    # with short intervals, so the test takes a second.
    with serving(settings, ws_ping_interval=0.2, ws_ping_timeout=0.5) as (url, _):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 101"), head
        token = patient_token(settings)
        writer.write(_masked(json.dumps({"type": "auth", "token": token}).encode()))
        frames = []
        async with asyncio.timeout(WAIT):
            async for opcode, payload in _frames(reader):
                frames.append((opcode, payload))
        writer.close()
    opcodes = [opcode for opcode, _ in frames]
    assert opcodes[0] == 0x1 and json.loads(frames[0][1])["type"] == "ready"
    assert 0x9 in opcodes  # the server pinged
    close = next(payload for opcode, payload in frames if opcode == 0x8)
    assert int.from_bytes(close[:2], "big") == 1011  # keepalive ping timeout
    assert opcodes[-1] == 0x8  # nothing after the close, and then the server hung up


# Hours and restarts


def test_changing_the_hours_tells_watchers_to_watch_again(world: World, client: TestClient) -> None:
    doctor = world.doctor()
    with connected(client, doctor) as peer:
        version = watch(peer, doctor)["version"]
        hours = client.get(f"/doctors/{doctor.id}/availability", headers=doctor.headers).json()
        answer = client.put(
            f"/doctors/{doctor.id}/availability",
            json={**hours, "slot_minutes": 30},
            headers=doctor.headers,
        )
        assert answer.status_code == 200
        event = peer.expect("hours")
    assert event == {"type": "hours", "doctor_id": doctor.id, "version": version + 1}


def test_a_restarted_embedded_hub_frees_the_holds_it_forgot(
    world: World, settings: Settings, backend: str
) -> None:
    if backend != "embedded":
        pytest.skip("Redis keeps holds across a restart; only the in-process twin forgets them")
    doctor, patient = world.doctor(), world.patient()
    with TestClient(create_app(settings)) as first, connected(first, patient) as peer:
        assert hold(peer, doctor, slot(10))["type"] == "held"
    with TestClient(create_app(settings)) as second, connected(second, patient) as later:
        later.send("watch", doctor_id=doctor.id, since=1, **{"from": day()}, to=day())
        freed = later.next()
        assert later.next() == {"type": "resynced", "doctor_id": doctor.id, "version": 2}
    assert freed == {
        "type": "slot",
        "doctor_id": doctor.id,
        "start": iso(slot(10)),
        "state": "free",
        "version": 2,
    }
