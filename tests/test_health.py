"""`/health` and `/ready`: what a load balancer polls every second."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hub import app as hub_app
from hub import db
from hub.api.context import RequestContext
from hub.api.endpoint import server_error
from hub.app import create_app
from hub.config import Settings
from hub.health import Readiness
from tests.server import free_port
from tests.test_metrics import scrape


def _previous(database_url: str) -> str:
    script = ScriptDirectory.from_config(db.alembic_config(database_url))
    head = script.get_revision(script.get_current_head())
    assert head is not None and isinstance(head.down_revision, str)
    return head.down_revision


@contextmanager
def _revision_set_to(raw: Engine, revision: str) -> Iterator[None]:
    """The database says it is at `revision` (its tables stay at the head), until the end."""
    with raw.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    try:
        yield
    finally:
        with raw.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": head})


@contextmanager
def _silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def _unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    # The hub refuses to start on a database it cannot reach; these tests need it running.
    async def skip(settings: Settings) -> None:
        return None

    monkeypatch.setattr(hub_app, "prepare_schema", skip)


def test_health_answers_ok_and_echoes_the_request_id(client: TestClient) -> None:
    answer = client.get("/health", headers={"X-Request-ID": "probe-1"})
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
    assert answer.headers["x-request-id"] == "probe-1"
    assert answer.headers["cache-control"] == "no-store"
    assert client.head("/health").status_code == 200


def test_ready_names_every_part_it_checked(client: TestClient, settings: Settings) -> None:
    answer = client.get("/ready")
    assert answer.status_code == 200, answer.text
    redis = "ok" if settings.redis_url else "not configured"
    assert answer.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": redis, "schema": "ok"},
    }


def test_health_and_ready_are_left_out_of_the_request_metrics(client: TestClient) -> None:
    for _ in range(3):
        client.get("/health")
        client.get("/ready")
    routes = {
        dict(labels).get("route")
        for name, labels in scrape(client)
        if name.startswith("hub_http_request_duration_seconds")
    }
    assert not routes & {"/health", "/ready"}


def test_ready_is_503_naming_redis_when_redis_is_away(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    away = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/9", redis_timeout=0.2)
    with TestClient(create_app(away)) as client:
        answer = client.get("/ready")
        assert client.get("/health").status_code == 200  # alive all the same
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok" and body["checks"]["schema"] == "ok"
    assert body["checks"]["redis"] != "ok"
    assert body["checks"]["redis"].startswith(("error: ", "timeout"))


def test_ready_is_503_naming_the_database_when_it_is_away(
    settings: Settings, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "embedded":
        pytest.skip("the embedded database is a file of this process")
    _unchecked(monkeypatch)
    url = make_url(settings.database_url).set(port=free_port())
    away = replace(settings, database_url=url.render_as_string(hide_password=False))
    with TestClient(create_app(away)) as client:
        answer = client.get("/ready")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "unavailable",
        "checks": {"database": "error: OperationalError", "redis": "ok", "schema": "unknown"},
    }


def test_ready_gives_up_on_a_database_that_does_not_answer_within_a_second(
    settings: Settings, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "embedded":
        pytest.skip("the embedded database is a file of this process")
    _unchecked(monkeypatch)
    with _silent_port() as port:
        url = make_url(settings.database_url).set(port=port)
        silent = replace(settings, database_url=url.render_as_string(hide_password=False))
        with TestClient(create_app(silent)) as client:
            answer = client.get("/ready")
    assert answer.status_code == 503
    assert answer.json()["checks"]["database"] == "timeout"
    assert answer.json()["checks"]["redis"] == "ok"


def test_ready_is_503_naming_the_schema_when_it_is_behind(
    client: TestClient, settings: Settings, raw: Engine
) -> None:
    previous = _previous(settings.database_url)
    head = db.head_revision(settings.database_url)
    with _revision_set_to(raw, previous):
        answer = client.get("/ready")
    assert answer.status_code == 503
    assert answer.json()["checks"] == {
        "database": "ok",
        "redis": "ok" if settings.redis_url else "not configured",
        "schema": f"at {previous}, needs {head}",
    }
    assert client.get("/ready").status_code == 200  # a wrong revision is read again at once


def test_ready_serves_a_schema_a_newer_version_migrated(
    client: TestClient, settings: Settings, raw: Engine
) -> None:
    # A rolling upgrade migrates first; the old replicas keep serving (the migrations add).
    with _revision_set_to(raw, "f00d"):
        answer = client.get("/ready")
    assert answer.status_code == 200, answer.text
    assert answer.json()["checks"]["schema"] == "ok"
    metrics = client.get("/metrics").text
    assert 'hub_ready{part="schema"} 1.0' in metrics


async def test_a_database_migrated_to_an_older_revision_is_not_ready(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}"
    previous = _previous(url)
    db.migrate(url, previous)
    engine = db.create_engine(url)
    try:
        checks = await Readiness(engine, None, url).check()
    finally:
        await engine.dispose()
    assert not checks.ready
    assert checks.schema == f"at {previous}, needs {db.head_revision(url)}"


async def test_a_right_revision_is_read_again_only_after_a_while(
    settings: Settings, raw: Engine
) -> None:
    now = [0.0]
    engine = db.create_engine(settings.database_url)
    readiness = Readiness(engine, None, settings.database_url, monotonic=lambda: now[0])
    try:
        assert (await readiness.check()).ready
        with _revision_set_to(raw, _previous(settings.database_url)):
            now[0] = 14.0
            assert (await readiness.check()).ready  # trusted: only SELECT 1
            now[0] = 15.0
            assert (await readiness.check()).schema.startswith("at ")
        assert (await readiness.check()).ready
    finally:
        await engine.dispose()


def test_ready_says_draining_once_the_process_is_leaving(client: TestClient) -> None:
    assert client.get("/ready").status_code == 200
    client.app_state["hub"].draining.set()
    answer = client.get("/ready")
    assert (answer.status_code, answer.json()) == (503, {"status": "draining"})
    assert client.get("/health").status_code == 200


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    missing = client.get("/no-such-path", headers={"X-Request-ID": "trace-404"})
    assert missing.status_code == 404
    assert missing.headers.get_list("x-request-id") == ["trace-404"]
    refused = client.post("/patients/", json={"first_name": "x"}, headers={"X-Request-ID": "r-422"})
    assert refused.status_code == 422
    assert refused.headers.get_list("x-request-id") == ["r-422"]
    made = client.get("/specializations/", headers={"X-Request-ID": "not sane; at all"})
    assert made.headers["x-request-id"] != "not sane; at all"
    assert len(made.headers["x-request-id"]) == 32
    assert client.get("/").headers["x-request-id"]  # the browser app's static files too


def test_a_500_carries_the_request_id_too() -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("a bug")

    app = Starlette(
        routes=[Route("/boom", boom)],
        middleware=[Middleware(RequestContext)],
        exception_handlers={Exception: server_error},
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/boom", headers={"X-Request-ID": "trace-500"})
    assert answer.status_code == 500
    assert answer.headers.get_list("x-request-id") == ["trace-500"]
