"""No personal data and no secret in any line the hub logs: a real `python -m hub serve`
process at the most verbose level, through a scenario with its failures, its log scanned for
every token, password, hash, name, email, phone, address and date of birth it handled."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text
from websockets.asyncio.client import connect

from hub import db
from hub.config import Settings
from hub.logs import Flood
from tests.conftest import iso, slot
from tests.server import serve_process, stop

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
