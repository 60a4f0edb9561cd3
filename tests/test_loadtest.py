from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy.engine import make_url

from hub.__main__ import main as hub_main
from hub.calendar import CalendarView, SlotView
from hub.config import Settings
from hub.loadtest.cli import main as loadtest_main
from hub.loadtest.clients import LONG, message_of
from hub.loadtest.options import Options
from hub.loadtest.report import write_html
from hub.loadtest.run import Result, run
from hub.loadtest.summary import summarize
from hub.schedules import Policy
from hub.ws.frames import Snapshots
from tests.server import free_port, hub_env, serve_in_thread, stop

# Correctness only: counts, the database, closes. Never time: this machine is shared.


@pytest.fixture
def hub(settings: Settings) -> Iterator[str]:
    with serve_in_thread(settings) as (url, _server):
        yield url


def plan(scenario: str, url: str, settings: Settings, **fields: Any) -> Options:
    return Options(
        scenario=scenario,
        url=url,
        procs=2,
        database_url=settings.database_url,
        timeout=60,
        **fields,
    )


def failed(result: Result) -> list[str]:
    return [f"{c.name}: {c.detail}" for c in result.checks if not c.ok]


async def test_contention_of_twenty_clients_books_the_slot_once(
    hub: str, settings: Settings
) -> None:
    result = await run(plan("contention", hub, settings, clients=20))
    assert failed(result) == []
    outcomes = result.hub.tally.outcomes
    assert outcomes == {"book 201": 1, "book 409 slot_taken": 19}
    assert result.audit is not None and result.audit.answered == 1


async def test_throughput_of_twenty_bookings_stores_twenty_rows(
    hub: str, settings: Settings
) -> None:
    result = await run(plan("throughput", hub, settings, clients=5, count=20, doctors=2))
    assert failed(result) == []
    assert result.hub.tally.outcomes == {"book 201": 20}
    assert result.audit is not None and (result.audit.answered, result.audit.missing) == (20, 0)


async def test_fanout_delivers_every_booking_to_every_viewer(hub: str, settings: Settings) -> None:
    options = plan("fanout", hub, settings, clients=20, bookings=5, interval=0.05, ceiling=True)
    result = await run(options)
    assert failed(result) == []
    per_start = Counter(start for start, _, _ in result.hub.tally.arrivals)
    assert sorted(per_start.values()) == [20] * 5
    assert len(result.hub.tally.series["delivery"]) == 100
    assert len(result.ceilings["broadcast"].tally.series["delivery"]) == 100  # bare websockets


async def test_a_storm_of_fifty_viewers_all_hold_a_snapshot(hub: str, settings: Settings) -> None:
    result = await run(plan("storm", hub, settings, clients=50, hold=0.2))
    assert failed(result) == []
    assert result.hub.tally.values["sessions"] == 50
    assert result.hub.samples["peak"].sessions == 50  # the hub's own gauge, while held


async def test_fifty_idle_sessions_are_held_and_answer_a_ping(hub: str, settings: Settings) -> None:
    result = await run(plan("idle", hub, settings, clients=50, hold=0.2))
    assert failed(result) == []
    assert (result.hub.tally.values["sessions"], result.hub.tally.values["alive"]) == (50, 50)
    assert summarize(result)["hub"]["rss_mib"]["peak"] > 0


async def test_ten_logins_succeed_while_pings_keep_answering(hub: str, settings: Settings) -> None:
    result = await run(plan("logins", hub, settings, clients=10, pingers=4))
    assert failed(result) == []
    assert result.hub.tally.count("login", "200") == 10
    assert len(result.hub.tally.series["ping before logins"]) > 0


async def test_a_clinic_mix_never_fails_or_double_books(hub: str, settings: Settings) -> None:
    options = plan("clinic", hub, settings, clients=20, duration=1.5, think=0.1, doctors=2)
    result = await run(options)
    assert failed(result) == []
    ops = result.hub.tally.series
    assert ops["week"] and ops["watch"] and ops["hold"]
    assert result.audit is not None and result.audit.missing == 0


async def test_kept_sign_ins_are_reused_and_dropped_when_the_hub_refuses_them(
    hub: str, settings: Settings, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    stale = {"id": 999_999, "token": "not-a-token", "expires_at": time.time() + 3600}
    tokens.write_text(json.dumps({hub: {"load-patient-0@load.example": stale}}))
    first = await run(plan("contention", hub, settings, clients=5, tokens=tokens))
    kept = json.loads(tokens.read_text())[hub]
    assert kept["load-patient-0@load.example"]["token"] != "not-a-token"
    assert len(kept) == 5 + 4  # five patients and the four load doctors
    second = await run(plan("contention", hub, settings, clients=5, tokens=tokens))
    assert failed(first) == failed(second) == []
    assert json.loads(tokens.read_text())[hub] == kept  # nobody signed in again


def test_the_command_line_prints_json_and_writes_the_report(
    hub: str, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "contention.html"
    argv = ["contention", "--url", hub, "-c", "5", "--procs", "1", "--json", "--report", str(page)]
    assert loadtest_main([*argv, "--database-url", settings.database_url]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] is True
    assert summary["outcomes"] == {"book 201": 1, "book 409 slot_taken": 4}
    assert summary["ops"]["book"]["count"] == 5
    text = page.read_text()
    assert "plotly" in text and "latency distribution" in text and "exactly one 201" in text


async def test_ceilings_run_beside_the_hub_and_report_fractions(
    hub: str, settings: Settings, backend: str, tmp_path: Path
) -> None:
    ceiling_database = f"{make_url(settings.database_url).database}_ceiling"
    options = plan(
        "throughput",
        hub,
        settings,
        clients=4,
        count=20,
        ceiling=True,
        ceiling_database=ceiling_database,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
    )
    result = await run(options)
    assert failed(result) == []
    expected = {"http", "transaction"} if backend == "mariadb" else {"http"}
    assert set(result.ceilings) == expected
    for outcome in result.ceilings.values():
        assert outcome.tally.count("book", "201") == 20
    summary = summarize(result)
    assert {row["ceiling"] for row in summary["fractions"]} == expected
    write_html(result, summary, tmp_path / "report.html")


def test_serve_refuses_several_workers_on_the_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("HUB_DATABASE_URL", raising=False)
    monkeypatch.delenv("HUB_REDIS_URL", raising=False)
    assert hub_main(["serve", "--workers", "2"]) == 2
    assert "several workers need MySQL and Redis" in capsys.readouterr().err


@contextmanager
def served_by_workers(
    settings: Settings, tmp: Path, workers: int
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m hub serve --workers N` in a subprocess; yields its URL and process once it
    answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "hub", "serve", "--port", str(port), "--workers", str(workers)]
    log = tmp / "hub.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=hub_env(settings, tmp), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/specializations/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url, process
    finally:
        stop(process)


async def test_two_workers_share_a_port_and_book_correctly(
    settings: Settings, backend: str, tmp_path: Path
) -> None:
    if backend == "embedded":
        pytest.skip("several workers need MySQL and Redis")
    with served_by_workers(settings, tmp_path, 2) as (url, _process):
        result = await run(plan("throughput", url, settings, clients=10, count=20))
        assert failed(result) == []
        # One scrape, whichever worker answers it, adds up every worker.
        async with httpx.AsyncClient(timeout=5) as client:
            scraped = (await client.get(f"{url}/metrics")).text
    assert result.hub.samples["before"].source == "/metrics"
    assert _sample(scraped, "hub_workers") == 2
    booked = _sample(
        scraped,
        'hub_http_request_duration_seconds_count{method="POST",route="/appointments/",status="201"}',
    )
    assert booked == 20


def test_a_burst_of_connections_lands_on_every_worker(
    settings: Settings, backend: str, tmp_path: Path
) -> None:
    # With one shared listening socket the worker that wakes first accepted a whole burst
    # (81% / 19% of the CPU under load); one socket per worker lets the kernel spread them.
    if backend == "embedded":
        pytest.skip("several workers need MySQL and Redis")
    with served_by_workers(settings, tmp_path, 2) as (url, process):
        port = int(url.rsplit(":", 1)[1])
        _until_every_worker_listens(process, port, 2)
        burst = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        try:
            time.sleep(1.0)  # the workers accept them
            held = {}
            for worker in psutil.Process(process.pid).children():
                tcp = worker.net_connections("tcp")
                mine = [c for c in tcp if c.laddr and c.laddr.port == port]
                if any(c.status == psutil.CONN_LISTEN for c in mine):
                    held[worker.pid] = sum(c.status == psutil.CONN_ESTABLISHED for c in mine)
        finally:
            for sock in burst:
                sock.close()
    assert len(held) == 2 and sum(held.values()) == 40, held
    # Spread by address hash: fewer than 6 of 40 on one worker has odds of about 1e-6.
    assert min(held.values()) >= 6, held


def _until_every_worker_listens(process: subprocess.Popen[bytes], port: int, n: int) -> None:
    # The first worker to start answers before the others listen: a socket bound but not
    # listening yet takes no share of the connections.
    deadline = time.monotonic() + 30
    while True:
        listening = [
            worker
            for worker in psutil.Process(process.pid).children()
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                for c in worker.net_connections("tcp")
            )
        ]
        if len(listening) == n:
            return
        assert time.monotonic() < deadline, f"{len(listening)} of {n} workers listen"
        time.sleep(0.1)


def _sample(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def _snapshot_frame(slots: int, ref: str | None) -> str:
    # A day of 5-minute slots written as the hub writes a snapshot (hub.ws.frames).
    first = datetime(2026, 12, 8, tzinfo=UTC)
    view = CalendarView(
        doctor_id=4,
        timezone="UTC",
        slots=tuple(
            SlotView(first + timedelta(minutes=5 * n), first + timedelta(minutes=5 * n + 5), "free")
            for n in range(slots)
        ),
        policy=Policy(),
        shared=True,
    )
    return Snapshots().of(11767, view, ref)


def test_a_long_reply_is_read_for_its_type_and_ref_as_the_hub_writes_them() -> None:
    frame = _snapshot_frame(288, "r42")
    assert len(frame) > LONG
    whole = json.loads(frame)
    assert message_of(frame) == {"type": whole["type"], "ref": whole["ref"], "size": len(frame)}
    assert message_of(frame)["type"] == "snapshot" and message_of(frame)["ref"] == "r42"


def test_short_frames_errors_and_other_shapes_are_read_whole() -> None:
    short = _snapshot_frame(3, "r1")
    assert message_of(short) == json.loads(short)  # a short one, whole
    unasked = _snapshot_frame(288, None)  # no ref at its end: whole
    assert message_of(unasked) == json.loads(unasked)
    error = json.dumps({"type": "error", "code": "invalid", "message": "x" * LONG, "ref": "r2"})
    assert message_of(error.replace(" ", "")) == json.loads(error)  # an error: its code kept
    nested = json.dumps({"type": "snapshot", "slots": [{"x": "y" * LONG, "ref": "r3"}]})
    assert message_of(nested.replace(" ", "")) == json.loads(nested)  # a ref not its own: whole
