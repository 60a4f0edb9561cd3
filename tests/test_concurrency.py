"""Concurrency beyond one process and one happy Redis: 200 contenders on one slot with and without
holds, two hub processes on one database, and a Redis outage in the middle of a booking run.
Every test asserts counts; wall times are printed (run with -s), never asserted."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import Engine, text

from hub.auth import Principal, Role, Tokens
from hub.config import Settings
from tests.conftest import World, insert_patients, iso, next_workday, slot
from tests.server import free_port, hub_processes, run_server
from tests.server import stop as stop_process

CONTENDERS = 200
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: every hold call fails
OUTAGE_SLOTS = 60  # each booked by two patients at once; Redis dies after 1/3, returns after 2/3
OUTAGE_PARALLEL = 6  # slots in flight at a time during the outage run
RECOVERY_SECONDS = 5.0


def _headers(settings: Settings, patient_ids: list[int]) -> list[dict[str, str]]:
    tokens = Tokens(settings)
    return [
        {"Authorization": f"Bearer {tokens.issue(Principal(Role.patient, pid)).access_token}"}
        for pid in patient_ids
    ]


def _appointments(raw: Engine) -> list[tuple[int, datetime, int]]:
    """(doctor_id, start_at, how many active rows) for every booked start."""
    with raw.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT doctor_id, start_at, COUNT(*) FROM appointments "
                "GROUP BY doctor_id, start_at ORDER BY start_at"
            )
        ).all()
    return [(int(doctor), start, int(n)) for doctor, start, n in rows]


def _errors(answers: list[httpx.Response]) -> Counter[str]:
    return Counter(
        answer.json().get("error", "?") for answer in answers if answer.status_code >= 400
    )


async def _contend(
    urls: list[str], headers: list[dict[str, str]], body: dict[str, object]
) -> tuple[list[httpx.Response], float]:
    """Every patient POSTs the same booking at once, round-robin over `urls`."""
    limits = httpx.Limits(max_connections=len(headers), max_keepalive_connections=len(headers))
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(
                client.post(f"{urls[n % len(urls)]}/appointments/", json=body, headers=h)
                for n, h in enumerate(headers)
            )
        )
        return list(answers), time.perf_counter() - started


# 1. 200 patients, one slot, one process: with holds, and on the database guard alone.


@pytest.mark.parametrize("guard", ["holds", "database_alone"])
async def test_200_concurrent_bookings_of_one_slot_store_exactly_one(
    world: World, settings: Settings, raw: Engine, backend: str, guard: str
) -> None:
    if guard == "database_alone":
        if backend == "embedded":
            pytest.skip("the embedded hub has no Redis to lose")
        settings = dataclasses.replace(settings, redis_url=UNREACHABLE_REDIS, redis_timeout=0.2)
    doctor = world.doctor()
    headers = _headers(settings, insert_patients(raw, CONTENDERS, "one-slot"))
    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(11))}
    with run_server(settings) as url:
        answers, elapsed = await _contend([url], headers, body)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            other = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(15))}
            # One who lost: the winner's second hold with this doctor is refused (one each).
            loser = next(h for h, a in zip(headers, answers, strict=True) if a.status_code != 201)
            held = await client.post("/appointments/holds", json=other, headers=loser)
    statuses = Counter(answer.status_code for answer in answers)
    errors = _errors(answers)
    print(
        f"\n[{backend}/{guard}] {CONTENDERS} concurrent bookings of one slot: "
        f"{dict(statuses)} {dict(errors)} in {elapsed:.2f}s"
    )
    assert not [answer.text for answer in answers if answer.status_code >= 500]
    assert statuses == {201: 1, 409: CONTENDERS - 1}
    assert errors == {"slot_taken": CONTENDERS - 1}
    # The variant is what it claims: holds work with Redis, and answer 503 without it.
    if guard == "database_alone":
        assert (held.status_code, held.json()["error"]) == (503, "holds_unavailable")
    else:
        assert held.status_code == 201, held.text
    booked = _appointments(raw)
    assert [(d, n) for d, _, n in booked] == [(doctor.id, 1)]
    winner = next(answer.json() for answer in answers if answer.status_code == 201)
    with raw.connect() as conn:
        stored = conn.execute(text("SELECT id, patient_id FROM appointments")).one()
    assert (stored.id, stored.patient_id) == (winner["id"], winner["patient_id"])


# 2. Two hub processes on one MariaDB and one Redis.


async def test_two_hub_processes_book_one_slot_exactly_once(
    world: World, settings: Settings, raw: Engine, backend: str, tmp_path: Path
) -> None:
    if backend == "embedded":
        pytest.skip("the embedded default is one process by design")
    doctor = world.doctor()
    headers = _headers(settings, insert_patients(raw, CONTENDERS, "two-procs"))
    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(14))}
    with hub_processes(settings, tmp_path, 2) as hubs:
        urls = [url for url, _ in hubs]
        answers, elapsed = await _contend(urls, headers, body)
    statuses = Counter(answer.status_code for answer in answers)
    errors = _errors(answers)
    per_process = [
        dict(Counter(a.status_code for a in answers[n :: len(urls)])) for n in range(len(urls))
    ]
    print(
        f"\n[{backend}] {CONTENDERS} concurrent bookings over 2 processes: {dict(statuses)} "
        f"{dict(errors)} (per process {per_process}) in {elapsed:.2f}s"
    )
    assert not [answer.text for answer in answers if answer.status_code >= 500]
    assert statuses == {201: 1, 409: CONTENDERS - 1}
    assert errors == {"slot_taken": CONTENDERS - 1}
    assert all(sum(counts.values()) == CONTENDERS // 2 for counts in per_process)
    booked = _appointments(raw)
    assert [(d, n) for d, _, n in booked] == [(doctor.id, 1)]


# 3. Redis dies during a booking run and comes back.


class RedisProcess:
    """A private redis-server on a fixed port, killed and restarted at will."""

    def __init__(self, port: int, tmp: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._tmp = tmp
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it and wait until it answers PING; seconds it took."""
        assert self._process is None
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server must be on PATH for the outage test"
        started = time.perf_counter()
        self._process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--save", "", "--appendonly", "no"),
                *("--bind", "127.0.0.1", "--dir", str(self._tmp)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.2)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if client.ping():
                        return time.perf_counter() - started
                except redis.RedisError:
                    pass
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no goodbye to the connected clients."""
        assert self._process is not None
        self._process.kill()
        self._process.wait()
        self._process = None

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None


def _outage_starts(count: int) -> list[datetime]:
    """`count` distinct slots the original rule offers: weekdays, on the hour, 09-16 UTC."""
    starts: list[datetime] = []
    day = next_workday(7)
    while len(starts) < count:
        if day.weekday() < 5:
            starts.extend(datetime.combine(day, clock(hour), tzinfo=UTC) for hour in range(9, 17))
        day += timedelta(days=1)
    return starts[:count]


async def test_redis_outage_mid_run_never_double_books(
    world: World, settings: Settings, raw: Engine, backend: str, tmp_path: Path
) -> None:
    if backend == "embedded":
        pytest.skip("the embedded hub has no Redis to lose")
    own = RedisProcess(free_port(), tmp_path)
    await asyncio.to_thread(own.start)
    try:
        hub = dataclasses.replace(settings, redis_url=own.url, redis_timeout=0.2)
        doctor = world.doctor()
        *starts, probe_start = _outage_starts(OUTAGE_SLOTS + 1)
        headers = _headers(hub, insert_patients(raw, 2 * OUTAGE_SLOTS + 1, "outage"))
        probe_headers = headers.pop()
        probe_body = {"doctor_id": doctor.id, "scheduled_datetime": iso(probe_start)}
        third = OUTAGE_SLOTS // 3
        launched = [asyncio.Event(), asyncio.Event()]  # first third, second third in flight
        phase = [asyncio.Event(), asyncio.Event()]  # Redis is down, Redis is back
        answers: dict[int, list[httpx.Response]] = {}
        report: dict[str, object] = {}

        with run_server(hub) as url:
            limits = httpx.Limits(max_connections=4 * OUTAGE_PARALLEL)
            async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
                gate = asyncio.Semaphore(OUTAGE_PARALLEL)

                async def pair(n: int, start: datetime) -> None:
                    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(start)}
                    try:
                        answers[n] = list(
                            await asyncio.gather(
                                client.post("/appointments/", json=body, headers=headers[2 * n]),
                                client.post(
                                    "/appointments/", json=body, headers=headers[2 * n + 1]
                                ),
                            )
                        )
                    finally:
                        gate.release()

                async def drive() -> None:
                    tasks = []
                    for n, start in enumerate(starts):
                        if n == third:
                            await phase[0].wait()
                        if n == 2 * third:
                            await phase[1].wait()
                        await gate.acquire()
                        tasks.append(asyncio.create_task(pair(n, start)))
                        if n == third - 1:
                            launched[0].set()
                        if n == 2 * third - 1:
                            launched[1].set()
                    await asyncio.gather(*tasks)

                async def outage() -> None:
                    await launched[0].wait()  # the last of the first third still in flight
                    await asyncio.to_thread(own.kill)
                    held = await client.post(
                        "/appointments/holds", json=probe_body, headers=probe_headers
                    )
                    report["hold while down"] = (held.status_code, held.json().get("error"))
                    phase[0].set()
                    await launched[1].wait()
                    report["restart"] = await asyncio.to_thread(own.start)
                    phase[1].set()
                    back = time.perf_counter()
                    while True:
                        held = await client.post(
                            "/appointments/holds", json=probe_body, headers=probe_headers
                        )
                        if held.status_code == 201:
                            report["holds back after"] = time.perf_counter() - back
                            break
                        if time.perf_counter() - back > RECOVERY_SECONDS:
                            report["holds back after"] = None
                            report["last hold answer"] = (held.status_code, held.text)
                            break
                        await asyncio.sleep(0.1)

                started = time.perf_counter()
                await asyncio.gather(drive(), outage())
                elapsed = time.perf_counter() - started
    finally:
        await asyncio.to_thread(own.stop)

    flat = [answer for n in sorted(answers) for answer in answers[n]]
    statuses = Counter(answer.status_code for answer in flat)
    errors = _errors(flat)
    thirds = [
        dict(Counter(a.status_code for n in range(k * third, (k + 1) * third) for a in answers[n]))
        for k in range(3)
    ]
    print(
        f"\n[{backend}] Redis outage run, {OUTAGE_SLOTS} slots x 2 bookings: {dict(statuses)} "
        f"{dict(errors)}; by third (up, down, back) {thirds}; {report}; in {elapsed:.2f}s"
    )
    assert len(answers) == OUTAGE_SLOTS
    assert not [answer.text for answer in flat if answer.status_code >= 500]
    assert set(statuses) <= {201, 409}
    assert errors == {"slot_taken": OUTAGE_SLOTS}
    for n in sorted(answers):
        assert sorted(a.status_code for a in answers[n]) == [201, 409], n
    booked = _appointments(raw)
    assert len(booked) == OUTAGE_SLOTS
    assert all(d == doctor.id and count == 1 for d, _, count in booked)
    assert report["hold while down"] == (503, "holds_unavailable")
    assert report["holds back after"] is not None, report.get("last hold answer")
