"""End to end over /ws with real servers: 50 viewers on two `python -m hub serve` processes see
every change made through either, in order; a viewer that reconnects with `since` gets what it
missed (changes to one slot collapsed, as documented), or a snapshot once that was pruned; an
event a dead process committed but never published reaches the viewers through the live
processes' relays within 5 s; a reader that stops reading is closed with 1013 while a fast one
gets thousands of events in order, and the server's memory stays bounded; a snapshot comes
before the events after it; a viewer further behind than the per-connection queue holds, but
within what is kept, resyncs. Counts, versions, times and RSS are printed (run with -s);
timeouts are deadlines, not measurements."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hub import events
from hub.auth import Principal, Role, Tokens
from hub.config import Settings
from hub.db import create_engine, session_factory
from hub.events import KEEP
from hub.models import Appointment
from hub.ws import MAX_PENDING
from tests.conftest import CLUSTER_URL, PASSWORD, insert_patients, iso, next_workday, on_cluster
from tests.server import hub_processes, run_server

VIEWERS = 50
WINDOW_DAYS = 14  # the viewers' window: from next_workday(7), 14 local dates
RELAY_DEADLINE = 5.0  # seconds for an unpublished event to reach the viewers
SLOW_EVENTS = max(4000, 3 * MAX_PENDING)  # distinct slot events for the slow-reader test
PREFILL = 5  # month-long snapshots the slow reader asks for and never reads
STREAM_EVENTS = 240  # holds (each announced at once) streaming while viewers re-watch
STREAM_VIEWERS = 4
HOLDERS = 6  # holds in flight at a time
BEHIND = min(MAX_PENDING + 100, KEEP)  # missed: more than the queue holds, no more than kept
RSS_GROWTH_MB = 200
HOARDED = 60  # month-long snapshots asked for by a client that reads nothing
HOARD_GROWTH_MB = 40  # what they may cost the hub: the queue's byte bound and its buffers
SERIAL = count(1)


# -- servers -------------------------------------------------------------------------------


@contextmanager
def hubs(settings: Settings, backend: str, tmp: Path, n: int) -> Iterator[list[tuple[str, int]]]:
    """`n` hubs as (base URL, pid): real `python -m hub serve` processes on MariaDB + Redis,
    or (embedded, n == 1) uvicorn in a thread of this process."""
    if backend == "embedded":
        assert n == 1
        with run_server(settings) as url:
            yield [(url, os.getpid())]
        return
    with hub_processes(settings, tmp, n) as started:
        yield [(url, process.pid) for url, process in started]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


# -- accounts and data -----------------------------------------------------------------------


def token(settings: Settings, role: Role, id_: int) -> str:
    return Tokens(settings).issue(Principal(role, id_)).access_token


def bearer(settings: Settings, id_: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, Role.patient, id_)}"}


async def new_doctor(client: httpx.AsyncClient, url: str) -> int:
    """A doctor registered through the API (default hours: Mon-Fri 09-17 UTC, 1 h slots)."""
    n = next(SERIAL)
    body = {
        "first_name": "Dana",
        "last_name": f"Watched{n}",
        "date_of_birth": "1970-02-23",
        "gender": "female",
        "email": f"doctor{n}-{os.getpid()}@example.org",
        "phone": "+44 20 7946 0000",
        "address": "1 High Street",
        "password": PASSWORD,
        "specialization_id": 1,
    }
    answer = await client.post(f"{url}/doctors/", json=body)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def offered_starts(n: int) -> list[datetime]:
    """`n` starts the default hours offer: weekdays from next_workday(7), on the hour, 09-16."""
    starts: list[datetime] = []
    day = next_workday(7)
    while len(starts) < n:
        if day.weekday() < 5:
            starts.extend(datetime.combine(day, clock(hour), tzinfo=UTC) for hour in range(9, 17))
        day += timedelta(days=1)
    return starts[:n]


def window() -> tuple[str, str]:
    first = next_workday(7)
    return first.isoformat(), (first + timedelta(days=WINDOW_DAYS - 1)).isoformat()


def at(text_: str) -> datetime:
    return datetime.fromisoformat(text_.replace("Z", "+00:00")).astimezone(UTC)


def database_states(raw: Engine, doctor_id: int, starts: set[datetime]) -> dict[datetime, str]:
    """What the database says of each start: booked iff an active appointment row exists."""
    with raw.connect() as conn:
        rows = conn.execute(
            text("SELECT start_at FROM appointments WHERE doctor_id = :d AND active IS NOT NULL"),
            {"d": doctor_id},
        ).scalars()
        booked = {row.replace(tzinfo=UTC) for row in rows}
    return {start: "booked" if start in booked else "free" for start in starts}


def database_version(raw: Engine, doctor_id: int) -> int:
    with raw.connect() as conn:
        return int(
            conn.execute(
                text("SELECT version FROM schedules WHERE doctor_id = :d"), {"d": doctor_id}
            ).scalar_one()
        )


async def rest_states(client: httpx.AsyncClient, url: str, doctor_id: int) -> dict[datetime, str]:
    first, last = window()
    answer = await client.get(
        f"{url}/doctors/{doctor_id}/slots", params={"from": first, "to": last}
    )
    assert answer.status_code == 200, answer.text
    return {at(slot["start"]): slot["state"] for slot in answer.json()["slots"]}


# -- viewers ---------------------------------------------------------------------------------


class Viewer:
    """One /ws connection watching one doctor; keeps the slot states it was told."""

    def __init__(self, ws: ClientConnection, doctor_id: int) -> None:
        self.ws = ws
        self.doctor_id = doctor_id
        self.version: int | None = None
        self.states: dict[datetime, str] = {}
        self.snapshots: list[dict[str, Any]] = []
        self.slots: list[dict[str, Any]] = []  # slot events, in arrival order
        self.resynced: list[dict[str, Any]] = []
        self.other: list[dict[str, Any]] = []
        self.log: list[tuple[str, int]] = []  # (snapshot | slot | resynced, version) in order

    def apply(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind in ("snapshot", "slot", "resynced"):
            self.log.append((kind, int(message["version"])))
        if kind == "snapshot":
            self.snapshots.append(message)
            self.version = int(message["version"])
            self.states = {at(slot["start"]): slot["state"] for slot in message["slots"]}
        elif kind == "slot":
            assert message["doctor_id"] == self.doctor_id, message
            self.slots.append(message)
            self.version = int(message["version"])
            self.states[at(message["start"])] = message["state"]
        elif kind == "resynced":
            self.resynced.append(message)
            self.version = int(message["version"])
        else:
            self.other.append(message)

    async def read(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await self.ws.recv())
        self.apply(message)
        return message

    async def until(self, kind: str, seconds: float = 15) -> dict[str, Any]:
        async with asyncio.timeout(seconds):
            while (message := await self.read())["type"] != kind:
                pass
        return message

    async def until_version(self, version: int, seconds: float = 15) -> None:
        async with asyncio.timeout(seconds):
            while self.version is None or self.version < version:
                await self.read()

    def versions(self) -> list[int]:
        return [int(message["version"]) for message in self.slots]


def ws_url(url: str) -> str:
    return url.replace("http", "ws", 1) + "/ws"


async def watch(
    stack: AsyncExitStack,
    url: str,
    bearer_token: str,
    doctor_id: int,
    since: int | None = None,
    span: tuple[str, str] | None = None,
    **options: Any,
) -> Viewer:
    """Connect, authenticate and send watch (closed by `stack`); the reply is left unread."""
    ws = await connect(ws_url(url), open_timeout=20, **options)
    stack.push_async_callback(ws.close)
    await ws.send(json.dumps({"type": "auth", "token": bearer_token}))
    ready = json.loads(await asyncio.wait_for(ws.recv(), 20))
    assert ready["type"] == "ready", ready
    first, last = span or window()
    command: dict[str, Any] = {"type": "watch", "doctor_id": doctor_id, "from": first, "to": last}
    if since is not None:
        command["since"] = since
    await ws.send(json.dumps(command))
    return Viewer(ws, doctor_id)


# -- changes through REST --------------------------------------------------------------------


async def changes(
    client: httpx.AsyncClient,
    urls: list[str],
    doctor_id: int,
    starts: list[datetime],
    patients: list[dict[str, str]],
) -> list[tuple[datetime, str]]:
    """Four changes per three starts and two patients, alternating between the two processes:
    book on A, hold on B, release on A, then cancel (even rounds) or book (odd) on B. Returns
    the (start, state) each change announces, in order."""
    a, b = urls[0], urls[-1]
    done: list[tuple[datetime, str]] = []
    for k in range(len(starts) // 3):
        one, two, three = starts[3 * k : 3 * k + 3]
        p, q = patients[2 * k], patients[2 * k + 1]
        booked = await client.post(
            f"{a}/appointments/",
            json={"doctor_id": doctor_id, "scheduled_datetime": iso(one)},
            headers=p,
        )
        assert booked.status_code == 201, booked.text
        done.append((one, "booked"))
        held = await client.post(
            f"{b}/appointments/holds",
            json={"doctor_id": doctor_id, "scheduled_datetime": iso(two)},
            headers=q,
        )
        assert held.status_code == 201, held.text
        done.append((two, "held"))
        released = await client.delete(
            f"{a}/appointments/holds/{held.json()['hold_id']}", headers=q
        )
        assert released.status_code == 204, released.text
        done.append((two, "free"))
        if k % 2 == 0:
            cancelled = await client.put(
                f"{b}/appointments/{booked.json()['id']}/cancel", json={}, headers=p
            )
            assert cancelled.status_code == 200, cancelled.text
            done.append((one, "free"))
        else:
            again = await client.post(
                f"{b}/appointments/",
                json={"doctor_id": doctor_id, "scheduled_datetime": iso(three)},
                headers=q,
            )
            assert again.status_code == 201, again.text
            done.append((three, "booked"))
    return done


async def unpublished(raw: Engine, seconds: float = 5) -> int:
    """Outbox rows not yet marked published, once none are left (or after `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        with raw.connect() as conn:
            left = int(
                conn.execute(
                    text("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
                ).scalar_one()
            )
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)


def announced(viewer: Viewer) -> list[tuple[datetime, str]]:
    return [(at(message["start"]), message["state"]) for message in viewer.slots]


def told(viewer: Viewer) -> list[tuple[datetime, str]]:
    """The changes a viewer was told, with what a `collapsed` event stands for spelled out:
    a slot's states the queue replaced before the viewer read them (a change another process
    published late arrives held back, then with the next one at once). Its versions say how
    many it covers."""
    story: list[tuple[datetime, str]] = []
    previous: int | None = None
    for message in viewer.slots:
        moment, version = at(message["start"]), int(message["version"])
        skipped = 0 if previous is None else version - previous - 1
        if message.get("collapsed") and skipped > 0:
            story.extend([(moment, "?")] * skipped)  # the states it replaced
        story.append((moment, message["state"]))
        previous = version
    return story


def same_story(got: list[tuple[datetime, str]], want: list[tuple[datetime, str]]) -> bool:
    """`got` (from told()) is `want`, where it says "?" for a replaced state of that slot."""
    return len(got) == len(want) and all(
        g == w or (g[0] == w[0] and g[1] == "?") for g, w in zip(got, want, strict=True)
    )


def mariadb_only(backend: str) -> None:
    if backend == "embedded":
        pytest.skip("needs two hub processes sharing MariaDB and Redis")


@asynccontextmanager
async def hub_sessions(settings: Settings) -> AsyncIterator[Any]:
    """A session factory on the test database, as a hub process would have."""
    engine = create_engine(settings.database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


# 1. 50 viewers on two processes, 20 changes alternating between them.


@pytest.mark.parametrize("redis_kind", ["redis", *(["cluster"] if CLUSTER_URL else [])])
async def test_fifty_viewers_on_two_processes_see_every_change_in_order(
    settings: Settings, raw: Engine, backend: str, tmp_path: Path, redis_kind: str
) -> None:
    mariadb_only(backend)
    if redis_kind == "cluster":  # holds on one shard, each doctor's channel on its own
        settings = on_cluster(settings)
    viewer_ids = insert_patients(raw, VIEWERS, "viewer")
    actors = [bearer(settings, pid) for pid in insert_patients(raw, 10, "actor")]
    starts = offered_starts(15)
    with hubs(settings, backend, tmp_path, 2) as servers:
        urls = [url for url, _ in servers]
        async with httpx.AsyncClient(timeout=30) as client, AsyncExitStack() as stack:
            doctor_id = await new_doctor(client, urls[0])
            started = time.perf_counter()
            viewers = list(
                await asyncio.gather(
                    *(
                        watch(stack, urls[n % 2], token(settings, Role.patient, pid), doctor_id)
                        for n, pid in enumerate(viewer_ids)
                    )
                )
            )
            await asyncio.gather(*(viewer.until("snapshot") for viewer in viewers))
            connected = time.perf_counter() - started
            base = {viewer.version for viewer in viewers}
            assert len(base) == 1, base
            (v0,) = base
            assert v0 is not None
            target = v0 + 20
            readers = [asyncio.create_task(viewer.until_version(target)) for viewer in viewers]
            started = time.perf_counter()
            try:
                done = await changes(client, urls, doctor_id, starts, actors)
            finally:
                outcome = await asyncio.gather(*readers, return_exceptions=True)
            delivered = time.perf_counter() - started
            rest = [await rest_states(client, url, doctor_id) for url in urls]
    assert len(done) == 20
    failures = [(n, repr(exc)) for n, exc in enumerate(outcome) if exc is not None]
    assert not failures, failures
    assert database_version(raw, doctor_id) == target
    truth = database_states(raw, doctor_id, set(viewers[0].states))
    assert all(state == "free" for start, state in truth.items() if start not in starts)
    assert rest[0] == rest[1] == truth
    collapsed = sum(1 for viewer in viewers for m in viewer.slots if m.get("collapsed"))
    for viewer in viewers:
        assert viewer.versions() == list(range(v0 + 1, target + 1))
        assert announced(viewer) == done
        assert viewer.states == truth
        assert not viewer.other and len(viewer.snapshots) == 1
    print(
        f"\n[{backend}, {redis_kind}] {VIEWERS} viewers (25+25 on 2 processes) connected and "
        f"snapshotted in {connected:.2f}s at version {v0}; 20 changes (REST, alternating) -> "
        f"every viewer got versions {v0 + 1}..{target} ({VIEWERS * 20} slot frames, "
        f"{collapsed} collapsed) in {delivered:.2f}s; "
        f"{sum(s == 'booked' for s in truth.values())} of {len(truth)} slots booked, "
        "equal in viewers, database and GET /slots on both processes"
    )


# 2. Reconnecting with since: the missed events then resynced, or a snapshot once pruned.


async def test_reconnect_with_since_replays_what_was_missed_or_snapshots(
    settings: Settings, raw: Engine, backend: str, tmp_path: Path
) -> None:
    mariadb_only(backend)
    watcher, late = insert_patients(raw, 2, "returning")
    actors = [bearer(settings, pid) for pid in insert_patients(raw, 12, "mover")]
    starts = offered_starts(18)
    with hubs(settings, backend, tmp_path, 2) as servers:
        urls = [url for url, _ in servers]
        async with httpx.AsyncClient(timeout=30) as client, hub_sessions(settings) as sessions:
            doctor_id = await new_doctor(client, urls[0])
            async with AsyncExitStack() as stack:
                viewer = await watch(
                    stack, urls[0], token(settings, Role.patient, watcher), doctor_id
                )
                await viewer.until("snapshot")
                warmup = await changes(client, urls, doctor_id, starts[:3], actors[:2])
                await viewer.until_version(int(viewer.snapshots[0]["version"]) + len(warmup))
                assert same_story(told(viewer), warmup)
            last = viewer.version
            assert last is not None
            missed = await changes(client, urls, doctor_id, starts[3:], actors[2:])
            assert len(missed) == 20
            async with AsyncExitStack() as stack:
                back = await watch(
                    stack, urls[1], token(settings, Role.patient, watcher), doctor_id, since=last
                )
                back.states, back.version = dict(viewer.states), last
                resynced = await back.until("resynced")
            assert not back.snapshots and not back.other
            assert resynced["version"] == last + 20 == database_version(raw, doctor_id)
            # No duplicate, nothing newer than the last change; a collapsed event keeps the
            # place of the one it replaced, so versions need not rise in arrival order.
            assert len(back.versions()) == len(set(back.versions()))
            assert max(back.versions()) == last + 20
            truth = database_states(raw, doctor_id, set(back.states))
            assert back.states == truth
            assert await rest_states(client, urls[1], doctor_id) == truth

            # Pruned: only the newest event is kept, so `last` can no longer be replayed.
            assert await unpublished(raw) == 0
            await events.prune(sessions, keep=1)
            with raw.connect() as conn:
                kept = conn.execute(
                    text("SELECT version FROM outbox WHERE doctor_id = :d"), {"d": doctor_id}
                ).scalars()
                kept_versions = sorted(kept)
            current = last + 20
            assert kept_versions == [current]
            async with AsyncExitStack() as stack:
                behind = await watch(
                    stack, urls[0], token(settings, Role.patient, late), doctor_id, since=last
                )
                snapshot = await behind.until("snapshot")
                level = await watch(
                    stack, urls[1], token(settings, Role.patient, late), doctor_id, since=current
                )
                level_reply = await level.until("resynced")
            assert not behind.slots and not behind.resynced
            assert snapshot["version"] == current
            assert behind.states == truth
            assert (level_reply["version"], level.slots, level.snapshots) == (current, [], [])
    collapsed = [int(m["version"]) for m in back.slots if m.get("collapsed")]
    print(
        f"\n[{backend}] reconnect on the other process with since={last}: {len(back.slots)} "
        f"of 20 missed events, versions {back.versions()} (collapsed {collapsed}), then "
        f"resynced at {resynced['version']}, states equal to the database; after "
        f"prune(keep=1) (kept versions {kept_versions}) since={last} -> snapshot at version "
        f"{snapshot['version']}, since={current} -> resynced with 0 events"
    )
    # The missed events, each once; as documented (README, test_ws), changes to one slot
    # still queued collapse into the newest in the place of the first, marked: a version is
    # missing only when a later collapsed event of its slot was sent.
    by_version = dict(enumerate(missed, start=last + 1))
    got = back.versions()
    assert len(got) == len(set(got)) and max(got) == last + 20
    uncollapsed = [int(m["version"]) for m in back.slots if not m.get("collapsed")]
    assert uncollapsed == sorted(uncollapsed)
    for message in back.slots:
        assert (at(message["start"]), message["state"]) == by_version[message["version"]]
    for version in sorted(set(by_version) - set(got)):
        start = by_version[version][0]
        assert any(
            m.get("collapsed") and m["version"] > version and at(m["start"]) == start
            for m in back.slots
        ), f"version {version} was neither sent nor collapsed into a later one"


# 3. A process died after commit, before publish: the live relays publish its change.


async def test_an_event_committed_but_never_published_reaches_viewers_within_5s(
    settings: Settings, raw: Engine, backend: str, tmp_path: Path
) -> None:
    mariadb_only(backend)
    owner, *others = insert_patients(raw, 6, "orphan")
    start = offered_starts(5)[4]
    with hubs(settings, backend, tmp_path, 2) as servers:
        urls = [url for url, _ in servers]
        async with (
            httpx.AsyncClient(timeout=30) as client,
            AsyncExitStack() as stack,
            hub_sessions(settings) as sessions,
        ):
            doctor_id = await new_doctor(client, urls[0])
            viewers = list(
                await asyncio.gather(
                    *(
                        watch(stack, urls[n % 2], token(settings, Role.patient, pid), doctor_id)
                        for n, pid in enumerate([owner, *others])
                    )
                )
            )
            await asyncio.gather(*(viewer.until("snapshot") for viewer in viewers))
            v0 = viewers[0].version
            assert v0 is not None
            # What a hub process does in its booking transaction; then it "dies": no flush.
            async with sessions.begin() as session:
                row = Appointment(
                    doctor_id=doctor_id,
                    patient_id=owner,
                    start_at=start,
                    end_at=start + timedelta(hours=1),
                )
                session.add(row)
                await session.flush()
                version = await events.record_slot(session, doctor_id, start, "booked")
                await events.record_appointment(session, row, "booked")
            committed = time.perf_counter()
            assert version == v0 + 1

            async def receive(viewer: Viewer) -> float:
                await viewer.until_version(version, seconds=RELAY_DEADLINE)
                if viewer is viewers[0]:  # the patient's own feed carries the appointment
                    async with asyncio.timeout(RELAY_DEADLINE):
                        while not viewer.other:
                            await viewer.read()
                return time.perf_counter() - committed

            waits = await asyncio.gather(*(receive(viewer) for viewer in viewers))
            rest = await rest_states(client, urls[1], doctor_id)
            left = await unpublished(raw)
    for viewer in viewers:
        assert announced(viewer) == [(start, "booked")]
        assert viewer.versions() == [version]
    feed = viewers[0].other
    assert [(m["type"], m["event"], m["patient_id"]) for m in feed] == [
        ("appointment", "booked", owner)
    ]
    assert left == 0
    assert rest[start] == "booked" == database_states(raw, doctor_id, {start})[start]
    print(
        f"\n[{backend}] an event committed and never flushed (version {version}) reached "
        f"{len(viewers)} viewers on 2 processes in {min(waits):.2f}-{max(waits):.2f}s "
        f"(deadline {RELAY_DEADLINE:.0f}s; the relays tick every 0.5s)"
    )


# 4. A reader that stops reading is closed with 1013; a fast one gets everything, in order.


async def five_minute_slots(
    client: httpx.AsyncClient, url: str, settings: Settings, doctor_id: int
) -> None:
    """Every day 00:00-24:00 UTC in 5-minute slots, no notice: 8,928 slots in 31 days."""
    day = [{"start": "00:00", "end": "24:00"}]
    names = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    hours = {
        "timezone": "UTC",
        "weekly": dict.fromkeys(names, day),
        "slot_minutes": 5,
        "notice_minutes": 0,
    }
    doctor = {"Authorization": f"Bearer {token(settings, Role.doctor, doctor_id)}"}
    put = await client.put(f"{url}/doctors/{doctor_id}/availability", json=hours, headers=doctor)
    assert put.status_code == 200, put.text


def month_window() -> dict[str, str]:
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    return {"from": tomorrow.isoformat(), "to": (tomorrow + timedelta(days=30)).isoformat()}


def small_socket(url: str) -> socket.socket:
    """A connected TCP socket with a tiny receive buffer: a reader that stops reading stalls
    the server's writes after a few KiB instead of after megabytes of kernel buffers."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return sock


def send_queue(server_port: int, client_port: int) -> int:
    """Bytes the server's end of one loopback connection holds unread by the client (the
    kernel's send queue, from /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(end.split(":")[1], 16) for end in fields[1:3])
        if (local, remote) == (server_port, client_port):
            return int(fields[4].split(":")[0], 16)
    return 0


async def until_stalled(server_port: int, client_port: int) -> int:
    """Wait until the server's send queue to a reader that stopped reading is past 1 MB and
    no longer grows (the pipe is full, the server's writes now wait); its size in bytes."""
    deadline = time.monotonic() + 30
    seen, steady = -1, 0
    while time.monotonic() < deadline and steady < 5:
        queued = send_queue(server_port, client_port)
        steady = steady + 1 if queued == seen and queued > 2**20 else 0
        seen = queued
        await asyncio.sleep(0.1)
    return seen


async def read_until_closed(viewer: Viewer, quiet: float = 5) -> int | str:
    """Read everything until the server closes: its close code (or how it failed to)."""
    try:
        while True:
            async with asyncio.timeout(quiet):
                await viewer.read()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else "no close frame"
    except TimeoutError:
        return f"still open, silent for {quiet:g} s"


def total(samples: list[Any], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def until_hoarding_ends(
    client: httpx.AsyncClient, url: str, pid: int, sent: int, seconds: float = 120
) -> tuple[str, float]:
    """Watch, through its /metrics, a hub serving a client that reads nothing: return once
    it has closed the session ("closed", whatever the code), or has dealt with all `sent`
    commands, answered or refused, and not closed it ("answered all": nothing more can fill
    its queue), or after `seconds` ("neither"); and the hub's RSS at that moment.
    The hub answers one command at a time at its own pace (a busy machine or coverage: a
    second or more a month-long snapshot), so no fixed sleep is long enough, and a client
    that read before the hub was done would drain the queue that is to overflow."""
    deadline = time.monotonic() + seconds
    while True:
        answer = await client.get(f"{url}/metrics")
        assert answer.status_code == 200, answer.text
        samples = [s for f in text_string_to_metric_families(answer.text) for s in f.samples]
        closed = total(samples, "hub_ws_closes_total")
        answered = total(samples, "hub_ws_command_duration_seconds_count", command="watch")
        refused = total(samples, "hub_errors_total", edge="ws", code="rate_limited")
        state = "closed" if closed else "answered all" if answered + refused >= sent else None
        if state is None and time.monotonic() > deadline:
            state = "neither"
        if state is not None:
            return state, rss_mb(pid)
        await asyncio.sleep(0.1)  # the hub's close waits 10 s at most for the client to read


async def write_slot_events(
    settings: Settings, doctor_id: int, starts: list[datetime], per_transaction: int = 1000
) -> None:
    """Record a slot event per start, `per_transaction` to a transaction, the way the services
    do; the hub's relay publishes them (nothing here flushes)."""
    async with hub_sessions(settings) as sessions:
        for chunk in range(0, len(starts), per_transaction):
            async with sessions.begin() as session:
                for start in starts[chunk : chunk + per_transaction]:
                    await events.record_slot(session, doctor_id, start, "held")


async def test_a_slow_reader_is_closed_with_1013_while_a_fast_one_gets_every_event(
    settings: Settings, raw: Engine, backend: str, tmp_path: Path
) -> None:
    fast_id, slow_id = insert_patients(raw, 2, "reader")
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    midnight = datetime.combine(tomorrow, clock(), tzinfo=UTC)
    starts = [midnight + timedelta(minutes=5 * n) for n in range(SLOW_EVENTS)]
    assert starts[-1] < midnight + timedelta(days=31)
    span = (tomorrow.isoformat(), tomorrow.isoformat())
    with hubs(settings, backend, tmp_path, 1) as servers:
        ((url, pid),) = servers
        async with httpx.AsyncClient(timeout=30) as client, AsyncExitStack() as stack:
            doctor_id = await new_doctor(client, url)
            await five_minute_slots(client, url, settings, doctor_id)
            offered = await client.get(f"{url}/doctors/{doctor_id}/slots", params=month_window())
            assert offered.status_code == 200, offered.text
            fast = await watch(
                stack, url, token(settings, Role.patient, fast_id), doctor_id, span=span
            )
            slow = await watch(
                stack,
                url,
                token(settings, Role.patient, slow_id),
                doctor_id,
                span=span,
                sock=(pipe := small_socket(url)),
                max_queue=1,
                max_size=2**23,
            )
            await fast.until("snapshot")
            await slow.until("snapshot")  # and from here on it reads nothing
            # Loopback TCP absorbs ~3 MB a reader never takes (the kernel grows the server's
            # send buffer to 4 MiB): fill that pipe with a few month-long snapshots (~1 MB
            # each), as a real network's much smaller pipe would fill with events.
            again = {"type": "watch", "doctor_id": doctor_id, **month_window()}
            for _ in range(PREFILL):
                await slow.ws.send(json.dumps(again))
            stalled = await until_stalled(int(url.rsplit(":", 1)[1]), pipe.getsockname()[1])
            v0 = fast.version
            assert v0 is not None and slow.version == v0
            before = rss_mb(pid)
            started = time.perf_counter()

            async def write() -> float:
                await write_slot_events(settings, doctor_id, starts)
                return time.perf_counter() - started

            writer = asyncio.create_task(write())
            closing: asyncio.Task[int | str] | None = None
            try:
                # Once the fast viewer has twice the queue bound, more than the bound were
                # queued for the slow one behind its full pipe: it reads at last, to the close.
                await fast.until_version(v0 + 2 * MAX_PENDING, seconds=60)
                closing = asyncio.create_task(read_until_closed(slow))
                await fast.until_version(v0 + SLOW_EVENTS, seconds=60)
                code = await closing
            finally:
                await asyncio.wait([writer, *([closing] if closing else [])])
            delivered = time.perf_counter() - started
            written = writer.result()
            after = rss_mb(pid)
    got = fast.versions()
    slow_versions = slow.versions()
    print(
        f"\n[{backend}] {SLOW_EVENTS} slot events ({len(offered.json()['slots'])} 5-minute slots "
        f"offered over 31 days) written in {written:.2f}s; the fast viewer got {len(got)} "
        f"(versions {got[0] if got else '-'}..{got[-1] if got else '-'}) in {delivered:.2f}s; "
        f"the slow one, reading only now, got {len(slow_versions)} (up to version "
        f"{slow_versions[-1] if slow_versions else '-'}), then close: {code}; server RSS "
        f"{before:.1f} -> {after:.1f} MB ({after - before:+.1f} MB); the pipe to the slow one "
        f"held {stalled / 2**20:.1f} MB when it stalled"
    )
    assert len(offered.json()["slots"]) > SLOW_EVENTS
    assert got == list(range(v0 + 1, v0 + SLOW_EVENTS + 1))
    assert announced(fast) == [(start, "held") for start in starts]
    assert not any(message.get("collapsed") for message in fast.slots)
    assert after - before < RSS_GROWTH_MB
    assert code == 1013
    assert len(slow_versions) < SLOW_EVENTS
    # Whatever it got before the close has no hole: a gap is only ever followed by the close.
    assert slow_versions == list(range(v0 + 1, v0 + 1 + len(slow_versions)))


async def test_a_client_that_asks_for_snapshots_and_never_reads_is_closed_1013_in_few_mib(
    settings: Settings, raw: Engine, backend: str, tmp_path: Path
) -> None:
    # Found by a probe: `watch` sent again and again (31 days of a 5-minute-slot doctor, about
    # 1 MB a snapshot) by a client that never reads grew the hub from 114 to 1,037 MiB: the
    # queue was bounded in frames (2,100), not in bytes.
    (patient_id,) = insert_patients(raw, 1, "hoarder")
    with hubs(settings, backend, tmp_path, 1) as servers:
        ((url, pid),) = servers
        async with httpx.AsyncClient(timeout=30) as client, AsyncExitStack() as stack:
            doctor_id = await new_doctor(client, url)
            await five_minute_slots(client, url, settings, doctor_id)
            hoarder = await watch(
                stack,
                url,
                token(settings, Role.patient, patient_id),
                doctor_id,
                sock=small_socket(url),
                max_queue=1,
                max_size=2**23,
            )
            await hoarder.until("snapshot", seconds=60)
            before = rss_mb(pid)
            again = json.dumps({"type": "watch", "doctor_id": doctor_id, **month_window()})
            with suppress(ConnectionClosed):
                for _ in range(HOARDED):
                    await hoarder.ws.send(again)
            # Read nothing until the hub is done with them: about 60 MB asked for, many times
            # what the pipe and the queue's byte bound hold together, whatever the pace.
            ended, after = await until_hoarding_ends(client, url, pid, HOARDED + 1)
            code = await read_until_closed(hoarder, quiet=15)  # a busy machine: slow snapshots
    print(
        f"\n[{backend}] {HOARDED} snapshots asked, RSS {before:.1f} -> {after:.1f} MB "
        f"when the hub {ended}: {code}"
    )
    assert ended == "closed"
    assert code == 1013
    assert after - before < HOARD_GROWTH_MB


# 5. What the protocol promises around the edges of a watch, under a stream of events.


def stream_starts(n: int) -> list[datetime]:
    midnight = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), clock(), tzinfo=UTC)
    return [midnight + timedelta(minutes=5 * k) for k in range(n)]


async def test_a_snapshot_taken_mid_stream_comes_before_the_events_after_it(
    settings: Settings, raw: Engine, backend: str, tmp_path: Path
) -> None:
    """Viewers re-watch again and again while holds stream in (each announced at once): after
    every snapshot at version V the next slot events are V+1, V+2, ... An event that landed
    while the snapshot was being built must come after it, not ahead of it."""
    ids = insert_patients(raw, STREAM_VIEWERS, "midstream")
    holders = [bearer(settings, pid) for pid in insert_patients(raw, STREAM_EVENTS // 3, "holder")]
    starts = stream_starts(STREAM_EVENTS)
    tomorrow = starts[0].date().isoformat()
    with hubs(settings, backend, tmp_path, 1) as servers:
        ((url, _),) = servers
        async with httpx.AsyncClient(timeout=30) as client, AsyncExitStack() as stack:
            doctor_id = await new_doctor(client, url)
            await five_minute_slots(client, url, settings, doctor_id)
            viewers = [
                await watch(
                    stack, url, token(settings, Role.patient, pid), doctor_id, span=(tomorrow,) * 2
                )
                for pid in ids
            ]
            await asyncio.gather(*(viewer.until("snapshot") for viewer in viewers))
            todo = list(enumerate(starts))

            async def holder() -> None:  # each hold is committed and announced at once
                while todo:
                    n, start = todo.pop(0)
                    body = {"doctor_id": doctor_id, "scheduled_datetime": iso(start)}
                    held = await client.post(
                        f"{url}/appointments/holds", json=body, headers=holders[n // 3]
                    )
                    assert held.status_code == 201, held.text

            async def rewatch(viewer: Viewer, stop: asyncio.Event) -> None:
                again = {"type": "watch", "doctor_id": doctor_id, "from": tomorrow, "to": tomorrow}
                while not stop.is_set():
                    await viewer.ws.send(json.dumps(again))
                    await asyncio.sleep(0.1)

            stop = asyncio.Event()
            readers = [
                asyncio.create_task(viewer.until_version(STREAM_EVENTS, seconds=40))
                for viewer in viewers
            ]
            rewatchers = [asyncio.create_task(rewatch(viewer, stop)) for viewer in viewers]
            try:
                await asyncio.gather(*(holder() for _ in range(HOLDERS)))
            finally:
                stop.set()
                await asyncio.gather(*rewatchers, return_exceptions=True)
                outcome = await asyncio.gather(*readers, return_exceptions=True)

            async def drain(viewer: Viewer) -> None:  # the last re-watches may still answer
                with suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        while True:
                            await viewer.read()

            await asyncio.gather(*(drain(viewer) for viewer in viewers))
    snapshots = sum(len(viewer.snapshots) for viewer in viewers)
    broken = []
    for n, viewer in enumerate(viewers):
        expected: int | None = None
        for kind, version in viewer.log:
            if kind == "snapshot":
                expected = version + 1
            elif kind == "slot":
                if expected is not None and version != expected:
                    broken.append((n, expected - 1, version))
                expected = version + 1
    print(
        f"\n[{backend}] {len(viewers)} viewers re-watched {snapshots} times while "
        f"{STREAM_EVENTS} holds streamed in; (viewer, snapshot version, first slot version "
        f"after it) where that was not snapshot + 1: {broken[:10]} ({len(broken)} in all)"
    )
    assert [repr(exc) for exc in outcome if exc is not None] == []
    assert broken == []


async def test_a_viewer_more_than_a_queue_behind_resyncs_without_being_closed(
    settings: Settings, raw: Engine, backend: str, tmp_path: Path
) -> None:
    """`since` replays up to KEEP (1,000) events: a reader that takes them as fast as they come
    gets them all, then resynced, and stays connected, even when they are more than the
    per-connection queue holds (MAX_PENDING, 500); never a hole followed by resynced."""
    (pid,) = insert_patients(raw, 1, "farbehind")
    starts = stream_starts(BEHIND)
    with hubs(settings, backend, tmp_path, 1) as servers:
        ((url, _),) = servers
        async with httpx.AsyncClient(timeout=30) as client, AsyncExitStack() as stack:
            doctor_id = await new_doctor(client, url)
            first = await watch(stack, url, token(settings, Role.patient, pid), doctor_id)
            v0 = int((await first.until("snapshot"))["version"])
            await first.ws.close()
            await write_slot_events(settings, doctor_id, starts)
            back = await watch(stack, url, token(settings, Role.patient, pid), doctor_id, since=v0)
            code: int | str | None = None
            try:
                await back.until("resynced")
                await back.ws.send(json.dumps({"type": "ping"}))
                await back.until("pong", seconds=5)  # and the connection is still open
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else "no close frame"
    print(
        f"\n[{backend}] a viewer {BEHIND} events behind (queue bound {MAX_PENDING}, replay keeps "
        f"{KEEP}) "
        f"reconnected with since={v0}: {len(back.slots)} replayed, resynced "
        f"{[m['version'] for m in back.resynced]} (first replayed version "
        f"{back.versions()[0] if back.slots else '-'}), closed with {code}"
    )
    got = back.versions()
    assert got == list(range(v0 + 1, v0 + 1 + len(got))), "a hole before resynced"
    assert code is None
    assert got == list(range(v0 + 1, v0 + BEHIND + 1))
    assert [m["version"] for m in back.resynced] == [v0 + BEHIND]
