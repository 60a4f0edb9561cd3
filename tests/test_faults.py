"""Faults in the middle of a booking run, against a real `python -m hub serve` on MariaDB and
Redis: Redis stopped and restarted, Redis paused past the hold TTL, every database connection
killed mid-transaction, MariaDB restarted, the hub itself paused past a hold's TTL.

For each: no double booking, no acknowledged booking lost (and no booking committed without its
client learning of it: every client retries with its Idempotency-Key until it has an answer), no
request hanging past its timeout, no 500 (503 with `Retry-After` while a service is away), the
hub healthy again by itself within 10 s of the service's return, and a viewer that stayed on
(reconnecting when closed) converged to the database.

These stop and start the machine's MariaDB and Redis, and always start them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, text
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from hub.auth import Principal, Role, Tokens
from hub.config import Settings
from tests.conftest import insert_patients
from tests.server import serve_process, stop

pytestmark = pytest.mark.exclusive  # it stops the MariaDB and Redis every other test uses
SLOTS = 30  # each wanted by two patients, one through each of two hub processes
CONCURRENCY = 6
PACE = 0.4  # seconds each client waits between bookings: the run lasts about 4 s
HOLD_TTL = 3
REQUEST_TIMEOUT = 15.0  # a request answered later than this counts as hanging
RECOVERY = 10.0
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip
MARIADB_START = [
    "start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd",
]  # fmt: skip


# -- the services ---------------------------------------------------------------------------


def _redis_up() -> bool:
    with contextlib.suppress(Exception):
        return bool(redis.Redis(port=6379, socket_timeout=1).ping())
    return False


def _mariadb_up() -> bool:
    ping = ["mysqladmin", "--protocol=tcp", "-h127.0.0.1", "-uroot", "ping"]
    return subprocess.run(ping, capture_output=True).returncode == 0


def _until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what} did not come back within {seconds} s"
        time.sleep(0.2)


def _pid_of(name: str) -> int:
    found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()
    assert found, f"no {name} process"
    return int(found[0])


@contextlib.contextmanager
def services_restored() -> Iterator[None]:
    """Whatever a fault did, MariaDB and Redis answer again (and run) after it."""
    try:
        yield
    finally:
        for pid_name in ("redis-server", "mariadbd"):
            with contextlib.suppress(Exception):
                os.kill(_pid_of(pid_name), signal.SIGCONT)
        if not _redis_up():
            os.makedirs("/var/lib/redis", exist_ok=True)
            os.makedirs("/var/log/redis", exist_ok=True)
            subprocess.run(REDIS_START, check=False)
        if not _mariadb_up():
            subprocess.run(MARIADB_START, check=False)
        _until(_redis_up, 30, "Redis")
        _until(_mariadb_up, 60, "MariaDB")


async def _run_command(command: list[str]) -> None:
    await asyncio.to_thread(subprocess.run, command, capture_output=True)


async def redis_restart(hub: subprocess.Popen[bytes], raw: Engine) -> None:
    await _run_command(["redis-cli", "-p", "6379", "shutdown", "nosave"])
    await asyncio.sleep(2)
    await _run_command(REDIS_START)
    await asyncio.to_thread(_until, _redis_up, 30, "Redis")


async def redis_paused(hub: subprocess.Popen[bytes], raw: Engine) -> None:
    pid = _pid_of("redis-server")
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(HOLD_TTL + 1)
    finally:
        os.kill(pid, signal.SIGCONT)


async def connections_killed(hub: subprocess.Popen[bytes], raw: Engine) -> None:
    database = raw.url.database
    for _ in range(5):  # again and again, so some die inside a transaction
        with raw.connect() as conn:
            mine = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
            ids = conn.execute(
                text("SELECT id FROM information_schema.processlist WHERE db = :db AND id <> :me"),
                {"db": database, "me": mine},
            ).scalars()
            for id_ in list(ids):
                with contextlib.suppress(Exception):
                    conn.execute(text(f"KILL CONNECTION {int(id_)}"))
        await asyncio.sleep(0.2)


async def mariadb_restart(hub: subprocess.Popen[bytes], raw: Engine) -> None:
    raw.dispose()
    await _run_command(["mysqladmin", "--protocol=tcp", "-h127.0.0.1", "-uroot", "shutdown"])
    await asyncio.to_thread(_until, lambda: not _mariadb_up(), 30, "MariaDB shutting down")
    await asyncio.sleep(1)
    await _run_command(MARIADB_START)
    await asyncio.to_thread(_until, _mariadb_up, 60, "MariaDB")


async def hub_paused(hub: subprocess.Popen[bytes], raw: Engine) -> None:
    os.kill(hub.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(HOLD_TTL + 1)  # the holds it gave lapse meanwhile
    finally:
        os.kill(hub.pid, signal.SIGCONT)


FAULTS: dict[str, Callable[[subprocess.Popen[bytes], Engine], Awaitable[None]]] = {
    "redis_restart": redis_restart,
    "redis_paused": redis_paused,
    "connections_killed": connections_killed,
    "mariadb_restart": mariadb_restart,
    "hub_paused": hub_paused,
}


# -- the load -------------------------------------------------------------------------------


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    acknowledged: dict[str, int] = field(default_factory=dict)  # key -> appointment id
    hanging: int = 0
    missing_retry_after: int = 0


async def book_until_answered(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any], tally: Tally
) -> None:
    """One booking, retried with its Idempotency-Key through every 503 and lost connection,
    as the browser app and `python -m hub.client` do, until it has a final answer."""
    key = uuid.uuid4().hex
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            answer = await client.post(
                "/appointments/", json=body, headers={**headers, "Idempotency-Key": key}
            )
        except httpx.TimeoutException:
            tally.hanging += 1
            continue
        except httpx.TransportError:
            await asyncio.sleep(0.3)
            continue
        if time.monotonic() - started > REQUEST_TIMEOUT:
            tally.hanging += 1
        tally.statuses[answer.status_code] += 1
        if answer.status_code == 503:
            if "retry-after" not in answer.headers:
                tally.missing_retry_after += 1
            await asyncio.sleep(0.3)
            continue
        if answer.status_code == 201:
            tally.acknowledged[key] = int(answer.json()["id"])
        return
    raise AssertionError("a booking had no final answer in 90 s")


@dataclass
class Viewer:
    """Watches the doctor throughout; reconnects (and takes a new snapshot) when closed."""

    url: str
    token: str
    doctor_id: int
    span: tuple[str, str]
    states: dict[str, str] = field(default_factory=dict)
    closes: int = 0

    async def run(self) -> None:
        while True:
            try:
                async with connect(self.url.replace("http", "ws", 1) + "/ws") as ws:
                    await ws.send(json.dumps({"type": "auth", "token": self.token}))
                    first, last = self.span
                    watch = {
                        "type": "watch",
                        "doctor_id": self.doctor_id,
                        "from": first,
                        "to": last,
                    }
                    await ws.send(json.dumps(watch))
                    async for frame in ws:
                        self._apply(json.loads(frame))
            except (WebSocketException, OSError):
                pass
            self.closes += 1
            await asyncio.sleep(0.5)

    def _apply(self, message: dict[str, Any]) -> None:
        if message.get("type") == "snapshot":
            self.states = {s["start"]: s["state"] for s in message["slots"]}
        elif message.get("type") == "slot" and message["start"] in self.states:
            self.states[message["start"]] = message["state"]


def _booked_in_database(raw: Engine, doctor_id: int) -> set[str]:
    with raw.connect() as conn:
        starts = conn.execute(
            text("SELECT start_at FROM appointments WHERE doctor_id = :d AND status = 'scheduled'"),
            {"d": doctor_id},
        ).scalars()
        return {s.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z") for s in starts}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_fault_in_the_middle_of_a_booking_run_loses_nothing_and_heals(
    settings: Settings, backend: str, raw: Engine, tmp_path: Path, fault: str
) -> None:
    if backend == "embedded":
        pytest.skip("the faults are of MariaDB, Redis and a hub process")
    patients = insert_patients(raw, 2 * SLOTS, f"fault-{fault}-")
    tokens = Tokens(settings)
    with services_restored():
        hubs = [
            serve_process(
                settings,
                backend,
                tmp_path / name,
                tmp_path / f"{name}.log",
                HUB_HOLD_TTL=str(HOLD_TTL),
            )
            for name in ("a", "b")
        ]
        try:
            await _run(settings, raw, hubs, patients, tokens, fault, tmp_path)
        finally:
            for process, _ in hubs:
                stop(process)


async def _run(
    settings: Settings,
    raw: Engine,
    hubs: list[tuple[subprocess.Popen[bytes], str]],
    patients: list[int],
    tokens: Tokens,
    fault: str,
    tmp: Path,
) -> None:
    (hub, url), (_, other) = hubs
    timeout = REQUEST_TIMEOUT + 5
    async with (
        httpx.AsyncClient(base_url=url, timeout=timeout) as client,
        httpx.AsyncClient(base_url=other, timeout=timeout) as elsewhere,
    ):
        doctor_id = await _open_doctor(client, settings)
        first_day = datetime.now(UTC).date() + timedelta(days=1)
        span = (first_day.isoformat(), (first_day + timedelta(days=1)).isoformat())
        viewer = Viewer(url, _token(tokens, Role.patient, patients[0]), doctor_id, span)
        watching = asyncio.create_task(viewer.run())
        midnight = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
        starts = [midnight + timedelta(minutes=5 * n) for n in range(SLOTS)]
        tally = Tally()
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(patient_id: int, start: datetime, through: httpx.AsyncClient) -> None:
            async with gate:
                headers = {"Authorization": f"Bearer {_token(tokens, Role.patient, patient_id)}"}
                body = {"doctor_id": doctor_id, "scheduled_datetime": start.isoformat()}
                await book_until_answered(through, headers, body, tally)
                await asyncio.sleep(PACE)

        load = asyncio.gather(
            *(one(patients[2 * n], start, client) for n, start in enumerate(starts)),
            *(one(patients[2 * n + 1], start, elsewhere) for n, start in enumerate(starts)),
        )
        await asyncio.sleep(0.5)  # the run under way
        await FAULTS[fault](hub, raw)
        returned = time.monotonic()
        healthy = await _until_healthy(client, returned)
        await load
        booked = await _until_converged(viewer, raw, doctor_id, returned)
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    log = "".join((tmp / f"{name}.log").read_text() for name in ("a", "b"))
    with raw.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, start_at FROM appointments "
                "WHERE doctor_id = :d AND status <> 'cancelled'"
            ),
            {"d": doctor_id},
        ).all()
    print(
        f"\n[{fault}] answers {dict(tally.statuses)}, {len(tally.acknowledged)} acknowledged, "
        f"{len(rows)} rows; healthy {healthy:.1f} s after the fault; viewer closed "
        f"{viewer.closes} times, converged {booked:.1f} s after"
    )
    assert tally.statuses[500] == 0, log[-3000:]
    assert tally.hanging == 0
    assert tally.missing_retry_after == 0
    assert len({start for _, start in rows}) == len(rows)  # no double booking
    assert sorted(tally.acknowledged.values()) == sorted(id_ for id_, _ in rows)  # none lost
    assert len(rows) == SLOTS  # every slot booked once: one of its two patients got it
    assert tally.statuses[409] == SLOTS  # and the other was told it is taken
    assert "Traceback" not in log, log[-3000:]


def _token(tokens: Tokens, role: Role, id_: int) -> str:
    return tokens.issue(Principal(role, id_)).access_token


async def _open_doctor(client: httpx.AsyncClient, settings: Settings) -> int:
    body = {
        "first_name": "Fault",
        "last_name": "Tolerant",
        "date_of_birth": "1970-01-01",
        "gender": "other",
        "email": f"fault-{uuid.uuid4().hex[:12]}@example.org",
        "phone": "+44 20 7946 0000",
        "password": "correct horse battery",
        "specialization_id": 1,
    }
    created = await client.post("/doctors/", json=body)
    assert created.status_code == 201, created.text
    doctor_id = int(created.json()["id"])
    day = [{"start": "00:00", "end": "24:00"}]
    names = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    hours = {"timezone": "UTC", "weekly": dict.fromkeys(names, day), "slot_minutes": 5,
             "notice_minutes": 0}  # fmt: skip
    token = Tokens(settings).issue(Principal(Role.doctor, doctor_id)).access_token
    put = await client.put(
        f"/doctors/{doctor_id}/availability",
        json=hours,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert put.status_code == 200, put.text
    return doctor_id


async def _until_healthy(client: httpx.AsyncClient, since: float) -> float:
    while True:
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/specializations/")).status_code == 200:
                return time.monotonic() - since
        assert time.monotonic() - since < RECOVERY, "the hub did not heal within 10 s"
        await asyncio.sleep(0.2)


async def _until_converged(viewer: Viewer, raw: Engine, doctor_id: int, since: float) -> float:
    deadline = time.monotonic() + RECOVERY + 20
    while True:
        booked = _booked_in_database(raw, doctor_id)
        seen = {start for start, state in viewer.states.items() if state == "booked"}
        if seen == booked and booked:
            return time.monotonic() - since
        assert time.monotonic() < deadline, f"viewer: {len(seen)} booked, database {len(booked)}"
        await asyncio.sleep(0.3)
