from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as wall
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import Engine, text

from hub import db
from hub.booking import Booking
from hub.config import Settings
from hub.errors import HoldsUnavailable, InvalidInput, TooManyHolds
from hub.holds import Hold, HoldStore, MemoryHolds, RedisHolds, SlotHeld
from hub.idempotency import KEY_LIFETIME
from hub.relay import Relay
from tests.clocks import MovingClock, app_on
from tests.conftest import REDIS_KINDS, Actor, World, async_redis, iso, next_workday, slot

REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL")
STORES = ["memory", *REDIS_KINDS]
needs_redis = pytest.mark.skipif(REDIS_URL is None, reason="HUB_TEST_REDIS_URL is not set")
# The stores run on a clock the test moves: a SHORT hold lapses when the test moves time by
# LAPSE, while its Redis key (PX in real time) is still there; the clock alone decides.
LONG = 600_000  # ms: a hold that stays live for the whole test
SHORT = 30_000  # ms: a hold that lapses during the test
LAPSE = 31  # s: how far a test moves the clock for a SHORT hold to lapse
START = datetime(2031, 3, 4, 10, tzinfo=UTC)


def _at(hour: int, doctor_id: int = 1, patient_id: int = 1) -> Hold:
    return Hold.new(doctor_id, START.replace(hour=hour), patient_id)


# Store level


@pytest.fixture
def clock() -> MovingClock:
    return MovingClock(datetime(2031, 3, 1, 8, tzinfo=UTC))


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, clock: MovingClock) -> AsyncIterator[HoldStore]:
    if request.param == "memory":
        yield MemoryHolds(clock)
        return
    client = async_redis(request.param)
    await client.flushdb()
    try:
        yield RedisHolds(client, timeout=2.0, clock=clock)
    finally:
        await client.aclose()


@pytest.fixture(params=REDIS_KINDS)
async def two_processes(
    request: pytest.FixtureRequest, clock: MovingClock
) -> AsyncIterator[tuple[RedisHolds, RedisHolds]]:
    """Two RedisHolds on separate connections to one Redis (or Cluster), as two hub
    processes have."""
    first, second = async_redis(request.param), async_redis(request.param)
    await first.flushdb()
    # Each "process" has been talking to Redis already: redis-py 8's cluster client can trip
    # over its own first connections when they are all opened at the same instant.
    await second.ping()
    try:
        yield RedisHolds(first, 2.0, clock=clock), RedisHolds(second, 2.0, clock=clock)
    finally:
        await first.aclose()
        await second.aclose()


async def test_take_returns_the_hold_with_its_expiry(store: HoldStore, clock: MovingClock) -> None:
    wanted = _at(10)
    taken = await store.take(wanted, LONG, 3)
    assert (taken.doctor_id, taken.start, taken.patient_id, taken.token) == (
        wanted.doctor_id,
        wanted.start,
        wanted.patient_id,
        wanted.token,
    )
    assert taken.id == wanted.id
    assert taken.expires_at is not None
    ahead = taken.expires_at - clock()
    assert abs(ahead - timedelta(milliseconds=LONG)) < timedelta(milliseconds=1)
    current = await store.holder(1, wanted.start)
    assert current is not None and current.id == wanted.id


async def test_a_second_take_of_the_slot_names_the_holder(store: HoldStore) -> None:
    first = await store.take(_at(10, patient_id=1), LONG, 3)
    with pytest.raises(SlotHeld) as raised:
        await store.take(_at(10, patient_id=2), LONG, 3)
    assert raised.value.holder.id == first.id
    assert raised.value.holder.patient_id == 1
    assert raised.value.code == "slot_taken"
    current = await store.holder(1, first.start)
    assert current is not None and current.id == first.id


async def test_the_same_start_with_another_doctor_is_another_slot(store: HoldStore) -> None:
    await store.take(_at(10, doctor_id=1, patient_id=1), LONG, 3)
    other = await store.take(_at(10, doctor_id=2, patient_id=2), LONG, 3)
    assert other.doctor_id == 2


async def test_the_per_patient_cap_counts_only_live_holds(
    store: HoldStore, clock: MovingClock
) -> None:
    await store.take(_at(9), SHORT, 3)
    await store.take(_at(10), SHORT, 3)
    await store.take(_at(11), LONG, 3)
    with pytest.raises(TooManyHolds):
        await store.take(_at(12), LONG, 3)
    assert await store.holder(1, START.replace(hour=12)) is None
    await store.take(_at(12, patient_id=2), LONG, 3)  # the cap is per patient
    clock.advance(LAPSE)
    await store.take(_at(13), LONG, 3)  # two lapsed: one live and room for two
    await store.take(_at(14), LONG, 3)
    with pytest.raises(TooManyHolds):
        await store.take(_at(15), LONG, 3)


async def test_a_released_hold_no_longer_counts_against_the_cap(store: HoldStore) -> None:
    holds = [await store.take(_at(hour), LONG, 3) for hour in (9, 10, 11)]
    with pytest.raises(TooManyHolds):
        await store.take(_at(12), LONG, 3)
    assert await store.release(holds[0])
    await store.take(_at(12), LONG, 3)


async def test_a_cap_of_zero_means_no_cap(store: HoldStore) -> None:
    for hour in range(9, 15):
        await store.take(_at(hour), LONG, 0)
    assert len(await store.held(1)) == 6


async def test_release_by_the_owner_frees_the_slot(store: HoldStore) -> None:
    mine = await store.take(_at(10, patient_id=1), LONG, 3)
    assert await store.release(mine) is True
    assert await store.holder(1, mine.start) is None
    assert await store.held(1) == {}
    other = await store.take(_at(10, patient_id=2), LONG, 3)
    assert other.patient_id == 2


async def test_releasing_twice_is_false_the_second_time(store: HoldStore) -> None:
    mine = await store.take(_at(10), LONG, 3)
    assert await store.release(mine) is True
    assert await store.release(mine) is False


async def test_a_stale_hold_does_not_release_the_next_holder(
    store: HoldStore, clock: MovingClock
) -> None:
    stale = await store.take(_at(10, patient_id=1), SHORT, 3)
    clock.advance(LAPSE)
    current = await store.take(_at(10, patient_id=2), LONG, 3)
    assert await store.release(stale) is False
    holder = await store.holder(1, current.start)
    assert holder is not None and holder.id == current.id
    assert list(await store.held(1)) == [current.start]


async def test_another_hold_id_for_the_slot_does_not_release_it(store: HoldStore) -> None:
    current = await store.take(_at(10, patient_id=2), LONG, 3)
    forged = Hold(current.doctor_id, current.start, current.patient_id, "0" * 16)
    assert await store.release(forged) is False
    assert await store.release(_at(10, patient_id=1)) is False
    holder = await store.holder(1, current.start)
    assert holder is not None and holder.id == current.id


async def test_a_hold_lapses_after_its_ttl_and_is_swept_exactly_once(
    store: HoldStore, clock: MovingClock
) -> None:
    lapsing = await store.take(_at(10), SHORT, 3)
    await store.take(_at(11), LONG, 3)
    assert await store.sweep() == []
    clock.advance(LAPSE)
    assert await store.holder(1, lapsing.start) is None
    assert list(await store.held(1)) == [START.replace(hour=11)]
    swept = await store.sweep()
    assert [hold.id for hold in swept] == [lapsing.id]
    assert await store.sweep() == []
    again = await store.take(_at(10, patient_id=2), LONG, 3)  # the slot is free to take
    assert again.patient_id == 2


async def test_held_lists_a_doctors_live_holds_by_start(
    store: HoldStore, clock: MovingClock
) -> None:
    taken = [
        await store.take(_at(14, patient_id=1), LONG, 3),
        await store.take(_at(9, patient_id=2), LONG, 3),
        await store.take(_at(11, patient_id=3), LONG, 3),
    ]
    await store.take(_at(12, doctor_id=2, patient_id=4), LONG, 3)  # another doctor
    await store.take(_at(13, patient_id=5), SHORT, 3)  # lapses
    clock.advance(LAPSE)
    held = await store.held(1)
    assert sorted(held) == sorted(hold.start for hold in taken)
    for hold in taken:
        assert held[hold.start].id == hold.id
        assert held[hold.start].patient_id == hold.patient_id
        assert held[hold.start].expires_at is not None
    assert list(await store.held(2)) == [START.replace(hour=12)]
    assert await store.held(3) == {}


async def test_redis_that_cannot_be_reached_makes_holds_unavailable() -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0")
    holds = RedisHolds(client, timeout=1.0)
    try:
        with pytest.raises(HoldsUnavailable) as raised:
            await holds.take(_at(10), LONG, 3)
        assert raised.value.code == "holds_unavailable"
        assert raised.value.status == 503
        with pytest.raises(HoldsUnavailable):
            await holds.holder(1, START)
        with pytest.raises(HoldsUnavailable):
            await holds.held(1)
        with pytest.raises(HoldsUnavailable):
            await holds.sweep()
        with pytest.raises(HoldsUnavailable):
            await holds.release(_at(10))
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "garbage",
    ["", "garbage", "1-2-3", "1-2-3-4-5", "a-b-c-d", "1-2.5-3-ab", "1-99999999999999999999-3-ab"],
)
def test_parsing_a_garbage_hold_id_is_invalid_input(garbage: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        Hold.parse(garbage)
    assert raised.value.code == "invalid"
    assert [field["field"] for field in raised.value.fields] == ["hold_id"]


def test_a_hold_id_parses_back_to_its_hold() -> None:
    hold = _at(10, doctor_id=7, patient_id=42)
    assert Hold.parse(hold.id) == hold


@needs_redis
async def test_two_processes_see_each_others_holds(
    two_processes: tuple[RedisHolds, RedisHolds],
) -> None:
    first, second = two_processes
    mine = await first.take(_at(10, patient_id=1), LONG, 3)
    current = await second.holder(1, mine.start)
    assert current is not None and current.id == mine.id
    assert [hold.id for hold in (await second.held(1)).values()] == [mine.id]
    with pytest.raises(SlotHeld) as raised:
        await second.take(_at(10, patient_id=2), LONG, 3)
    assert raised.value.holder.id == mine.id
    assert await second.release(mine) is True  # the hold is not tied to a connection
    assert await first.holder(1, mine.start) is None


@needs_redis
async def test_only_one_of_two_processes_claims_a_lapsed_hold(
    two_processes: tuple[RedisHolds, RedisHolds], clock: MovingClock
) -> None:
    first, second = two_processes
    lapsing = [await first.take(_at(hour, patient_id=hour), SHORT, 3) for hour in (9, 10, 11)]
    clock.advance(LAPSE)
    claims = await asyncio.gather(*(holds.sweep() for holds in (first, second) * 5))
    swept = Counter(hold.id for claim in claims for hold in claim)
    assert swept == Counter({hold.id: 1 for hold in lapsing})
    assert await first.sweep() == [] and await second.sweep() == []


# Through the API


def _hold(world: World, patient: Actor, doctor: Actor, start: datetime) -> Any:
    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(start)}
    return world.client.post("/appointments/holds", json=body, headers=patient.headers)


def _held(world: World, patient: Actor, doctor: Actor, start: datetime) -> str:
    answer = _hold(world, patient, doctor, start)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["hold_id"])


def _book(world: World, patient: Actor, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {**patient.headers, **({"Idempotency-Key": key} if key else {})}
    return world.client.post("/appointments/", json=body, headers=headers)


def _direct(doctor: Actor, start: datetime) -> dict[str, Any]:
    return {"doctor_id": doctor.id, "scheduled_datetime": iso(start)}


def _release(world: World, patient: Actor, hold_id: str) -> Any:
    return world.client.delete(f"/appointments/holds/{hold_id}", headers=patient.headers)


def _state(world: World, doctor: Actor, start: datetime, caller: Actor | None = None) -> str:
    day = start.date().isoformat()
    answer = world.client.get(
        f"/doctors/{doctor.id}/slots",
        params={"from": day, "to": day},
        headers=caller.headers if caller else None,
    )
    assert answer.status_code == 200, answer.text
    states = {row["start"]: row["state"] for row in answer.json()["slots"]}
    return str(states[iso(start)])


def _rows(raw: Engine, doctor: Actor) -> int:
    with raw.connect() as conn:
        query = text("SELECT COUNT(*) FROM appointments WHERE doctor_id = :doctor")
        return int(conn.execute(query, {"doctor": doctor.id}).scalar_one())


def _error(answer: Any) -> tuple[int, str]:
    return answer.status_code, answer.json().get("error")


def test_a_hold_answers_201_with_its_id_and_expiry(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    before = datetime.now(UTC)
    answer = _hold(world, patient, doctor, slot(10))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert Hold.parse(body["hold_id"]) == Hold(
        doctor.id, slot(10), patient.id, Hold.parse(body["hold_id"]).token
    )
    assert body["doctor_id"] == doctor.id
    assert body["scheduled_datetime"].replace("+00:00", "Z") == iso(slot(10))
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    ttl = timedelta(seconds=world.settings.hold_ttl)
    assert before + ttl - timedelta(seconds=2) <= expires <= before + ttl + timedelta(seconds=2)


def test_holding_a_slot_again_returns_the_same_hold(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    first = _held(world, patient, doctor, slot(10))
    assert _held(world, patient, doctor, slot(10)) == first


def test_holding_a_slot_again_answers_with_its_expiry(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    first = _hold(world, patient, doctor, slot(10)).json()
    again = _hold(world, patient, doctor, slot(10))
    assert again.status_code == 201, again.text
    assert again.json()["hold_id"] == first["hold_id"]
    assert again.json()["expires_at"] == first["expires_at"]


def test_holding_a_held_slot_again_at_the_cap_returns_the_same_hold(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    hold_ids = [_held(world, patient, doctor, slot(hour)) for hour in (9, 10, 11)]
    again = _hold(world, patient, doctor, slot(10))  # a retry, not a fourth hold
    assert again.status_code == 201, again.text
    assert again.json()["hold_id"] == hold_ids[1]


def test_a_held_slot_shows_held_to_everyone(world: World) -> None:
    doctor, holder, other = world.doctor(), world.patient(), world.patient()
    assert _state(world, doctor, slot(10)) == "free"
    _held(world, holder, doctor, slot(10))
    for caller in (None, holder, other, doctor, world.admin()):
        assert _state(world, doctor, slot(10), caller) == "held"
    assert _state(world, doctor, slot(11)) == "free"


def test_a_held_slot_is_not_among_the_available_slots(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    _held(world, patient, doctor, slot(10))
    answer = world.client.get(
        f"/appointments/doctor/{doctor.id}/available-slots?date={next_workday()}"
    )
    assert answer.status_code == 200, answer.text
    assert iso(slot(10)) not in answer.json()["slots"]
    assert iso(slot(11)) in answer.json()["slots"]


def test_another_patient_cannot_hold_a_held_slot(world: World) -> None:
    doctor, holder, other = world.doctor(), world.patient(), world.patient()
    _held(world, holder, doctor, slot(10))
    assert _error(_hold(world, other, doctor, slot(10))) == (409, "slot_taken")


def test_another_patient_cannot_book_a_held_slot_directly(world: World, raw: Engine) -> None:
    doctor, holder, other = world.doctor(), world.patient(), world.patient()
    _held(world, holder, doctor, slot(10))
    assert _error(_book(world, other, _direct(doctor, slot(10)))) == (409, "slot_taken")
    assert _rows(raw, doctor) == 0


def test_the_holder_books_with_the_hold_id(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    hold_id = _held(world, patient, doctor, slot(10))
    answer = _book(world, patient, {"hold_id": hold_id})
    assert answer.status_code == 201, answer.text
    assert answer.json()["scheduled_datetime"] == iso(slot(10))
    assert answer.json()["doctor_id"] == doctor.id
    assert answer.json()["patient_id"] == patient.id
    assert _state(world, doctor, slot(10)) == "booked"
    assert _rows(raw, doctor) == 1
    assert _error(_release(world, patient, hold_id)) == (404, "not_found")  # the hold is spent


def test_the_holder_may_book_the_held_slot_directly(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    _held(world, patient, doctor, slot(10))
    answer = _book(world, patient, _direct(doctor, slot(10)))
    assert answer.status_code == 201, answer.text
    assert _state(world, doctor, slot(10)) == "booked"


def test_another_patient_cannot_book_with_someone_elses_hold(world: World) -> None:
    doctor, holder, other = world.doctor(), world.patient(), world.patient()
    hold_id = _held(world, holder, doctor, slot(10))
    assert _error(_book(world, other, {"hold_id": hold_id})) == (403, "forbidden")
    assert _state(world, doctor, slot(10)) == "held"


def test_releasing_a_hold_frees_the_slot(world: World) -> None:
    doctor, holder, other = world.doctor(), world.patient(), world.patient()
    hold_id = _held(world, holder, doctor, slot(10))
    answer = _release(world, holder, hold_id)
    assert answer.status_code == 204, answer.text
    assert _state(world, doctor, slot(10)) == "free"
    assert _error(_release(world, holder, hold_id)) == (404, "not_found")
    assert _book(world, other, _direct(doctor, slot(10))).status_code == 201


def test_releasing_someone_elses_hold_is_forbidden(world: World) -> None:
    doctor, holder, other = world.doctor(), world.patient(), world.patient()
    hold_id = _held(world, holder, doctor, slot(10))
    assert _error(_release(world, other, hold_id)) == (403, "forbidden")
    assert _state(world, doctor, slot(10)) == "held"


def test_releasing_a_malformed_hold_id_is_invalid(world: World) -> None:
    patient = world.patient()
    assert _error(_release(world, patient, "not-a-hold")) == (422, "invalid")


def test_a_fourth_hold_is_too_many(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    assert world.settings.max_holds == 3
    for hour in (9, 10, 11):
        _held(world, patient, doctor, slot(hour))
    assert _error(_hold(world, patient, doctor, slot(12))) == (409, "too_many_holds")
    assert _state(world, doctor, slot(12)) == "free"
    assert _hold(world, world.patient(), doctor, slot(12)).status_code == 201


def test_a_booked_slot_cannot_be_held(world: World) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    world.book(first, doctor, slot(10))
    assert _error(_hold(world, second, doctor, slot(10))) == (409, "slot_taken")
    assert _state(world, doctor, slot(10)) == "booked"


@pytest.mark.parametrize("role", ["doctor", "admin"])
def test_only_patients_hold(world: World, role: str) -> None:
    doctor = world.doctor()
    caller = doctor if role == "doctor" else world.admin()
    assert _error(_hold(world, caller, doctor, slot(10))) == (403, "forbidden")


def test_holding_requires_signing_in(world: World) -> None:
    doctor = world.doctor()
    answer = world.client.post("/appointments/holds", json=_direct(doctor, slot(10)))
    assert answer.status_code == 401


# Lapsed holds: an app on a clock the test moves


@pytest.fixture
def app_clock() -> MovingClock:
    return MovingClock()


@pytest.fixture
def clocked(
    settings: Settings, raw: Engine, app_clock: MovingClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """A World on its own app that tells time by `app_clock`."""
    with app_on(settings, app_clock) as client:
        yield World(client, settings, raw)


def _lapse(world: World, clock: MovingClock) -> None:
    clock.advance(world.settings.hold_ttl + 1)


def test_a_lapsed_hold_turns_the_slot_free_through_the_sweeper(
    clocked: World, app_clock: MovingClock
) -> None:
    doctor, patient = clocked.doctor(), clocked.patient()
    holds = clocked.client.app_state["hub"].holds  # type: ignore[attr-defined]
    sweep = holds.sweep
    claimed: list[str] = []

    async def recording() -> list[Hold]:
        lapsed: list[Hold] = await sweep()
        claimed.extend(hold.id for hold in lapsed)
        return lapsed

    holds.sweep = recording  # the app's own sweeper task calls this every 0.5 s
    hold_id = _held(clocked, patient, doctor, slot(10))
    assert _state(clocked, doctor, slot(10)) == "held"
    _lapse(clocked, app_clock)
    assert _state(clocked, doctor, slot(10)) == "free"
    deadline = time.monotonic() + 2
    while hold_id not in claimed:
        assert time.monotonic() < deadline, "the sweeper never claimed the lapsed hold"
        time.sleep(0.05)
    time.sleep(0.6)  # another sweep round: the hold is claimed once only
    assert claimed == [hold_id]
    assert _state(clocked, doctor, slot(10)) == "free"


def test_a_stalled_holder_cannot_confirm_after_another_patient_booked(
    clocked: World, app_clock: MovingClock, raw: Engine
) -> None:
    doctor, stalled, quick = clocked.doctor(), clocked.patient(), clocked.patient()
    hold_id = _held(clocked, stalled, doctor, slot(10))
    _lapse(clocked, app_clock)
    assert _book(clocked, quick, _direct(doctor, slot(10))).status_code == 201
    assert _error(_book(clocked, stalled, {"hold_id": hold_id})) == (409, "hold_expired")
    assert _rows(raw, doctor) == 1
    with raw.connect() as conn:
        owner = conn.execute(
            text("SELECT patient_id FROM appointments WHERE doctor_id = :doctor"),
            {"doctor": doctor.id},
        ).scalar_one()
    assert owner == quick.id


def test_a_lapsed_hold_still_books_a_slot_nobody_took(
    clocked: World, app_clock: MovingClock, raw: Engine
) -> None:
    doctor, patient = clocked.doctor(), clocked.patient()
    hold_id = _held(clocked, patient, doctor, slot(10))
    _lapse(clocked, app_clock)
    answer = _book(clocked, patient, {"hold_id": hold_id})
    assert answer.status_code == 201, answer.text
    assert _rows(raw, doctor) == 1


def test_a_lapsed_hold_confirms_against_a_new_holder_as_expired(
    clocked: World, app_clock: MovingClock
) -> None:
    doctor, stalled, quick = clocked.doctor(), clocked.patient(), clocked.patient()
    hold_id = _held(clocked, stalled, doctor, slot(10))
    _lapse(clocked, app_clock)
    _held(clocked, quick, doctor, slot(10))
    assert _error(_book(clocked, stalled, {"hold_id": hold_id})) == (409, "hold_expired")
    assert _state(clocked, doctor, slot(10)) == "held"


def test_a_hold_is_live_until_the_clock_passes_its_expiry(
    clocked: World, app_clock: MovingClock
) -> None:
    doctor, holder, other = clocked.doctor(), clocked.patient(), clocked.patient()
    _held(clocked, holder, doctor, slot(10))
    app_clock.advance(clocked.settings.hold_ttl - 1)
    assert _state(clocked, doctor, slot(10)) == "held"
    assert _error(_book(clocked, other, _direct(doctor, slot(10)))) == (409, "slot_taken")
    app_clock.advance(2)
    assert _state(clocked, doctor, slot(10)) == "free"
    assert _book(clocked, other, _direct(doctor, slot(10))).status_code == 201


class Recorder:
    """A bus that keeps what is published on it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        self.messages.append(message)

    async def subscribe(self, channel: str, sink: Any) -> None:
        return None

    async def unsubscribe(self, channel: str, sink: Any) -> None:
        return None


async def test_a_sweep_never_announces_free_a_slot_someone_holds_again(
    settings: Settings, clock: MovingClock
) -> None:
    engine = db.create_engine(settings.database_url)
    client = Redis.from_url(settings.redis_url) if settings.redis_url else None
    try:
        holds: HoldStore = (
            MemoryHolds(clock) if client is None else RedisHolds(client, 2.0, clock=clock)
        )
        bus = Recorder()
        sessions = db.session_factory(engine)
        booking = Booking(sessions, holds, Relay(sessions, bus, clock=clock), clock=clock)
        await holds.take(Hold.new(1, START, 1), SHORT, 3)
        clock.advance(LAPSE)  # the first hold lapses, and before any sweep...
        await holds.take(Hold.new(1, START, 2), LONG, 3)  # ...another patient holds the slot
        await booking.sweep()
        announced = [message.get("state") for message in bus.messages]
        assert "free" not in announced, f"a held slot announced as {announced}"
        current = await holds.holder(1, START)
        assert current is not None and current.patient_id == 2
    finally:
        if client is not None:
            await client.aclose()
        await engine.dispose()


def _workday_slots(count: int) -> list[datetime]:
    starts: list[datetime] = []
    day = datetime.now(UTC).date() + timedelta(days=2)
    while len(starts) < count:
        if day.weekday() < 5:
            starts += [datetime.combine(day, wall(hour), tzinfo=UTC) for hour in range(9, 17)]
        day += timedelta(days=1)
    return starts[:count]


TRIALS = 100


def test_a_hundred_stalled_holders_never_double_book(world: World, raw: Engine) -> None:
    doctor, stalled, quick = world.doctor(), world.patient(), world.patient()
    world.allow_repeat_bookings(doctor)
    portal = world.client.portal
    assert portal is not None
    holds = world.client.app_state["hub"].holds  # type: ignore[attr-defined]
    statuses: Counter[tuple[str, int, str | None]] = Counter()
    for start in _workday_slots(TRIALS):
        held = _hold(world, stalled, doctor, start)
        statuses["hold", held.status_code, None] += 1
        hold_id = held.json()["hold_id"]
        # A stalls past its hold: the key vanishes from under it, as a lapse would do.
        assert portal.call(holds.release, Hold.parse(hold_id)) is True
        booked = _book(world, quick, _direct(doctor, start))
        statuses["book", booked.status_code, None] += 1
        late = _book(world, stalled, {"hold_id": hold_id})
        statuses["confirm", late.status_code, late.json().get("error")] += 1
    assert statuses == {
        ("hold", 201, None): TRIALS,
        ("book", 201, None): TRIALS,
        ("confirm", 409, "hold_expired"): TRIALS,
    }
    with raw.connect() as conn:
        duplicates = conn.execute(
            text(
                "SELECT COUNT(*) FROM (SELECT start_at FROM appointments WHERE doctor_id = :d "
                "GROUP BY start_at HAVING COUNT(*) > 1) AS twice"
            ),
            {"d": doctor.id},
        ).scalar_one()
        owners = conn.execute(
            text("SELECT DISTINCT patient_id FROM appointments WHERE doctor_id = :d"),
            {"d": doctor.id},
        ).all()
    assert duplicates == 0
    assert _rows(raw, doctor) == TRIALS
    assert [row[0] for row in owners] == [quick.id]


# Idempotency


def test_a_retry_with_the_same_key_returns_the_same_appointment(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    first = _book(world, patient, _direct(doctor, slot(10)), key="retry-1")
    assert first.status_code == 201, first.text
    again = _book(world, patient, _direct(doctor, slot(10)), key="retry-1")
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["scheduled_datetime"] == first.json()["scheduled_datetime"]
    assert _rows(raw, doctor) == 1


def test_a_retry_with_a_hold_and_the_same_key_returns_the_same_appointment(
    world: World, raw: Engine
) -> None:
    doctor, patient = world.doctor(), world.patient()
    hold_id = _held(world, patient, doctor, slot(10))
    first = _book(world, patient, {"hold_id": hold_id}, key="retry-hold")
    assert first.status_code == 201, first.text
    again = _book(world, patient, {"hold_id": hold_id}, key="retry-hold")
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert _rows(raw, doctor) == 1


def test_the_same_key_with_another_body_is_a_mismatch(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    world.allow_repeat_bookings(doctor)
    assert _book(world, patient, _direct(doctor, slot(10)), key="k-1").status_code == 201
    answer = _book(world, patient, _direct(doctor, slot(11)), key="k-1")
    assert _error(answer) == (422, "idempotency_mismatch")
    assert _rows(raw, doctor) == 1
    assert _state(world, doctor, slot(11)) == "free"


def test_the_same_key_of_another_patient_is_independent(world: World, raw: Engine) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    mine = _book(world, first, _direct(doctor, slot(10)), key="shared-key")
    assert mine.status_code == 201, mine.text
    # Not a replay of the first patient's booking: the slot is simply taken.
    assert _error(_book(world, second, _direct(doctor, slot(10)), key="shared-key")) == (
        409,
        "slot_taken",
    )
    theirs = _book(world, second, _direct(doctor, slot(11)), key="shared-key")
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs.json()["patient_id"] == second.id
    assert _rows(raw, doctor) == 2


def test_a_failed_booking_does_not_spend_its_key(world: World) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    world.book(first, doctor, slot(10))
    answer = _book(world, second, _direct(doctor, slot(10)), key="spent?")
    assert _error(answer) == (409, "slot_taken")
    retry = _book(world, second, _direct(doctor, slot(11)), key="spent?")
    assert retry.status_code == 201, retry.text


def test_keys_past_their_lifetime_are_forgotten_and_younger_ones_still_replay(
    world: World, raw: Engine
) -> None:
    doctor, patient = world.doctor(), world.patient()
    world.allow_repeat_bookings(doctor)
    old = _book(world, patient, _direct(doctor, slot(10)), key="old")
    young = _book(world, patient, _direct(doctor, slot(11)), key="young")
    assert old.status_code == young.status_code == 201
    aged = datetime.now(UTC) - KEY_LIFETIME - timedelta(minutes=1)
    with raw.begin() as conn:
        conn.execute(
            text("UPDATE idempotency_keys SET created_at = :aged WHERE `key` = 'old'"),
            {"aged": aged.replace(tzinfo=None)},
        )
    booking: Booking = world.client.app_state["hub"].booking  # type: ignore[attr-defined]
    assert world.client.portal.call(booking.forget_keys) == 1
    with raw.connect() as conn:
        kept = conn.execute(text("SELECT `key` FROM idempotency_keys")).scalars().all()
    assert kept == ["young"]
    again = _book(world, patient, _direct(doctor, slot(11)), key="young")
    assert (again.status_code, again.json()["id"]) == (201, young.json()["id"])


@pytest.mark.parametrize("key", ["", "x" * 101, "with space"], ids=repr)
def test_a_malformed_idempotency_key_is_invalid(world: World, key: str) -> None:
    doctor, patient = world.doctor(), world.patient()
    headers = {**patient.headers, "Idempotency-Key": key}
    answer = world.client.post("/appointments/", json=_direct(doctor, slot(10)), headers=headers)
    assert _error(answer) == (422, "invalid")


def test_a_key_answers_retries_until_the_clock_passes_its_lifetime(
    clocked: World, app_clock: MovingClock
) -> None:
    doctor, patient = clocked.doctor(), clocked.patient()
    first = _book(clocked, patient, _direct(doctor, slot(10)), key="once")
    assert first.status_code == 201, first.text
    booking: Booking = clocked.client.app_state["hub"].booking  # type: ignore[attr-defined]
    forget = clocked.client.portal.call  # type: ignore[union-attr]
    app_clock.advance(KEY_LIFETIME.total_seconds() - 3600)
    assert forget(booking.forget_keys) == 0
    again = _book(clocked, patient, _direct(doctor, slot(10)), key="once")
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])
    app_clock.advance(2 * 3600)
    assert forget(booking.forget_keys) == 1
    late = _book(clocked, patient, _direct(doctor, slot(10)), key="once")  # booked anew
    assert _error(late) == (409, "already_booked")
