from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomysql
import pymysql

from hub.loadtest.crew import Context

DUPLICATE, DEADLOCK, LOCK_WAIT = 1062, 1213, 1205
ATTEMPTS = 5  # as the hub retries a deadlock
FIRST = datetime(2030, 1, 7, tzinfo=UTC).replace(tzinfo=None)
STEP = timedelta(minutes=5)
SCHEMA = (
    "CREATE TABLE patients (id INT PRIMARY KEY, last_name VARCHAR(50) NOT NULL)",
    "CREATE TABLE schedules (doctor_id INT PRIMARY KEY, version INT NOT NULL DEFAULT 0, "
    "slot_minutes INT NOT NULL DEFAULT 5)",
    "CREATE TABLE appointments (id INT AUTO_INCREMENT PRIMARY KEY, doctor_id INT NOT NULL, "
    "patient_id INT NOT NULL, start_at DATETIME NOT NULL, end_at DATETIME NOT NULL, "
    "status VARCHAR(16) NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, "
    "active INT GENERATED ALWAYS AS (CASE WHEN status <> 'cancelled' THEN 1 ELSE NULL END) "
    "STORED, UNIQUE KEY uq_doctor_slot (doctor_id, start_at, active), "
    "UNIQUE KEY uq_patient_slot (patient_id, start_at, active), "
    "KEY ix_doctor_start (doctor_id, start_at), KEY ix_patient (patient_id))",
    "CREATE TABLE appointment_events (id INT AUTO_INCREMENT PRIMARY KEY, "
    "appointment_id INT NOT NULL, at DATETIME NOT NULL, actor_role VARCHAR(16) NOT NULL, "
    "actor_id INT NOT NULL, to_status VARCHAR(16) NOT NULL, KEY ix_appointment (appointment_id))",
    "CREATE TABLE outbox (id INT AUTO_INCREMENT PRIMARY KEY, channel VARCHAR(100) NOT NULL, "
    "doctor_id INT NULL, version INT NULL, payload JSON NOT NULL, created_at DATETIME NOT NULL, "
    "published_at DATETIME NULL, UNIQUE KEY uq_doctor_version (doctor_id, version), "
    "KEY ix_published (published_at))",
)


@dataclass(frozen=True, slots=True)
class Dsn:
    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def of(cls, database_url: str, database: str) -> Dsn:
        from sqlalchemy.engine import make_url

        url = make_url(database_url)
        return cls(
            url.host or "127.0.0.1",
            url.port or 3306,
            url.username or "root",
            url.password or "",
            database,
        )

    def connect(self, **kw: Any) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            **kw,
        }


@asynccontextmanager
async def scratch(dsn: Dsn, doctors: int, patients: int) -> AsyncIterator[None]:
    """A database of the booking tables alone (created, seeded, and dropped after)."""
    conn = await aiomysql.connect(**dsn.connect(autocommit=True))
    try:
        async with conn.cursor() as cur:
            await cur.execute("SET SESSION sql_notes = 0")  # no warning for a missing database
            await cur.execute(f"DROP DATABASE IF EXISTS `{dsn.database}`")
            await cur.execute(f"CREATE DATABASE `{dsn.database}`")
            await cur.execute(f"USE `{dsn.database}`")
            for statement in SCHEMA:
                await cur.execute(statement)
            await cur.executemany(
                "INSERT INTO schedules (doctor_id) VALUES (%s)", range(1, doctors + 1)
            )
            rows = [(n, f"Patient {n}") for n in range(1, patients + 1)]
            await cur.executemany("INSERT INTO patients (id, last_name) VALUES (%s, %s)", rows)
        yield
    finally:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{dsn.database}`")
        conn.close()


LOCK_SCHEDULE = "SELECT version, slot_minutes FROM schedules WHERE doctor_id = %s FOR UPDATE"
LOCK_PATIENT = "SELECT id, last_name FROM patients WHERE id = %s FOR UPDATE"
OVERLAPS = (
    "SELECT doctor_id, patient_id FROM appointments WHERE active IS NOT NULL AND start_at < %s "
    "AND end_at > %s AND start_at <> %s AND (doctor_id = %s OR patient_id = %s)"
)
INSERT = (
    "INSERT INTO appointments (doctor_id, patient_id, start_at, end_at, status, created_at, "
    "updated_at) VALUES (%s, %s, %s, %s, 'scheduled', %s, %s)"
)
HISTORY = (
    "INSERT INTO appointment_events (appointment_id, at, actor_role, actor_id, to_status) "
    "VALUES (%s, %s, 'patient', %s, 'scheduled')"
)
BUMP = "UPDATE schedules SET version = %s WHERE doctor_id = %s"
OUTBOX = (
    "INSERT INTO outbox (channel, doctor_id, version, payload, created_at) "
    "VALUES (%s, %s, %s, %s, %s)"
)


async def book(conn: Any, doctor_id: int, patient_id: int, start: datetime) -> int:
    """Approximately the statements the hub's booking runs, in one READ COMMITTED
    transaction: lock the schedule and the patient, look for overlaps, insert under the
    UNIQUE keys (in a savepoint), the history row, the version bump and three outbox rows."""
    end, now = start + STEP, datetime.now(UTC).replace(tzinfo=None)
    async with conn.cursor() as cur:
        await cur.execute(LOCK_SCHEDULE, (doctor_id,))
        ((version, _),) = await cur.fetchall()
        await cur.execute(LOCK_PATIENT, (patient_id,))
        await cur.fetchall()
        await cur.execute(OVERLAPS, (end, start, start, doctor_id, patient_id))
        await cur.fetchall()
        await cur.execute("SAVEPOINT claim")
        await cur.execute(INSERT, (doctor_id, patient_id, start, end, now, now))
        appointment = int(cur.lastrowid)
        await cur.execute("RELEASE SAVEPOINT claim")
        await cur.execute(HISTORY, (appointment, now, patient_id))
        version += 1
        await cur.execute(BUMP, (version, doctor_id))
        slot = {"type": "slot", "doctor_id": doctor_id, "start": start.isoformat()}
        slot.update(state="booked", version=version)
        feed = json.dumps({"type": "appointment", "event": "booked", "appointment_id": appointment})
        rows = [
            (f"doctor:{doctor_id}:slots", doctor_id, version, json.dumps(slot), now),
            (f"doctor:{doctor_id}:appointments", None, None, feed, now),
            (f"patient:{patient_id}:appointments", None, None, feed, now),
        ]
        await cur.executemany(OUTBOX, rows)
    await conn.commit()
    return appointment


async def attempt(conn: Any, doctor_id: int, patient_id: int, start: datetime) -> str:
    """One booking with the hub's retry of deadlocks; its outcome as the hub would answer."""
    for _ in range(ATTEMPTS):
        try:
            await conn.begin()
            await book(conn, doctor_id, patient_id, start)
            return "201"
        except pymysql.err.MySQLError as exc:
            await conn.rollback()
            code = exc.args[0] if exc.args else 0
            if code == DUPLICATE:
                return "409 slot_taken"
            if code not in (DEADLOCK, LOCK_WAIT):
                return f"500 {code}"
    return "500 deadlock"


@dataclass(frozen=True, slots=True)
class Replay:
    dsn: Dsn
    patients: list[int]  # one client per patient
    doctors: int
    same_slot: bool  # contention: every client books doctor 1's first slot once
    count: int | None
    duration: float | None
    pool: int


async def replay(ctx: Context, share: Replay) -> None:
    """The clients of one process booking through aiomysql at the scenario's concurrency,
    over `pool` connections (as the hub's engine has a bounded pool)."""
    init = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
    connect = share.dsn.connect(db=share.dsn.database, autocommit=False, init_command=init)
    size = max(1, min(share.pool, len(share.patients)))
    async with aiomysql.create_pool(minsize=size, maxsize=size, **connect) as pool:
        ctx.reached()
        go_at = await ctx.go()
        deadline = go_at + share.duration if share.duration else None
        serial = itertools.count()
        left = [share.count if share.count is not None else -1]

        async def client(patient_id: int) -> None:
            while not ctx.stopping and (deadline is None or time.time() < deadline) and left[0]:
                left[0] -= 1
                n = next(serial)
                doctor, start = 1, FIRST
                if not share.same_slot:  # every start once, as the hub run books them
                    doctor = n % share.doctors + 1
                    start = FIRST + STEP * (n * ctx.procs + ctx.index)
                started, began = time.time(), time.perf_counter()
                async with pool.acquire() as conn:
                    outcome = await attempt(conn, doctor, patient_id, start)
                ctx.tally.record("book", started, time.perf_counter() - began, outcome)
                ctx.done()
                if share.same_slot:
                    return

        await asyncio.gather(*(client(p) for p in share.patients))
