"""A backup that restores: the README's mariadb-dump of a database the hub has worked on,
restored into a fresh database, serves the same appointments, availability and waitlist
(with Redis emptied, as it holds nothing that must survive), keeps its occupancy triggers,
and is at the newest migration already. MariaDB only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import IntegrityError
from starlette.testclient import TestClient

from hub import db
from hub.app import create_app
from hub.config import Settings
from tests.conftest import Actor, World, iso, next_workday, slot

DUMP_FLAGS = ("--single-transaction", "--routines", "--triggers")  # as the README says
TRIGGERS = {"occupancy_on_insert", "occupancy_on_update"}  # migration 0009
# What the hub writes about a scenario and never changes once it is over (the audit trail and
# the outbox's publishing marks go on being written by the running hub).
SETTLED = ("appointments", "occupancy", "schedules", "waitlist_entries", "idempotency_keys")


def test_a_dump_restored_into_a_fresh_database_serves_the_same_appointments(
    backend: str, world: World, tmp_path: Path
) -> None:
    if backend == "embedded":
        pytest.skip("the embedded SQLite file is backed up by copying it; this is MariaDB's")
    for tool in ("mariadb-dump", "mariadb"):
        if shutil.which(tool) is None:  # CI has the MariaDB client with the server
            pytest.fail(f"{tool} is not installed (Debian: mariadb-client)")
    people, day = _scenario(world)
    before = _seen(world.client, people, day)
    source = world.settings.database_url
    options = _option_file(source, tmp_path)
    dump = tmp_path / "hub.sql"
    with dump.open("wb") as out:
        _run(["mariadb-dump", f"--defaults-extra-file={options}", *DUMP_FLAGS, _name(source)], out)
    # Redis is not backed up: what it holds (holds, throttle counts, pub/sub) may be lost.
    lost = redis.Redis.from_url(str(world.settings.redis_url))
    lost.flushdb()
    lost.close()
    with _fresh_database(source) as restored, dump.open("rb") as sql:
        _run(["mariadb", f"--defaults-extra-file={options}", _name(restored)], None, stdin=sql)
        engine = create_engine(db.sync_url(restored))
        try:
            assert _schema(engine) == _schema(world.raw)
            assert _schema(engine)["triggers"].keys() == TRIGGERS
            assert _counts(engine) == _counts(world.raw)
            settings = replace(world.settings, database_url=restored)
            with TestClient(create_app(settings)) as client:
                assert _seen(client, people, day) == before
                _books_on(client, people, day)
            _refuses_overlap_by_raw_sql(engine, people, day)
            schema = _schema(engine)
            migrated = _migrate(settings)
            assert f"schema at revision {db.head_revision(restored)}" in migrated
            assert _schema(engine) == schema  # nothing to do: the restored schema is at head
        finally:
            engine.dispose()


def _scenario(world: World) -> tuple[dict[str, Actor], str]:
    # Two doctors (one with hours of her own), four patients, five bookings (one with an
    # Idempotency-Key), one cancelled, one rescheduled, one patient on a waitlist.
    day = next_workday().isoformat()
    hours = {
        "timezone": "Europe/Berlin",
        "weekly": {d: [{"start": "08:00", "end": "14:00"}] for d in _WEEKDAYS},
        "slot_minutes": 30,
        "notice_minutes": 60,
        "policy": {"one_per_patient": False},
    }
    ada, bob = world.doctor(), world.doctor()
    set_hours = world.client.put(f"/doctors/{ada.id}/availability", json=hours, headers=ada.headers)
    assert set_hours.status_code == 200, set_hours.text
    p1, p2, p3, p4 = (world.patient() for _ in range(4))
    free = _free(world.client, ada, day)
    world.book(p1, ada, free[0])
    cancelled = world.book(p2, ada, free[1])
    moved = world.book(p3, ada, free[2])
    world.book(p1, bob, slot(11))
    keyed = world.client.post(
        "/appointments/",
        json={"doctor_id": bob.id, "scheduled_datetime": iso(slot(10))},
        headers={**p2.headers, "Idempotency-Key": "backup-round-trip"},
    )
    assert keyed.status_code == 201, keyed.text
    answer = world.client.put(
        f"/appointments/{cancelled['id']}/cancel", json={"reason": "away"}, headers=p2.headers
    )
    assert answer.status_code == 200, answer.text
    answer = world.client.put(
        f"/appointments/{moved['id']}/reschedule",
        json={"scheduled_datetime": iso(free[5])},
        headers=p3.headers,
    )
    assert answer.status_code == 200, answer.text
    # Waiting for Bob at 10:00, which is booked: in line, no offer.
    wait = {"doctor_id": bob.id, "from": day, "to": day, "times": [_at(10)]}
    joined = world.client.post("/waitlist", json=wait, headers=p4.headers)
    assert joined.status_code == 201, joined.text
    assert (joined.json()["status"], joined.json()["offer"]) == ("waiting", None)
    people = {"ada": ada, "bob": bob, "p1": p1, "p2": p2, "p3": p3, "p4": p4}
    return {**people, "entry": replace(p4, id=joined.json()["id"])}, day


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


def _at(hour: int) -> dict[str, str]:
    return {"start": f"{hour:02}:00", "end": f"{hour + 1:02}:00"}


def _free(client: TestClient, doctor: Actor, day: str) -> list[datetime]:
    answer = client.get(f"/appointments/doctor/{doctor.id}/available-slots", params={"date": day})
    assert answer.status_code == 200, answer.text
    return [datetime.fromisoformat(s) for s in answer.json()["slots"]]


def _seen(client: TestClient, people: dict[str, Actor], day: str) -> dict[str, Any]:
    """Everything the scenario left, as the REST API shows it to the people in it."""
    seen: dict[str, Any] = {}

    def get(name: str, path: str, who: Actor | None = None, **params: str) -> None:
        answer = client.get(path, params=params, headers=who.headers if who else {})
        assert answer.status_code == 200, (path, answer.text)
        seen[name] = answer.json()

    for key in ("p1", "p2", "p3", "p4"):
        get(f"{key} appointments", f"/appointments/patient/{people[key].id}", people[key])
    for key in ("ada", "bob"):
        doctor = people[key]
        get(f"{key} appointments", f"/appointments/doctor/{doctor.id}", doctor)
        get(f"{key} hours", f"/doctors/{doctor.id}/availability", doctor)
        get(f"{key} slots", f"/doctors/{doctor.id}/slots", None, **{"from": day, "to": day})
        get(f"{key} free", f"/appointments/doctor/{doctor.id}/available-slots", None, date=day)
    entry = people["entry"]
    get("waitlist", f"/waitlist/{entry.id}", entry)
    for appointment in seen["ada appointments"]:
        path = f"/appointments/{appointment['id']}/history"
        get(f"history {appointment['id']}", path, people["ada"])
    statuses = sorted(a["status"] for a in seen["ada appointments"] + seen["bob appointments"])
    assert statuses == ["cancelled", "cancelled", *["scheduled"] * 4], statuses
    return seen


def _books_on(client: TestClient, people: dict[str, Actor], day: str) -> None:
    # The restored hub goes on: a replayed key answers the booking that committed before the
    # dump, a booked slot is refused, a free one is booked.
    bob, p2, p4 = people["bob"], people["p2"], people["p4"]
    replayed = client.post(
        "/appointments/",
        json={"doctor_id": bob.id, "scheduled_datetime": iso(slot(10))},
        headers={**p2.headers, "Idempotency-Key": "backup-round-trip"},
    )
    assert replayed.status_code == 201, replayed.text
    original = client.get(f"/appointments/patient/{p2.id}", headers=p2.headers).json()
    assert replayed.json()["id"] in {a["id"] for a in original}
    body = {"doctor_id": bob.id, "scheduled_datetime": iso(slot(11))}
    taken = client.post("/appointments/", json=body, headers=p4.headers)
    assert (taken.status_code, taken.json()["error"]) == (409, "slot_taken")
    body = {"doctor_id": bob.id, "scheduled_datetime": iso(slot(14))}
    booked = client.post("/appointments/", json=body, headers=p4.headers)
    assert booked.status_code == 201, booked.text


def _refuses_overlap_by_raw_sql(engine: Engine, people: dict[str, Actor], day: str) -> None:
    # The restored triggers still write occupancy: 15 minutes into Ada's first appointment
    # is refused by uq_occupancy_doctor_unit, whoever inserts it.
    with engine.connect() as conn:
        first = conn.execute(
            text("SELECT MIN(start_at) FROM appointments WHERE doctor_id = :d AND active = 1"),
            {"d": people["ada"].id},
        ).scalar_one()
    start = first + timedelta(minutes=15)
    now = datetime.now(UTC).replace(tzinfo=None)
    row = {"doctor": people["ada"].id, "patient": people["p4"].id, "now": now}
    with pytest.raises(IntegrityError, match="uq_occupancy_doctor_unit"), engine.begin() as conn:
        conn.execute(_INSERT, {**row, "start": start, "end": start + timedelta(minutes=30)})
    with engine.begin() as conn:  # and a free time gets its units
        late = datetime.fromisoformat(f"{day}T20:00:00")
        conn.execute(_INSERT, {**row, "start": late, "end": late + timedelta(minutes=30)})
        units = conn.execute(
            text(
                "SELECT COUNT(*) FROM occupancy o JOIN appointments a ON a.id = o.appointment_id "
                "WHERE a.start_at = :late AND a.doctor_id = :d"
            ),
            {"late": late, "d": people["ada"].id},
        ).scalar_one()
    assert units == 6


_INSERT = text(
    "INSERT INTO appointments (doctor_id, patient_id, start_at, end_at, status, "
    "created_at, updated_at) VALUES (:doctor, :patient, :start, :end, 'scheduled', :now, :now)"
)


def _schema(engine: Engine) -> dict[str, dict[str, str]]:
    """Every table's CREATE statement (but its next AUTO_INCREMENT) and every trigger's."""
    with engine.connect() as conn:
        names = conn.execute(text("SHOW TABLES")).scalars().all()
        tables = {
            name: re.sub(
                r" AUTO_INCREMENT=\d+",
                "",
                conn.execute(text(f"SHOW CREATE TABLE `{name}`")).one()[1],
            )
            for name in names
        }
        triggers = conn.execute(
            text(
                "SELECT TRIGGER_NAME, CONCAT_WS(' ', ACTION_TIMING, EVENT_MANIPULATION, "
                "EVENT_OBJECT_TABLE, ACTION_STATEMENT) FROM information_schema.TRIGGERS "
                "WHERE TRIGGER_SCHEMA = DATABASE()"
            )
        ).all()
        routines = conn.execute(
            text(
                "SELECT ROUTINE_NAME, ROUTINE_DEFINITION FROM information_schema.ROUTINES "
                "WHERE ROUTINE_SCHEMA = DATABASE()"
            )
        ).all()
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    return {
        "tables": tables,
        "triggers": {name: body for name, body in triggers},
        "routines": {name: body for name, body in routines},
        "revision": {"alembic_version": revision},
    }


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in SETTLED}


def _name(database_url: str) -> str:
    name = make_url(database_url).database
    assert name, database_url
    return name


def _option_file(database_url: str, tmp: Path) -> Path:
    # The server and account of the URL for the MariaDB client tools, in an option file (mode
    # 0600) so that no password is on a command line. protocol=tcp as the hub connects.
    url = make_url(database_url)
    lines = ["[client]", f"host={url.host or '127.0.0.1'}", f"port={url.port or 3306}"]
    lines += ["protocol=tcp", f"user={url.username or 'root'}"]
    if url.password is not None:
        secret = str(url.password).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'password="{secret}"')
    path = tmp / "client.cnf"
    path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(command: list[str], out: Any, stdin: Any = None) -> None:
    done = subprocess.run(
        command, stdin=stdin, stdout=out, stderr=subprocess.PIPE, timeout=120, check=False
    )
    assert done.returncode == 0, (command[0], done.stderr.decode(errors="replace"))


@contextmanager
def _fresh_database(database_url: str) -> Iterator[str]:
    """A new empty database on the same server, with the source's character set and
    collation; its URL. Dropped after."""
    url = make_url(database_url)
    name = f"{_name(database_url)}_restore_{uuid.uuid4().hex[:8]}"
    server = create_engine(db.sync_url(database_url))
    try:
        with server.begin() as conn:
            charset, collation = conn.execute(
                text(
                    "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                    "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()"
                )
            ).one()
            conn.execute(
                text(f"CREATE DATABASE `{name}` CHARACTER SET {charset} COLLATE {collation}")
            )
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with server.begin() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        server.dispose()


def _migrate(settings: Settings) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    environ |= {"HUB_DATABASE_URL": settings.database_url, "HUB_SECRET_KEY": settings.secret_key}
    environ |= {"HUB_DATA_DIR": str(settings.data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "hub", "migrate"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
