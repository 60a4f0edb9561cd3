"""No personal data and no secret in any line the hub logs: a real `python -m hub serve`
process at the most verbose level, through a scenario with its failures, its log scanned for
every token, password, hash, name, email, phone, address and date of birth it handled."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import quopri
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from websockets.asyncio.client import connect

from hub import db
from hub.api.context import RequestContext
from hub.config import Settings, load_settings
from hub.errors import ConfigError
from hub.logformat import CURRENT, Context, JsonLines, log_config
from hub.logs import Flood, Redact, hold_back_floods, redact
from tests.conftest import iso, slot
from tests.server import serve_process, stop
from tests.test_manage import manage_token

PATIENT = {
    "first_name": "Philippa",
    "last_name": "Quenneville",
    "date_of_birth": "1983-07-19",
    "gender": "female",
    "email": "philippa.quenneville@example.org",
    "phone": "+33 6 12 34 56 78",
    "address": "17 Rue des Capucines",
    "password": "marigold-umbrella-417",
}
DOCTOR = {
    **PATIENT,
    "first_name": "Bartholomew",
    "last_name": "Okonkwo-Lindqvist",
    "date_of_birth": "1969-11-02",
    "email": "b.okonkwo@example.org",
    "phone": "+44 20 7946 0321",
    "address": "9 Harley Street",
    "password": "saffron-lantern-902",
    "specialization_id": 1,
}


async def scenario(url: str) -> list[str]:
    """Register, sign in (wrongly first), book, collide, fail in several ways, watch and hold
    over WebSocket; the secrets it handled."""
    secrets: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        doctor = (await client.post("/doctors/", json=DOCTOR)).json()
        patient = (await client.post("/patients/", json=PATIENT)).json()
        again = await client.post("/patients/", json=PATIENT)
        assert again.status_code == 409
        wrong = await client.post(
            "/patients/login", data={"username": PATIENT["email"], "password": "not-it-at-all"}
        )
        assert wrong.status_code == 401
        login = await client.post(
            "/patients/login", data={"username": PATIENT["email"], "password": PATIENT["password"]}
        )
        token = login.json()["access_token"]
        secrets.append(token)
        bearer = {"Authorization": f"Bearer {token}"}
        start = iso(slot(10))
        booking = {"doctor_id": doctor["id"], "scheduled_datetime": start}
        booked = await client.post("/appointments/", json=booking, headers=bearer)
        assert booked.status_code == 201, booked.text
        assert (
            await client.post("/appointments/", json=booking, headers=bearer)
        ).status_code == 409
        changes = {"phone": "+33 6 98 76 54 32", "address": "3 Quai Voltaire"}
        secrets += changes.values()
        await client.put(f"/patients/{patient['id']}", json=changes, headers=bearer)
        await client.get(f"/patients/{patient['id']}", headers=bearer)
        await client.put(f"/patients/{patient['id']}", content=b"{not json", headers=bearer)
        await client.get("/patients/", headers={"Authorization": f"Bearer {token}x"})
        await client.post("/appointments/", json={**booking, "doctor_id": 999999}, headers=bearer)
        await client.post(f"/appointments/{booked.json()['id']}/cancel", headers=bearer)
        async with connect(url.replace("http", "ws") + "/ws") as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            await ws.recv()
            await ws.send(json.dumps({"type": "watch", "doctor_id": doctor["id"]}))
            await ws.send(json.dumps({"type": "hold", "doctor_id": doctor["id"], "start": start}))
            await ws.send("{broken")
            await ws.send(json.dumps({"type": "ping"}))
            for _ in range(4):
                await ws.recv()
    return secrets


async def test_no_line_of_the_log_holds_personal_data_or_a_secret(
    settings: Settings, backend: str, raw: Engine, tmp_path: Path
) -> None:
    log = tmp_path / "hub.log"
    process, url = serve_process(settings, backend, tmp_path, log, HUB_LOG_LEVEL="debug")
    try:
        secrets = await scenario(url)
    finally:
        stop(process)
    with raw.connect() as conn:
        hashes = [row[0] for row in conn.execute(text("SELECT password_hash FROM patients"))]
    personal = [
        value
        for person in (PATIENT, DOCTOR)
        for key, value in person.items()
        if key not in ("gender", "specialization_id")
    ]
    lines = log.read_text().splitlines()
    assert len(lines) > 20  # the scenario was logged, at debug level
    found = [
        (secret, line)
        for line in lines
        for secret in [*personal, *secrets, *hashes]
        if isinstance(secret, str) and secret in line
    ]
    assert found == []


async def test_a_database_error_names_its_statement_never_its_values(settings: Settings) -> None:
    # SQLAlchemy writes an error's parameters into its message, and the message reaches the
    # log: a failed insert logged a patient's name, email, phone, address and password hash.
    engine = db.create_engine(settings.database_url)
    try:
        with pytest.raises(Exception) as failed:
            async with engine.connect() as conn:
                await conn.execute(
                    text("INSERT INTO no_such_table (email) VALUES (:email)"),
                    {"email": PATIENT["email"]},
                )
    finally:
        await engine.dispose()
    assert "no_such_table" in str(failed.value)
    assert PATIENT["email"] not in str(failed.value)


def test_a_flood_of_one_line_is_held_back_and_counted(tmp_path: Path) -> None:
    # Found by a probe: with the file descriptors used up, the accept loop logged `Too many
    # open files` in a tight loop, 165 MB in a minute.
    out = tmp_path / "flood.log"
    handler = logging.FileHandler(out)
    logger = logging.getLogger("hub.test.flood")
    logger.addHandler(handler)
    logger.propagate = False
    handler.addFilter(Flood(burst=10, window=60))
    try:
        for n in range(5000):
            logger.error("socket.accept() out of system resource: %d", n)
        logger.error("another kind of line")
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = out.read_text().splitlines()
    assert len(lines) == 11
    assert lines[-1] == "another kind of line"


def test_the_next_line_past_a_flood_says_how_many_were_held_back() -> None:
    flood = Flood(burst=2, window=0.05)
    record = logging.makeLogRecord
    passed = [flood.filter(record({"msg": "again %d", "args": (n,)})) for n in range(10)]
    assert passed == [True, True] + [False] * 8
    time.sleep(0.06)
    later = record({"msg": "again %d", "args": (10,)})
    assert flood.filter(later)
    assert later.getMessage() == "again 10 (8 more like this held back)"


# JSON lines (HUB_LOG_FORMAT=json, the default on MySQL): what each line must say.
REQUIRED = {"time", "level", "logger", "message"}
SEARCHED = "Quenneville"  # a front-desk style search by name, in a query string


async def json_scenario(url: str, settings: Settings, raw: Engine) -> tuple[list[str], str]:
    """Every path a day at the clinic takes, its failures too; the secrets it handled and the
    request id it sent with its booking."""
    secrets = [PATIENT["password"], DOCTOR["password"], "not-it-at-all", "Sore knee, left"]
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        doctor = (await client.post("/doctors/", json=DOCTOR)).json()
        patient = (await client.post("/patients/", json=PATIENT)).json()
        bad_phone = await client.post("/patients/", json={**PATIENT, "phone": "call me maybe"})
        assert bad_phone.status_code == 422
        wrong = await client.post(
            "/patients/login", data={"username": PATIENT["email"], "password": "not-it-at-all"}
        )
        assert wrong.status_code == 401
        tokens = []
        for path, person in (("/patients/login", PATIENT), ("/doctors/login", DOCTOR)):
            login = await client.post(
                path, data={"username": person["email"], "password": person["password"]}
            )
            assert login.status_code == 200, login.text
            tokens.append(login.json()["access_token"])
            token = login.json()["access_token"]
            secrets += [token, token[-16:], login.cookies.get("hub_refresh") or ""]  # and a
            # token's tail: uvicorn's WebSocket frames at debug show a token's ends
        bearer = {"Authorization": f"Bearer {tokens[0]}"}
        booked = await client.post(
            "/appointments/",
            json={
                "doctor_id": doctor["id"],
                "scheduled_datetime": iso(slot(10)),
                "reason": "Sore knee, left",
            },
            headers={**bearer, "X-Request-ID": "scan-booking-1"},
        )
        assert booked.status_code == 201, booked.text
        manage = manage_token(settings, raw, booked.json()["id"])
        secrets.append(manage)
        assert (await client.get(f"/manage/{manage}")).status_code == 200
        feed = await client.post(f"/patients/{patient['id']}/calendar-feed", headers=bearer)
        feed_path = "/feeds/" + feed.json()["url"].split("/feeds/", 1)[1]
        secrets.append(feed_path.removeprefix("/feeds/").removesuffix(".ics"))
        assert (await client.get(feed_path)).status_code == 200
        await client.get(f"/patients/?q={SEARCHED}", headers=bearer)
        assert (await client.get("/no-such-page/at-all")).status_code == 404
        reset = await client.post(
            "/password-reset", json={"email": PATIENT["email"], "role": "patient"}
        )
        assert reset.status_code == 202
        async with connect(url.replace("http", "ws") + "/ws") as ws:
            await ws.send(json.dumps({"type": "auth", "token": tokens[0]}))
            await ws.recv()
            await ws.send(json.dumps({"type": "watch", "doctor_id": doctor["id"]}))
            hold = {"type": "hold", "doctor_id": doctor["id"], "start": iso(slot(11))}
            await ws.send(json.dumps(hold))
            for _ in range(2):
                await ws.recv()
        cancelled = await client.put(
            f"/appointments/{booked.json()['id']}/cancel",
            json={"reason": "Sore knee, left"},
            headers=bearer,
        )
        assert cancelled.status_code == 200, cancelled.text
        await asyncio.sleep(1.5)  # the sender writes the messages (reset link and all)
    return secrets, "scan-booking-1"


def _links_in_mail(directory: Path) -> list[str]:
    # Each message's link ends in a secret (a reset or verify token, a manage token).
    found = []
    for message in directory.rglob("*.eml"):
        body = quopri.decodestring(message.read_bytes()).decode("utf-8", "replace")
        for link in re.findall(r"https?://[^\s\"'<>]+", body):
            found += [p for p in re.split(r"[/?#=&]", link) if len(p) >= 20]
    return found


async def test_a_full_scenario_in_json_lines_logs_no_personal_data_or_secret(
    settings: Settings, backend: str, raw: Engine, tmp_path: Path
) -> None:
    if backend == "embedded":
        pytest.skip("JSON lines are what production (MySQL and Redis) writes")
    log = tmp_path / "hub.log"
    process, url = serve_process(
        settings, backend, tmp_path, log, HUB_LOG_LEVEL="debug", HUB_LOG_FORMAT="json"
    )
    try:
        secrets, booking_id = await json_scenario(url, settings, raw)
    finally:
        stop(process)
    secrets += _links_in_mail(tmp_path)
    with raw.connect() as conn:
        for table in ("patients", "doctors"):
            secrets += conn.execute(text(f"SELECT password_hash FROM {table}")).scalars()
    personal = [
        value
        for person in (PATIENT, DOCTOR)
        for key, value in person.items()
        if key not in ("gender", "specialization_id")
    ]
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # each one JSON
    assert len(lines) > 20
    assert [line for line in lines if not line.keys() >= REQUIRED] == []
    found = [
        (secret, line)
        for line in lines
        for secret in [*personal, *[s for s in secrets if s], SEARCHED]
        if secret in json.dumps(line, ensure_ascii=False)
    ]
    assert found == []
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert access and all({"request_id", "status", "duration_ms"} <= a.keys() for a in access)
    (booking,) = [a for a in access if a["request_id"] == booking_id]
    assert (booking["route"], booking["method"]) == ("/appointments/", "POST")
    assert booking["status"] == 201
    assert any(a["status"] == 404 and a["path"] == "/no-such-page/at-all" for a in access)
    opened = [line for line in lines if "WebSocket /ws" in line["message"]]
    assert opened and all("connection_id" in line for line in opened)


def _lines_of(app: Starlette, *requests: tuple[str, dict[str, str]]) -> list[dict[str, Any]]:
    """The JSON lines `app` logs (on logger `hub.test.lines`) while answering `requests`."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    logger = logging.getLogger("hub.test.lines")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with TestClient(app) as client:
            for path, headers in requests:
                answer = client.get(path, headers=headers)
                assert answer.headers["x-request-id"]
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_logged_while_serving_a_request_carries_its_id_and_route() -> None:
    logger = logging.getLogger("hub.test.lines")

    async def page(request: Request) -> Response:
        logger.info("reading %s", request.path_params["id"])

        async def elsewhere() -> None:  # a task the request starts inherits its context
            logger.info("in a task")

        await asyncio.create_task(elsewhere())
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/things/{id:int}", page)], middleware=[Middleware(RequestContext)]
    )
    lines = _lines_of(app, ("/things/7", {"X-Request-ID": "abc-123"}), ("/things/8", {}))
    messages = [line["message"] for line in lines]
    assert messages == ["reading 7", "in a task", "reading 8", "in a task"]
    assert {line["request_id"] for line in lines[:2]} == {"abc-123"}
    assert lines[2]["request_id"] != "abc-123" and len(lines[2]["request_id"]) == 32
    for line in lines:
        assert line["route"] == "/things/{id}"
        assert line["logger"] == "hub.test.lines" and line["level"] == "INFO"
        assert datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0)
        assert "status" not in line  # not answered yet


def test_an_access_line_in_json_says_method_path_status_and_duration() -> None:
    context = Context(request_id="r-1", status=201)
    token = CURRENT.set(context)
    try:
        record = logging.LogRecord(
            "uvicorn.access",
            logging.INFO,
            __file__,
            1,
            '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5000", "POST", "/appointments/", "1.1", 201),
            None,
        )
        line = json.loads(JsonLines().format(record))
    finally:
        CURRENT.reset(token)
    assert line["message"] == '127.0.0.1:5000 - "POST /appointments/ HTTP/1.1" 201'
    assert (line["method"], line["path"], line["status"]) == ("POST", "/appointments/", 201)
    assert line["request_id"] == "r-1" and line["duration_ms"] >= 0


def test_the_log_format_is_json_on_mysql_and_text_on_the_embedded_default() -> None:
    mysql = {"HUB_DATABASE_URL": "mysql+aiomysql://u:p@db/hub", "HUB_SECRET_KEY": "k" * 40}
    assert load_settings(mysql).log_format == "json"
    assert load_settings({**mysql, "HUB_LOG_FORMAT": "text"}).log_format == "text"
    assert load_settings({"HUB_SECRET_KEY": "k" * 40}).log_format == "text"
    with pytest.raises(ConfigError):
        load_settings({**mysql, "HUB_LOG_FORMAT": "xml"})
    config = log_config(load_settings(mysql))
    assert {f.get("()") for f in config["formatters"].values()} == {"hub.logformat.JsonLines"}


def test_the_access_log_is_never_held_back_as_a_flood() -> None:
    access = logging.getLogger("uvicorn.access")
    handler = logging.NullHandler()
    access.addHandler(handler)
    try:
        hold_back_floods()
        assert not any(isinstance(f, Flood) for f in handler.filters)
    finally:
        access.removeHandler(handler)


def test_a_query_string_a_websocket_frame_and_a_jwt_are_redacted() -> None:
    class Frame:  # as websockets logs a frame: an object, made text when formatted
        def __str__(self) -> str:
            return 'TEXT \'{"type": "auth", "token": "eyJhbGciOiJIUzI1NiIs...tail-of-it"}\''

    record = logging.makeLogRecord({"msg": "< %s %s", "args": (Frame(), "/patients/?q=Ada")})
    Redact().filter(record)
    assert record.getMessage() == '< TEXT \'{"type": "auth", "token": "…"}\' /patients/?q=…'
    assert redact("link eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl sent") == "link … sent"
