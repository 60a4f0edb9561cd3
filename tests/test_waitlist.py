"""The waitlist: entries in line, freed slots offered by themselves, one offer per slot and
per entry, accepted, declined, lapsed, withdrawn; on both backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.testclient import TestClient

from hub import db, ledger
from hub.app import create_app
from hub.auth import Principal, Role, Tokens
from hub.config import Settings
from tests.conftest import (
    Actor,
    World,
    insert_patients,
    iso,
    next_workday,
    slot,
    statements_about,
)
from tests.server import hub_processes
from tests.test_ws import connected

WAIT = 8.0


@pytest.fixture
def quick(settings: Settings, raw: Engine) -> Iterator[World]:
    """A hub whose offers lapse after 2 seconds."""
    fast = replace(settings, offer_ttl=2)
    with TestClient(create_app(fast)) as client:
        yield World(client, fast, raw)


def day_of(world: World, doctor: Actor) -> list[str]:
    """The free starts of the doctor's day a week ahead."""
    answer = world.client.get(
        f"/appointments/doctor/{doctor.id}/available-slots",
        params={"date": next_workday().isoformat()},
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["slots"])


def full_day(world: World, doctor: Actor) -> list[dict[str, Any]]:
    """Every slot of the doctor's day a week ahead booked, each by a patient of its own."""
    booked = []
    for start in day_of(world, doctor):
        body = {"doctor_id": doctor.id, "scheduled_datetime": start}
        answer = world.client.post("/appointments/", json=body, headers=world.patient().headers)
        assert answer.status_code == 201, answer.text
        booked.append(answer.json())
    assert booked and day_of(world, doctor) == []
    return booked


def join(world: World, who: Actor, doctor: Actor, **extra: Any) -> dict[str, Any]:
    day = next_workday().isoformat()
    body = {"doctor_id": doctor.id, "from": day, "to": day, **extra}
    answer = world.client.post("/waitlist", json=body, headers=who.headers)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def entry(world: World, who: Actor, entry_id: int) -> dict[str, Any]:
    answer = world.client.get(f"/waitlist/{entry_id}", headers=who.headers)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def offered(world: World, who: Actor, entry_id: int) -> dict[str, Any]:
    """The entry's open offer, once it comes."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        offer = entry(world, who, entry_id)["offer"]
        if offer is not None:
            return dict(offer)
        time.sleep(0.05)
    raise AssertionError(f"no offer for entry {entry_id} within {WAIT} s")


def cancel(world: World, appointment: dict[str, Any], doctor: Actor) -> None:
    answer = world.client.put(
        f"/appointments/{appointment['id']}/cancel",
        json={"reason": "the patient called"},
        headers=doctor.headers,
    )
    assert answer.status_code == 200, answer.text


def state_of(world: World, doctor: Actor, start: str) -> str:
    day = next_workday().isoformat()
    answer = world.client.get(f"/doctors/{doctor.id}/slots", params={"from": day, "to": day})
    assert answer.status_code == 200, answer.text
    return next(s["state"] for s in answer.json()["slots"] if s["start"] == start)


def test_a_freed_slot_is_offered_to_the_first_in_line_and_accepting_books_it(
    world: World,
) -> None:
    doctor = world.doctor()
    booked = full_day(world, doctor)
    first, second = world.patient(), world.patient()
    one = join(world, first, doctor)
    two = join(world, second, doctor)
    assert (one["position"], one["offer"], one["status"]) == (1, None, "waiting")
    assert two["position"] == 2
    cancel(world, booked[3], doctor)
    offer = offered(world, first, one["id"])
    assert offer["start"] == booked[3]["scheduled_datetime"]
    assert offer["state"] == "open"
    assert entry(world, second, two["id"])["offer"] is None  # one offer of the slot
    assert state_of(world, doctor, offer["start"]) == "held"  # every other viewer sees it held
    taken = world.client.post(
        "/appointments/",
        json={"doctor_id": doctor.id, "scheduled_datetime": offer["start"]},
        headers=world.patient().headers,
    )
    assert taken.status_code == 409, taken.text  # held for the one it is offered to
    accepted = world.client.post(
        f"/waitlist/offers/{offer['offer_id']}/accept", headers=first.headers
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["patient_id"] == first.id
    assert accepted.json()["scheduled_datetime"] == offer["start"]
    after = entry(world, first, one["id"])
    assert (after["status"], after["position"], after["offer"]) == ("booked", None, None)
    assert entry(world, second, two["id"])["position"] == 1
    again = world.client.post(f"/waitlist/offers/{offer['offer_id']}/accept", headers=first.headers)
    assert again.status_code == 409 and again.json()["error"] == "offer_gone"


def test_urgent_entries_go_first_then_by_when_they_joined(world: World) -> None:
    doctor, desk = world.doctor(), world.staff()
    booked = full_day(world, doctor)
    early, urgent = world.patient(), world.patient()
    first = join(world, early, doctor)
    second = join(world, desk, doctor, patient_id=urgent.id, urgent=True)
    assert (second["position"], entry(world, early, first["id"])["position"]) == (1, 2)
    cancel(world, booked[0], doctor)
    assert offered(world, desk, second["id"])["start"] == booked[0]["scheduled_datetime"]
    assert entry(world, early, first["id"])["offer"] is None


def test_a_declined_offer_moves_on_and_is_never_made_again(world: World) -> None:
    doctor = world.doctor()
    booked = full_day(world, doctor)
    first, second = world.patient(), world.patient()
    one, two = join(world, first, doctor), join(world, second, doctor)
    cancel(world, booked[2], doctor)
    offer = offered(world, first, one["id"])
    declined = world.client.post(
        f"/waitlist/offers/{offer['offer_id']}/decline", headers=first.headers
    )
    assert declined.status_code == 204, declined.text
    passed = offered(world, second, two["id"])
    assert passed["start"] == offer["start"]
    time.sleep(0.6)  # a loop tick: the first is not offered it again
    kept = entry(world, first, one["id"])
    assert (kept["status"], kept["offer"]) == ("waiting", None)
    twice = world.client.post(
        f"/waitlist/offers/{offer['offer_id']}/decline", headers=first.headers
    )
    assert twice.status_code == 409 and twice.json()["error"] == "offer_gone"


def test_a_lapsed_offer_moves_on_to_the_next(quick: World) -> None:
    world = quick
    doctor = world.doctor()
    booked = full_day(world, doctor)
    first, second = world.patient(), world.patient()
    one, two = join(world, first, doctor), join(world, second, doctor)
    cancel(world, booked[1], doctor)
    offer = offered(world, first, one["id"])
    passed = offered(world, second, two["id"])  # after its 2 s
    assert passed["start"] == offer["start"]
    late = world.client.post(f"/waitlist/offers/{offer['offer_id']}/accept", headers=first.headers)
    assert late.status_code == 409 and late.json()["error"] == "offer_gone"


def test_an_idle_hub_asks_the_database_nothing_about_offers_between_sweeps(
    world: World,
) -> None:
    """With no offer open and none withdrawn, the waitlist's loop reads no offer between its
    sweeps (it read twice every half second). That an offer this process made still lapses
    on time: test_a_lapsed_offer_moves_on_to_the_next."""
    engine = world.client.app_state["hub"].engine  # type: ignore[attr-defined]
    with statements_about(engine, "waitlist_offers") as seen:
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:  # the first sweep, at start
            time.sleep(0.05)
        assert seen, "the loop never swept"
        time.sleep(0.5)  # its last statements
        seen.clear()
        time.sleep(3)  # six of the loop's rounds
        assert seen == []


def test_a_free_slot_that_fits_is_offered_at_once_when_joining(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    starts = day_of(world, doctor)
    joined = join(world, patient, doctor, times=[{"start": "13:00", "end": "15:00"}])
    assert joined["status"] == "offered"
    assert joined["offer"]["start"] in starts
    assert joined["offer"]["start"][11:16] >= "13:00"  # the doctor's zone is UTC here
    assert joined["offer"]["start"][11:16] < "15:00"


def test_booking_with_the_doctor_otherwise_leaves_the_list_and_hands_the_offer_on(
    world: World,
) -> None:
    doctor = world.doctor()
    booked = full_day(world, doctor)
    first, second = world.patient(), world.patient()
    one, two = join(world, first, doctor), join(world, second, doctor)
    cancel(world, booked[0], doctor)
    cancel(world, booked[5], doctor)
    offer = offered(world, first, one["id"])
    other = next(
        b["scheduled_datetime"]
        for b in (booked[0], booked[5])
        if b["scheduled_datetime"] != offer["start"]
    )
    # The second was offered the other slot; the first books it directly... it is held for
    # the second, so the first books another day instead.
    elsewhere = world.client.post(
        "/appointments/",
        json={"doctor_id": doctor.id, "scheduled_datetime": iso(slot(9, days_ahead=14))},
        headers=first.headers,
    )
    assert elsewhere.status_code == 201, elsewhere.text
    gone = entry(world, first, one["id"])
    assert (gone["status"], gone["offer"]) == ("booked", None)
    handed = offered(world, second, two["id"])
    assert handed["start"] in (offer["start"], other)


async def test_a_booking_updates_the_waitlist_only_of_a_patient_who_waits(world: World) -> None:
    """A booking takes its patient off the doctor's list in its own transaction; for one who
    is not on it (almost every booking) that costs no UPDATE of the waitlist at all."""
    doctor = world.doctor()
    full_day(world, doctor)
    waiting, not_waiting = world.patient(), world.patient()
    line = join(world, waiting, doctor)
    engine = db.create_engine(world.settings.database_url)
    sessions = db.session_factory(engine)
    updates: dict[int, list[str]] = {}
    try:
        with statements_about(engine) as statements:
            # Two hours of one day (two weeks ahead, past the full day): days 14 and 15 fell
            # on the same Monday from a Saturday or a Sunday.
            for hour, who in ((9, not_waiting), (10, waiting)):
                statements.clear()

                async def work(session: AsyncSession, who: Actor = who, hour: int = hour) -> None:
                    patient = Principal(Role.patient, who.id)
                    now = datetime.now(UTC)
                    await ledger.enter(session, patient, doctor.id, slot(hour, days_ahead=14), now)

                await db.transaction(sessions, work)
                updates[who.id] = [s for s in statements if s.startswith("UPDATE waitlist_entries")]
    finally:
        await engine.dispose()
    assert updates[not_waiting.id] == []
    assert len(updates[waiting.id]) == 1
    assert entry(world, waiting, line["id"])["status"] == "booked"


def test_an_accepted_offer_moves_the_appointment_the_patient_has(world: World) -> None:
    doctor = world.doctor()
    booked = full_day(world, doctor)
    patient = world.patient()
    later = world.book(patient, doctor, slot(10, days_ahead=14))
    joined = join(world, patient, doctor)
    assert joined["appointment_id"] == later["id"]
    cancel(world, booked[0], doctor)
    offer = offered(world, patient, joined["id"])
    accepted = world.client.post(
        f"/waitlist/offers/{offer['offer_id']}/accept", headers=patient.headers
    )
    assert accepted.status_code == 200, accepted.text
    moved = accepted.json()
    assert moved["rescheduled_from_id"] == later["id"]
    assert moved["scheduled_datetime"] == offer["start"]
    old = world.client.get(f"/appointments/patient/{patient.id}", headers=patient.headers)
    statuses = {a["id"]: a["status"] for a in old.json()}
    assert statuses == {later["id"]: "cancelled", moved["id"]: "scheduled"}


def test_the_offer_is_pushed_on_the_patients_websocket_and_accepted_there(world: World) -> None:
    doctor = world.doctor()
    booked = full_day(world, doctor)
    patient = world.patient()
    with connected(world.client, patient) as ws:
        joined = join(world, patient, doctor)
        cancel(world, booked[4], doctor)
        message = ws.expect("offer")
        assert (message["entry_id"], message["state"]) == (joined["id"], "open")
        assert message["start"] == booked[4]["scheduled_datetime"]
        reply = ws.command("accept_offer", offer_id=message["offer_id"])
        assert reply["type"] == "accepted", reply
        assert reply["appointment"]["scheduled_datetime"] == message["start"]
        ended = ws.expect("offer")
        assert (ended["offer_id"], ended["state"]) == (message["offer_id"], "accepted")


def test_joining_over_the_websocket_and_leaving(world: World) -> None:
    doctor = world.doctor()
    full_day(world, doctor)
    patient = world.patient()
    day = next_workday().isoformat()
    with connected(world.client, patient) as ws:
        reply = ws.command("join_waitlist", doctor_id=doctor.id, **{"from": day, "to": day})
        assert reply["type"] == "waiting", reply
        assert (reply["entry"]["position"], reply["entry"]["from"]) == (1, day)
        bad = ws.command("join_waitlist", doctor_id=doctor.id, **{"from": day, "to": "x"})
        assert bad["code"] == "invalid", bad
        left = ws.command("leave_waitlist", entry_id=reply["entry"]["id"])
        assert left["type"] == "left", left
        gone = ws.command("decline_offer", offer_id=99999)
        assert gone["code"] == "not_found", gone
    assert entry(world, patient, reply["entry"]["id"])["status"] == "left"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"to": "2020-01-01"}, 422, "invalid"),
        ({"from": "not a date"}, 422, "invalid"),
        ({"times": [{"start": "15:00", "end": "13:00"}]}, 422, "invalid"),
        ({"urgent": True}, 403, "forbidden"),
        ({"doctor_id": 99999}, 404, "not_found"),
        ({"visit_type_id": 99999}, 422, "invalid"),
        ({"appointment_id": 99999}, 422, "invalid"),
        ({"extra": 1}, 422, "invalid"),
    ],
)
def test_a_join_the_hub_cannot_take_is_a_clear_4xx(
    world: World, change: dict[str, Any], status: int, code: str
) -> None:
    doctor, patient = world.doctor(), world.patient()
    day = next_workday().isoformat()
    body = {"doctor_id": doctor.id, "from": day, "to": day, **change}
    answer = world.client.post("/waitlist", json=body, headers=patient.headers)
    assert (answer.status_code, answer.json()["error"]) == (status, code), answer.text


def test_who_may_join_for_whom(world: World) -> None:
    doctor, other, patient, desk = world.doctor(), world.doctor(), world.patient(), world.staff()
    day = next_workday().isoformat()
    body = {"doctor_id": doctor.id, "from": day, "to": day}

    def post(who: Actor, **extra: Any) -> tuple[int, str | None]:
        answer = world.client.post("/waitlist", json={**body, **extra}, headers=who.headers)
        return answer.status_code, answer.json().get("error")

    assert post(patient, patient_id=world.patient().id) == (403, "forbidden")
    assert post(desk) == (422, "invalid")  # say for whom
    assert post(other, patient_id=patient.id) == (403, "forbidden")  # not their calendar
    assert post(doctor, patient_id=patient.id)[0] == 201
    assert post(patient) == (409, "already_waiting")
    assert post(world.admin(), patient_id=patient.id) == (403, "forbidden")
    listed = world.client.get("/waitlist", headers=patient.headers)
    assert [e["doctor_id"] for e in listed.json()] == [doctor.id]
    assert world.client.get("/waitlist", headers=other.headers).json() == []
    everyone = world.client.get("/waitlist", params={"doctor_id": doctor.id}, headers=desk.headers)
    assert [e["patient_id"] for e in everyone.json()] == [patient.id]
    stranger = world.patient()
    entry_id = listed.json()[0]["id"]
    assert world.client.get(f"/waitlist/{entry_id}", headers=stranger.headers).status_code == 404
    assert world.client.delete(f"/waitlist/{entry_id}", headers=stranger.headers).status_code == 404
    assert world.client.delete(f"/waitlist/{entry_id}", headers=patient.headers).status_code == 204


def _insert_offer(
    raw: Engine, entry_id: int, doctor_id: int, patient_id: int, start: datetime
) -> None:
    with raw.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO waitlist_offers (entry_id, doctor_id, patient_id, start_at, end_at,"
                " state, created_at, expires_at) VALUES (:e, :d, :p, :s, :s, 'open', :s, :s)"
            ),
            {"e": entry_id, "d": doctor_id, "p": patient_id, "s": start.replace(tzinfo=None)},
        )


def test_the_database_refuses_two_open_offers_of_a_slot_or_of_an_entry(
    world: World, raw: Engine
) -> None:
    doctor = world.doctor()
    full_day(world, doctor)
    first, second = world.patient(), world.patient()
    one, two = join(world, first, doctor), join(world, second, doctor)
    start, other = slot(9, days_ahead=21), slot(10, days_ahead=21)
    _insert_offer(raw, one["id"], doctor.id, first.id, start)
    with pytest.raises(IntegrityError):
        _insert_offer(raw, two["id"], doctor.id, second.id, start)  # the same slot
    with pytest.raises(IntegrityError):
        _insert_offer(raw, one["id"], doctor.id, first.id, other)  # the same entry
    with raw.begin() as conn:  # once ended, others may follow
        conn.execute(text("UPDATE waitlist_offers SET state = 'declined'"))
    _insert_offer(raw, two["id"], doctor.id, second.id, start)


def test_entries_survive_a_restart(settings: Settings, raw: Engine) -> None:
    with TestClient(create_app(settings)) as client:
        world = World(client, settings, raw)
        doctor = world.doctor()
        booked = full_day(world, doctor)
        patient = world.patient()
        joined = join(world, patient, doctor)
    with TestClient(create_app(settings)) as client:  # a new process: the tokens still work
        world = World(client, settings, raw)
        assert entry(world, patient, joined["id"])["position"] == 1
        cancel(world, booked[0], doctor)
        assert offered(world, patient, joined["id"])["start"] == booked[0]["scheduled_datetime"]


WAITING, FREED = 50, 20
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


def _offer_counts(conn: Connection, doctor_id: int) -> tuple[int, int, int]:
    """The most open offers of one slot, the most of one patient, and how many open offers
    are of a slot that is booked."""
    per_slot, per_patient = (
        conn.execute(
            text(
                f"SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM waitlist_offers "
                f"WHERE doctor_id = :d AND state = 'open' GROUP BY {key}) AS counts"
            ),
            {"d": doctor_id},
        ).scalar_one()
        for key in ("start_at", "patient_id")
    )
    booked = conn.execute(
        text(
            "SELECT COUNT(*) FROM waitlist_offers o JOIN appointments a ON a.doctor_id = "
            "o.doctor_id AND a.start_at = o.start_at AND a.active IS NOT NULL "
            "WHERE o.doctor_id = :d AND o.state = 'open'"
        ),
        {"d": doctor_id},
    ).scalar_one()
    return int(per_slot), int(per_patient), int(booked)


async def _offers_once(
    raw: Engine, doctor_id: int, done: Callable[[list[Any]], bool], seconds: float
) -> list[Any]:
    # The doctor's offers (oldest first) once `done` holds of them, or after `seconds`.
    deadline = time.monotonic() + seconds
    while True:
        with raw.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, entry_id, start_at, state, created_at, expires_at, ended_at "
                    "FROM waitlist_offers WHERE doctor_id = :d ORDER BY id"
                ),
                {"d": doctor_id},
            ).all()
        if done(list(rows)) or time.monotonic() > deadline:
            return list(rows)
        await asyncio.sleep(0.05)


async def _until_offered(raw: Engine, doctor_id: int, count: int) -> list[_Offer]:
    def opened(rows: list[Any]) -> list[Any]:
        return [r for r in rows if r.state == "open"]

    rows = opened(await _offers_once(raw, doctor_id, lambda rows: len(opened(rows)) >= count, 15))
    return [_Offer(r.id, r.entry_id, iso(r.start_at.replace(tzinfo=UTC))) for r in rows]


def _handed_on(count: int) -> Callable[[list[Any]], bool]:
    # At least `count` offers ended (declined or lapsed), each followed by a later offer of
    # its slot.
    def done(rows: list[Any]) -> bool:
        ended = [r for r in rows if r.state in ("declined", "lapsed")]
        return len(ended) >= count and all(
            any(r.start_at == e.start_at and r.id > e.id for r in rows) for e in ended
        )

    return done


@dataclass(frozen=True)
class _Offer:
    id: int
    entry_id: int
    start: str


async def test_fifty_waiting_and_twenty_cancellations_over_two_processes(
    world: World, settings: Settings, raw: Engine, backend: str, tmp_path: Path
) -> None:
    """Each freed slot is offered to one patient at a time, no patient holds two offers, every
    freed slot ends on offer to the first in line, and declined or lapsed offers move on
    within a second."""
    if backend == "embedded":
        pytest.skip("the embedded default is one process by design")
    doctor = world.doctor()
    day = next_workday()
    hours = {  # 09:00-15:40 in 20-minute slots: 20 a day
        "timezone": "UTC",
        "weekly": {d: [{"start": "09:00", "end": "15:40"}] for d in WEEKDAYS},
        "slot_minutes": 20,
        "notice_minutes": 60,
    }
    answer = world.client.put(
        f"/doctors/{doctor.id}/availability", json=hours, headers=doctor.headers
    )
    assert answer.status_code == 200, answer.text
    starts = day_of(world, doctor)
    assert len(starts) == FREED
    tokens = Tokens(settings)

    def bearer_of(pid: int) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {tokens.issue(Principal(Role.patient, pid)).access_token}"
        }

    holders = insert_patients(raw, FREED, "holder")
    waiters = insert_patients(raw, WAITING, "waiter")
    fast = replace(settings, offer_ttl=6)
    samples: list[tuple[int, int, int]] = []
    with hub_processes(fast, tmp_path, 2) as started:
        urls = [url for url, _ in started]
        async with httpx.AsyncClient(timeout=30) as client:
            booked = []
            for n, (pid, start) in enumerate(zip(holders, starts, strict=True)):
                body = {"doctor_id": doctor.id, "scheduled_datetime": start}
                made = await client.post(
                    f"{urls[n % 2]}/appointments/", json=body, headers=bearer_of(pid)
                )
                assert made.status_code == 201, made.text
                booked.append(made.json()["id"])
            line = []
            for n, pid in enumerate(waiters):  # one after another: the line's order is known
                body = {"doctor_id": doctor.id, "from": day.isoformat(), "to": day.isoformat()}
                joined = await client.post(
                    f"{urls[n % 2]}/waitlist", json=body, headers=bearer_of(pid)
                )
                assert joined.status_code == 201, joined.text
                assert joined.json()["offer"] is None  # the day is full
                line.append(joined.json()["id"])
            watching = asyncio.Event()

            async def watch() -> None:  # the invariants, sampled while everything runs
                while not watching.is_set():
                    with raw.connect() as conn:
                        samples.append(_offer_counts(conn, doctor.id))
                    await asyncio.sleep(0.02)

            watcher = asyncio.create_task(watch())
            cancelled = await asyncio.gather(
                *(
                    client.put(
                        f"{urls[n % 2]}/appointments/{appointment}/cancel",
                        json={"reason": "the patient called"},
                        headers=doctor.headers,
                    )
                    for n, appointment in enumerate(booked)
                )
            )
            assert [c.status_code for c in cancelled] == [200] * FREED
            offers = await _until_offered(raw, doctor.id, FREED)
            assert sorted(o.start for o in offers) == sorted(starts)
            assert sorted(o.entry_id for o in offers) == line[:FREED]  # the first in line
            # One declined: it moves on to the next in line within a second.
            first = min(offers, key=lambda o: o.entry_id)
            token = bearer_of(waiters[line.index(first.entry_id)])
            declined = await client.post(
                f"{urls[1]}/waitlist/offers/{first.id}/decline", headers=token
            )
            assert declined.status_code == 204, declined.text
            # The rest lapse after 6 s and move on too.
            await asyncio.sleep(6)
            rows = await _offers_once(raw, doctor.id, _handed_on(FREED), 20)
            watching.set()
            await watcher
    assert max(s[0] for s in samples) <= 1, "a slot offered to two patients at once"
    assert max(s[1] for s in samples) <= 1, "a patient with two open offers"
    assert max(s[2] for s in samples) == 0, "an open offer of a booked slot"
    moves = []
    for row in rows:
        if row.state not in ("declined", "lapsed"):
            continue
        # Declined: from when it ended; lapsed: from when its time ran out.
        ended = row.ended_at if row.state == "declined" else row.expires_at
        after = [r for r in rows if r.start_at == row.start_at and r.id > row.id]
        assert after, f"offer {row.id} ({row.state}) was not handed on"
        moves.append((after[0].created_at - ended).total_seconds())
    print(
        f"\n{WAITING} waiting, {FREED} cancellations over 2 processes: {len(rows)} offers, "
        f"{len(samples)} samples, hand-on p100 {max(moves):.3f} s"
    )
    assert len(moves) >= FREED
    # Handed on by the waitlist's loop (within a second, as printed), not left for the next
    # offer's lapse: a bound on order, not on speed, which a loaded machine can stretch.
    assert max(moves) < fast.offer_ttl, moves


def test_a_deactivated_patient_is_offered_nothing_and_the_next_is(world: World) -> None:
    doctor, admin = world.doctor(), world.admin()
    booked = full_day(world, doctor)
    first, second = world.patient(), world.patient()
    one, two = join(world, first, doctor), join(world, second, doctor)
    off = world.client.put(
        f"/patients/{first.id}/active", json={"active": False}, headers=admin.headers
    )
    assert off.status_code == 204, off.text
    cancel(world, booked[0], doctor)
    assert offered(world, second, two["id"])["start"] == booked[0]["scheduled_datetime"]
    assert entry(world, admin, one["id"])["offer"] is None
