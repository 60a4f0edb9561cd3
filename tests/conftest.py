from __future__ import annotations

import asyncio
import contextlib
import email.generator
import email.utils
import fcntl
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio as aioredis
from playwright import sync_api
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from hub import db
from hub.app import create_app
from hub.auth import Passwords, Principal, Role, Tokens
from hub.config import Settings


def _worker_urls() -> None:
    """Under pytest-xdist (`-n 2`), each worker its own MariaDB database (`<name>_gw0`, ...)
    and Redis database (the given number, less the worker's): two workers never see each
    other's rows, keys or flushes. The Redis Cluster has one database: the tests on it run
    one at a time (`_apart_from_the_other_worker`). Set before any test module reads them."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    n = int(worker.removeprefix("gw"))
    if url := os.environ.get("HUB_TEST_DATABASE_URL"):
        parsed = make_url(url)
        os.environ["HUB_TEST_DATABASE_URL"] = parsed.set(
            database=f"{parsed.database}_{worker}"
        ).render_as_string(hide_password=False)
    if url := os.environ.get("HUB_TEST_REDIS_URL"):
        parsed_redis = urlsplit(url)
        number = int(parsed_redis.path.strip("/") or 0) - n
        assert number >= 0, f"HUB_TEST_REDIS_URL's database leaves none for worker {worker}"
        os.environ["HUB_TEST_REDIS_URL"] = parsed_redis._replace(path=f"/{number}").geturl()


_worker_urls()
MARIADB_URL = os.environ.get("HUB_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL")
CLUSTER_URL = os.environ.get("HUB_TEST_REDIS_CLUSTER_URL")  # any node of a Redis Cluster
REDIS_KINDS = [*(["redis"] if REDIS_URL else []), *(["cluster"] if CLUSTER_URL else [])]
BACKENDS = ["embedded", *(["mariadb"] if MARIADB_URL and REDIS_URL else [])]
SECRET = "test-secret-key-that-is-long-enough-for-hs256-000"
PASSWORD = "correct horse battery"
CHROMIUM = os.environ.get("HUB_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TABLES = (
    "notifications",
    "waitlist_offers",
    "waitlist_entries",
    "outbox",
    "appointment_events",
    "idempotency_keys",
    "occupancy",
    "appointments",
    "visit_types",
    "schedules",
    "admins",
    "staff",
    "refresh_tokens",
    "audit_events",
    "doctors",
    "patients",
)


def test_settings(database_url: str, redis_url: str | None, tmp: Path) -> Settings:
    return Settings(
        database_url=database_url,
        secret_key=SECRET,
        redis_url=redis_url,
        data_dir=tmp,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        # Every test client calls from one address: tests/test_throttle.py sets its caps.
        max_address_holds=0,
        registrations=0,
        approve_doctors=False,  # the original design's open registration; vetting has its tests
    )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "hub.sqlite3"
    db.migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def mariadb_schema() -> str:
    assert MARIADB_URL is not None
    name = make_url(MARIADB_URL).database
    server = create_engine(make_url(db.sync_url(MARIADB_URL)).set(database=""))
    with server.begin() as conn:  # a worker's own database, made the first time
        conn.execute(
            text(
                f"CREATE DATABASE IF NOT EXISTS `{name}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        )
    server.dispose()
    engine = create_engine(db.sync_url(MARIADB_URL))
    with engine.begin() as conn:  # a failure here is a failure, never a skip
        conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for table in conn.execute(text("SHOW TABLES")).scalars().all():
            conn.execute(text(f"DROP TABLE `{table}`"))
    engine.dispose()
    db.migrate(MARIADB_URL)
    return MARIADB_URL


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    if backend == "embedded":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copy(template, tmp_path / "hub.sqlite3")
        yield test_settings(f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}", None, tmp_path)
        return
    url: str = request.getfixturevalue("mariadb_schema")
    assert REDIS_URL is not None
    reset_mariadb(url)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    yield test_settings(url, REDIS_URL, tmp_path)


def mail_off_the_global_random(patch: pytest.MonkeyPatch) -> None:
    """Give the stdlib's email package (Message-IDs, MIME boundaries) a generator of its own
    instead of the global `random`, for a Hypothesis test against a hub serving in a thread
    of this process. Hypothesis fails a test case if the global `random` moves while a
    strategy draws (a HypothesisDeprecationWarning, an error here), and the hub's sender
    moves it with every message it writes (a sign-up's mail, within a second); a replay
    then passes, and Hypothesis reports "unreliable results". The draws and the sends
    overlap more, the slower the machine (coverage, load)."""
    for module in (email.utils, email.generator):
        patch.setattr(module, "random", random.Random())


def async_redis(kind: str) -> aioredis.Redis | aioredis.RedisCluster:
    """An asyncio client of the test Redis ("redis") or of the test Redis Cluster ("cluster")."""
    if kind == "cluster":
        assert CLUSTER_URL is not None
        return aioredis.RedisCluster.from_url(CLUSTER_URL)
    assert REDIS_URL is not None
    return aioredis.Redis.from_url(REDIS_URL)


def on_cluster(settings: Settings) -> Settings:
    """`settings` with the test Redis Cluster in place of the single Redis, emptied first."""
    assert CLUSTER_URL is not None
    client = redis.RedisCluster.from_url(CLUSTER_URL)
    client.flushdb()  # on every primary
    client.close()
    return replace(settings, redis_url=CLUSTER_URL, redis_cluster=True)


def reset_mariadb(url: str) -> None:
    engine = create_engine(db.sync_url(url))
    with engine.begin() as conn:
        conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text("DELETE FROM specializations WHERE id > 12"))
    engine.dispose()


@pytest.fixture
def raw(settings: Settings) -> Iterator[Engine]:
    """A blocking engine on the test database, for SQL that bypasses the hub."""
    engine = create_engine(db.sync_url(settings.database_url))
    yield engine
    engine.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def next_workday(days_ahead: int = 7) -> date:
    day = datetime.now(UTC).date() + timedelta(days=days_ahead)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def slot(hour: int = 10, days_ahead: int = 7) -> datetime:
    """A start the original rule offers: a future weekday, on the hour, 09-16 UTC."""
    return datetime.combine(next_workday(days_ahead), time(hour), tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Actor:
    role: str
    id: int
    email: str
    token: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    """Makes accounts through the API (admins through the service, as the CLI does)."""

    client: TestClient
    settings: Settings
    raw: Engine
    serial: count[int] = field(default_factory=lambda: count(1))

    def person(self, **fields: Any) -> dict[str, Any]:
        n = next(self.serial)
        return {
            "first_name": f"First{n}",
            "last_name": f"Last{n}",
            "date_of_birth": "1980-05-17",
            "gender": "female",
            "email": f"person{n}@example.org",
            "phone": "+44 20 7946 0000",
            "address": f"{n} High Street",
            "password": PASSWORD,
            **fields,
        }

    def login(self, role: str, email: str, password: str = PASSWORD) -> str:
        answer = self.client.post(
            f"{Role(role).path}/login", data={"username": email, "password": password}
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def _actor(self, role: str, created: dict[str, Any]) -> Actor:
        token = self.login(role, created["email"])
        return Actor(role, created["id"], created["email"], token, bearer(token))

    def patient(self, **fields: Any) -> Actor:
        answer = self.client.post("/patients/", json=self.person(**fields))
        assert answer.status_code == 201, answer.text
        return self._actor("patient", answer.json())

    def doctor(self, specialization_id: int = 1, **fields: Any) -> Actor:
        body = self.person(specialization_id=specialization_id, **fields)
        answer = self.client.post("/doctors/", json=body)
        assert answer.status_code == 201, answer.text
        return self._actor("doctor", answer.json())

    def allow_repeat_bookings(self, doctor: Actor) -> None:
        """Turn off the doctor's one-upcoming-appointment-per-patient rule."""
        hours = self.client.get(f"/doctors/{doctor.id}/availability", headers=doctor.headers)
        body = {**hours.json(), "policy": {**hours.json()["policy"], "one_per_patient": False}}
        answer = self.client.put(
            f"/doctors/{doctor.id}/availability", json=body, headers=doctor.headers
        )
        assert answer.status_code == 200, answer.text

    def admin(self) -> Actor:
        email = f"admin{next(self.serial)}@example.org"
        passwords = Passwords(self.settings.argon2_time_cost, self.settings.argon2_memory_kib)
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.raw.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO admins (email, password_hash, created_at, updated_at) "
                    "VALUES (:email, :hash, :now, :now)"
                ),
                {"email": email, "hash": asyncio.run(passwords.hash(PASSWORD)), "now": now},
            )
            admin_id = conn.execute(
                text("SELECT id FROM admins WHERE email = :email"), {"email": email}
            ).scalar_one()
        token = self.login("admin", email)
        return Actor("admin", admin_id, email, token, bearer(token))

    def staff(self) -> Actor:
        """A front-desk account, created by an admin through the API."""
        email = f"staff{next(self.serial)}@example.org"
        body = {"first_name": "Desk", "last_name": "Clerk", "email": email, "password": PASSWORD}
        created = self.client.post("/staff/", json=body, headers=self.admin().headers)
        assert created.status_code == 201, created.text
        token = self.login("staff", email)
        return Actor("staff", int(created.json()["id"]), email, token, bearer(token))

    def book(self, patient: Actor, doctor: Actor, start: datetime) -> dict[str, Any]:
        answer = self.client.post(
            "/appointments/",
            json={"doctor_id": doctor.id, "scheduled_datetime": iso(start)},
            headers=patient.headers,
        )
        assert answer.status_code == 201, answer.text
        return dict(answer.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(client: TestClient, settings: Settings, raw: Engine) -> World:
    return World(client, settings, raw)


@pytest.fixture(autouse=True)
def _apart_from_the_other_worker(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under pytest-xdist, what two workers must not do at once. A test marked `exclusive`
    (it stops, pauses or restarts the shared MariaDB or Redis) runs while no other test
    does: it holds a file lock exclusively that every other test holds shared, and a gate
    taken first gives it precedence, so the other worker's next tests wait instead of
    starving it. The tests on the Redis Cluster (it has one database, which they empty)
    take turns on a lock of their own."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # one process: nothing runs beside a test
        yield
        return
    exclusive = request.node.get_closest_marker("exclusive") is not None
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    base = Path(tempfile.gettempdir()) / f"hub-tests-{run}"
    with ExitStack() as held:
        gate, lock, cluster = (
            held.enter_context(open(f"{base}.{name}", "a")) for name in ("gate", "lock", "cluster")
        )
        fcntl.flock(gate, mode)
        fcntl.flock(lock, mode)
        fcntl.flock(gate, fcntl.LOCK_UN)
        if "cluster" in request.node.nodeid:
            fcntl.flock(cluster, fcntl.LOCK_EX)
        yield  # the locks go with their files


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per backend, so a CI log shows that the MariaDB + Redis run happened."""
    tally: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") not in ("call", "setup"):
                continue
            for name in BACKENDS:
                if f"[{name}" in report.nodeid or f"-{name}]" in report.nodeid:
                    tally.setdefault(name, {}).setdefault(outcome, 0)
                    tally[name][outcome] += 1
    for name in BACKENDS:
        counts = ", ".join(f"{n} {o}" for o, n in sorted(tally.get(name, {}).items()))
        terminalreporter.write_line(f"backend {name}: {counts or 'no tests'}")


def insert_patients(raw: Engine, count: int, tag: str) -> list[int]:
    """Insert `count` patients with raw SQL (no argon2), returning their ids in order."""
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {"email": f"{tag}{n}@example.org", "now": now, "hash": "$argon2id$unused"}
        for n in range(count)
    ]
    with raw.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO patients (first_name, last_name, date_of_birth, gender, email, "
                "phone, password_hash, created_at, updated_at) VALUES ('Crowd', 'Member', "
                "'1990-01-01', 'other', :email, '+4420794600', :hash, :now, :now)"
            ),
            rows,
        )
        ids = list(
            conn.execute(
                text("SELECT id FROM patients WHERE email LIKE :tag ORDER BY id"),
                {"tag": f"{tag}%"},
            ).scalars()
        )
    assert len(ids) == count
    return ids


# Browser tests drive Debian's Chromium through Playwright (no browser download).
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (set HUB_TEST_CHROMIUM)"
        if os.environ.get("HUB_TEST_DATABASE_URL"):  # CI installs it: missing is a failure
            pytest.fail(message)
        pytest.skip(message)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def patient_token(settings: Settings) -> str:
    """A token of a new patient inserted with raw SQL (a token of an account that does not
    exist is refused)."""
    engine = create_engine(db.sync_url(settings.database_url))
    try:
        (patient_id,) = insert_patients(engine, 1, f"token-{uuid.uuid4().hex}-")
    finally:
        engine.dispose()
    return Tokens(settings).issue(Principal(Role.patient, patient_id)).access_token


@contextlib.contextmanager
def statements_about(engine: AsyncEngine, word: str = "") -> Iterator[list[str]]:
    """The statements `engine` sends while inside that name `word` (a table, say; every
    statement when empty)."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if word in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)
