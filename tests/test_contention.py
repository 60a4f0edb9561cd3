from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
from sqlalchemy import Engine, text

from hub.auth import Principal, Role, Tokens
from hub.config import Settings
from tests.conftest import World, insert_patients, iso, slot
from tests.server import run_server

CONTENDERS = 100


async def test_concurrent_bookings_of_one_slot_store_exactly_one(
    world: World, settings: Settings, raw: Engine
) -> None:
    doctor = world.doctor()
    tokens = Tokens(settings)
    headers = [
        {"Authorization": f"Bearer {tokens.issue(Principal(Role.patient, pid)).access_token}"}
        for pid in insert_patients(raw, CONTENDERS, "crowd")
    ]
    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(11))}
    with run_server(settings) as url:
        limits = httpx.Limits(max_connections=CONTENDERS)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            started = time.perf_counter()
            answers = await asyncio.gather(
                *(client.post("/appointments/", json=body, headers=h) for h in headers)
            )
            elapsed = time.perf_counter() - started
    statuses = Counter(answer.status_code for answer in answers)
    codes = Counter(answer.json()["error"] for answer in answers if answer.status_code == 409)
    print(f"\n{CONTENDERS} concurrent bookings: {dict(statuses)} {dict(codes)} in {elapsed:.2f}s")
    assert statuses == {201: 1, 409: CONTENDERS - 1}
    assert codes == {"slot_taken": CONTENDERS - 1}
    with raw.connect() as conn:
        rows = conn.execute(text("SELECT COUNT(*) FROM appointments")).scalar_one()
    assert rows == 1
