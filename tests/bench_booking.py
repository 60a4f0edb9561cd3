"""Benchmark: what the booking service costs per booking, without HTTP and without mail.

    python tests/bench_booking.py [DATABASE_URL] [REDIS_URL] [BOOKINGS] [CONCURRENCY]

Defaults: a scratch MariaDB database `bench_booking` (dropped and made again) on
127.0.0.1:3306, Redis database 9, 1,200 bookings, 20 at a time. It books distinct slots of
one doctor through `Booking.book` (claim in Redis, the transaction, the publish, the claim
let go) and prints this process's CPU per booking and the rate; the relay marks what it
published every 100 bookings, as the sweeper would. What it leaves out of a booking over
HTTP: the request and the answer, the token, the confirmation mail. Its figure moves less
than the load tool's on a shared machine (no load generator, no web server in the process),
so it is the one to compare two versions of the booking path by, alternating runs of each.
Not collected by pytest: speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, date, datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import text
from sqlalchemy.engine import make_url

from hub.auth import Principal, Role
from hub.availability import Availability, Interval, offered
from hub.booking import Booking
from hub.bus import RedisBus
from hub.db import create_engine, migrate, session_factory, sync_url
from hub.holds import RedisHolds
from hub.models import Doctor, Gender, Patient, Specialization
from hub.relay import Relay
from hub.schedules import new_schedule, row_fields

WARM_UP = 40


def fresh_database(url: str) -> None:
    if url.startswith("mysql"):
        parsed = make_url(sync_url(url))
        server = create_sync_engine(parsed.set(database=""))
        with server.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {parsed.database}"))
            conn.execute(text(f"CREATE DATABASE {parsed.database} CHARACTER SET utf8mb4"))
        server.dispose()
    migrate(url)


async def main(url: str, redis_url: str, bookings: int, concurrency: int) -> None:
    fresh_database(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    hours = Availability(
        timezone="UTC",
        weekly=((Interval(datetime.min.time(), datetime.max.time()),),) * 7,
        slot_minutes=5,
        notice_minutes=0,
        horizon_days=365,
    )
    person = {"date_of_birth": date(1990, 1, 1), "gender": Gender.other, "phone": "+4420794600"}
    async with sessions.begin() as session:
        kind = Specialization(name="Bench")
        session.add(kind)
        await session.flush()
        session.add(
            Doctor(
                first_name="Bench",
                last_name="Doctor",
                email="bench-doctor@example.org",
                password_hash="-",
                specialization_id=kind.id,
                **person,
            )
        )
        session.add_all(
            Patient(
                first_name="Bench",
                last_name=f"Patient {n}",
                email=f"bench-{n}@example.org",
                password_hash="-",
                **person,
            )
            for n in range(concurrency)
        )
        await session.flush()
        doctor_id = (await session.execute(text("SELECT MIN(id) FROM doctors"))).scalar_one()
        patients = list((await session.execute(text("SELECT id FROM patients"))).scalars())
        schedule = new_schedule(doctor_id)
        for name, value in row_fields(hours).items():
            setattr(schedule, name, value)
        schedule.one_per_patient = False  # each patient books many
        session.add(schedule)
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    relay = Relay(sessions, RedisBus(redis, 2.0, prefix="bench:"))
    booking = Booking(sessions, RedisHolds(redis, 2.0), relay)
    now = datetime.now(UTC)
    first = (now + timedelta(days=2)).date()
    starts = iter(offered(hours, first, first + timedelta(days=300), now))

    async def book_some(count: int) -> None:
        async def client(patient_id: int, share: int) -> None:
            patient = Principal(Role.patient, patient_id)
            for _ in range(share):
                await booking.book(patient, doctor_id, next(starts))

        for done in range(0, count, 100):
            batch = min(100, count - done)
            shares = [batch // concurrency + (n < batch % concurrency) for n in range(concurrency)]
            await asyncio.gather(*(client(p, s) for p, s in zip(patients, shares, strict=True)))
            await relay.flush(leftovers=False)

    await book_some(WARM_UP)
    began, cpu = time.perf_counter(), time.process_time()
    await book_some(bookings)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - began
    print(
        f"booking service: {bookings} bookings at concurrency {concurrency}: "
        f"{cpu / bookings * 1000:.2f} ms of CPU per booking, {bookings / wall:.0f} bookings/s"
    )
    await redis.aclose()
    await engine.dispose()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(
            args[0] if args else "mysql+aiomysql://root:@127.0.0.1:3306/bench_booking",
            args[1] if len(args) > 1 else "redis://127.0.0.1:6379/9",
            int(args[2]) if len(args) > 2 else 1200,
            int(args[3]) if len(args) > 3 else 20,
        )
    )
