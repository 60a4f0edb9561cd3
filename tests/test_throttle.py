from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from limits.aio.storage import MemoryStorage
from sqlalchemy import Engine
from starlette.testclient import TestClient
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from hub.app import create_app
from hub.auth import Passwords
from hub.config import Settings, load_settings
from hub.errors import ConfigError, Overloaded
from hub.throttle import Throttle
from tests.conftest import (
    CLUSTER_URL,
    MARIADB_URL,
    PASSWORD,
    REDIS_URL,
    Actor,
    World,
    iso,
    on_cluster,
    slot,
)
from tests.test_ws import Peer, hold

ATTACKER, OWNER, NEIGHBOUR = "203.0.113.9", "198.51.100.7", "192.0.2.33"


@contextmanager
def proxied(settings: Settings, **changes: Any) -> Iterator[TestClient]:
    """A client of the hub behind uvicorn's proxy-headers middleware, trusting the test
    client: a request's X-Forwarded-For is the client address the hub sees, as behind a
    configured proxy in production."""
    app = ProxyHeadersMiddleware(create_app(replace(settings, **changes)), "testclient")
    with TestClient(app) as client:
        yield client


def sent_from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def sign_in(
    client: TestClient, email: str, password: str, address: str = ATTACKER
) -> httpx.Response:
    form = {"username": email, "password": password}
    return client.post("/patients/login", data=form, headers=sent_from(address))


def error(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json().get("error")


def wait_of(answer: httpx.Response) -> int:
    assert error(answer) == (429, "too_many_attempts"), answer.text
    return int(answer.headers["Retry-After"])


def fail_ten_times(client: TestClient, email: str, address: str = ATTACKER) -> None:
    for _ in range(10):
        assert error(sign_in(client, email, "wrong password", address)) == (
            401,
            "invalid_credentials",
        )


@pytest.fixture
def hub(settings: Settings) -> Iterator[TestClient]:
    with proxied(settings) as client:
        yield client


@pytest.fixture
def owner(hub: TestClient, settings: Settings, raw: Engine) -> Actor:
    return World(hub, settings, raw).patient()


def test_the_eleventh_failed_sign_in_is_answered_429_with_retry_after(
    hub: TestClient, owner: Actor
) -> None:
    fail_ten_times(hub, owner.email)
    answer = sign_in(hub, owner.email, "wrong password")
    assert wait_of(answer) >= 1
    # Refused before any check: the right password from that address waits too.
    assert wait_of(sign_in(hub, owner.email, PASSWORD)) >= 1


def test_the_wait_grows_with_each_further_failure(hub: TestClient, owner: Actor) -> None:
    fail_ten_times(hub, owner.email)
    first = wait_of(sign_in(hub, owner.email, "wrong password"))
    time.sleep(first + 0.1)  # limits keeps its own time; the first wait is HUB_LOGIN_BACKOFF
    assert error(sign_in(hub, owner.email, "wrong password")) == (401, "invalid_credentials")
    assert wait_of(sign_in(hub, owner.email, "wrong password")) == 2 * first


def test_the_owner_signs_in_from_another_address_while_an_attacker_hammers_from_one(
    hub: TestClient, owner: Actor
) -> None:
    for _ in range(30):
        sign_in(hub, owner.email, "wrong password", ATTACKER)
    assert wait_of(sign_in(hub, owner.email, "wrong password", ATTACKER)) >= 1
    answer = sign_in(hub, owner.email, PASSWORD, OWNER)
    assert answer.status_code == 200, answer.text


def test_the_account_ceiling_holds_back_only_addresses_that_have_failed_on_it(
    settings: Settings, raw: Engine
) -> None:
    with proxied(settings, login_account_failures=5) as client:
        owner = World(client, settings, raw).patient()
        attackers = [f"203.0.113.{n}" for n in range(1, 7)]
        for address in attackers:  # six addresses, one failure each: past the ceiling
            assert sign_in(client, owner.email, "wrong", address).status_code == 401
        assert wait_of(sign_in(client, owner.email, "wrong", attackers[0])) >= 1
        assert sign_in(client, owner.email, PASSWORD, OWNER).status_code == 200


def test_failures_on_many_accounts_from_one_address_slow_that_address(
    settings: Settings, raw: Engine
) -> None:
    with proxied(settings, login_address_failures=5) as client:
        owner = World(client, settings, raw).patient()
        for n in range(5):
            assert sign_in(client, f"nobody{n}@example.org", "wrong").status_code == 401
        assert wait_of(sign_in(client, "nobody9@example.org", "wrong")) >= 1
        assert sign_in(client, owner.email, PASSWORD, OWNER).status_code == 200


def test_a_success_forgives_that_address_its_earlier_failures(
    hub: TestClient, owner: Actor
) -> None:
    for _ in range(9):
        sign_in(hub, owner.email, "typo", OWNER)
    assert sign_in(hub, owner.email, PASSWORD, OWNER).status_code == 200
    fail_ten_times(hub, owner.email, OWNER)  # counted from zero again
    assert wait_of(sign_in(hub, owner.email, "typo", OWNER)) >= 1


def test_a_registration_flood_from_one_address_is_refused(settings: Settings, raw: Engine) -> None:
    with proxied(settings, registrations=3) as client:
        world = World(client, settings, raw)
        for _ in range(3):
            answer = client.post("/patients/", json=world.person(), headers=sent_from(ATTACKER))
            assert answer.status_code == 201, answer.text
        patient = client.post("/patients/", json=world.person(), headers=sent_from(ATTACKER))
        assert wait_of(patient) > 1
        doctor = world.person(specialization_id=1)
        assert wait_of(client.post("/doctors/", json=doctor, headers=sent_from(ATTACKER))) > 1
        answer = client.post("/patients/", json=world.person(), headers=sent_from(NEIGHBOUR))
        assert answer.status_code == 201, answer.text


def _hold(client: TestClient, patient: Actor, doctor: Actor, hour: int) -> httpx.Response:
    body = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(hour))}
    return client.post(
        "/appointments/holds", json=body, headers={**patient.headers, **sent_from(ATTACKER)}
    )


def test_holds_from_one_address_are_capped_across_accounts(settings: Settings, raw: Engine) -> None:
    with proxied(settings, max_address_holds=4) as client:
        world = World(client, settings, raw)
        doctor = world.doctor()
        first, second, third = world.patient(), world.patient(), world.patient()
        held = [_hold(client, first, doctor, hour) for hour in (9, 10, 11)]
        held.append(_hold(client, second, doctor, 12))
        assert [answer.status_code for answer in held] == [201] * 4
        assert error(_hold(client, third, doctor, 13)) == (409, "too_many_address_holds")
        # Live holds count: one given back makes room.
        released = client.delete(
            f"/appointments/holds/{held[0].json()['hold_id']}", headers=first.headers
        )
        assert released.status_code == 204, released.text
        assert _hold(client, third, doctor, 13).status_code == 201
        elsewhere = {"doctor_id": doctor.id, "scheduled_datetime": iso(slot(14))}
        answer = client.post(
            "/appointments/holds",
            json=elsewhere,
            headers={**third.headers, **sent_from(NEIGHBOUR)},
        )
        assert answer.status_code == 201, answer.text


def test_holds_from_one_address_are_capped_across_accounts_over_websocket(
    settings: Settings, raw: Engine
) -> None:
    with proxied(settings, max_address_holds=2) as client:
        world = World(client, settings, raw)
        doctor, first, second = world.doctor(), world.patient(), world.patient()
        assert _hold(client, first, doctor, 9).status_code == 201
        assert _hold(client, first, doctor, 10).status_code == 201
        with client.websocket_connect("/ws", headers=sent_from(ATTACKER)) as session:
            peer = Peer(session)
            peer.send("auth", token=second.token)
            assert peer.next()["type"] == "ready"
            refused = hold(peer, doctor, slot(11))
        assert (refused["type"], refused["code"]) == ("error", "too_many_address_holds")


@pytest.mark.skipif(not (MARIADB_URL and REDIS_URL), reason="needs MariaDB and Redis")
@pytest.mark.parametrize("backend", ["mariadb"])
def test_two_hubs_on_one_redis_count_together(settings: Settings, raw: Engine) -> None:
    with proxied(settings, registrations=2) as one, proxied(settings, registrations=2) as two:
        world = World(one, settings, raw)
        owner = world.patient()
        for client in (one, two) * 5:
            assert sign_in(client, owner.email, "wrong").status_code == 401
        assert wait_of(sign_in(one, owner.email, PASSWORD)) >= 1
        assert wait_of(sign_in(two, owner.email, PASSWORD)) >= 1
        for client in (one, two):
            answer = client.post("/patients/", json=world.person(), headers=sent_from(ATTACKER))
            assert answer.status_code == 201, answer.text
        third = two.post("/patients/", json=world.person(), headers=sent_from(ATTACKER))
        assert wait_of(third) > 1


@pytest.mark.skipif(not (MARIADB_URL and CLUSTER_URL), reason="needs MariaDB and a Redis Cluster")
@pytest.mark.parametrize("backend", ["mariadb"])
def test_sign_ins_and_holds_are_counted_on_a_redis_cluster(settings: Settings, raw: Engine) -> None:
    clustered = on_cluster(settings)
    with proxied(clustered, max_address_holds=1) as client:
        world = World(client, clustered, raw)
        doctor, first, second = world.doctor(), world.patient(), world.patient()
        fail_ten_times(client, first.email)
        assert wait_of(sign_in(client, first.email, PASSWORD)) >= 1
        assert _hold(client, first, doctor, 9).status_code == 201
        assert error(_hold(client, second, doctor, 10)) == (409, "too_many_address_holds")


async def test_a_hashing_flood_past_the_queue_is_refused_at_once() -> None:
    passwords = Passwords(2, 16384, workers=1, queue=2)
    stored = await passwords.hash(PASSWORD)
    started = time.perf_counter()
    one = await passwords.verify(stored, PASSWORD)
    one_check = time.perf_counter() - started

    async def timed() -> tuple[bool | Overloaded, float]:
        began = time.perf_counter()
        try:
            return await passwords.verify(stored, PASSWORD), time.perf_counter() - began
        except Overloaded as exc:
            return exc, time.perf_counter() - began

    answers = await asyncio.gather(*(timed() for _ in range(10)))
    refused = [took for answer, took in answers if isinstance(answer, Overloaded)]
    assert one and [answer for answer, _ in answers].count(True) == 3  # one running, two queued
    assert len(refused) == 7
    assert max(refused) < one_check / 2, (refused, one_check)


def test_a_sign_in_flood_is_answered_503_overloaded_with_retry_after(
    settings: Settings, raw: Engine
) -> None:
    # Each check is made slow (~0.1 s) so that the attempts overlap even on a busy machine,
    # where the test client's threads may reach the hub some milliseconds apart.
    costly = {"argon2_time_cost": 3, "argon2_memory_kib": 65536}
    with proxied(settings, password_workers=1, password_queue=1, **costly) as client:
        owner = World(client, replace(settings, **costly), raw).patient()
        start = threading.Barrier(8)
        answers: list[httpx.Response] = []

        def attempt() -> None:
            start.wait()
            answers.append(sign_in(client, owner.email, PASSWORD, OWNER))

        threads = [threading.Thread(target=attempt) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    codes = sorted(answer.status_code for answer in answers)
    assert 200 in codes and 503 in codes, codes
    for answer in answers:
        if answer.status_code == 503:
            assert answer.json()["error"] == "overloaded"
            assert answer.headers["Retry-After"] == "1"


def test_the_throttle_settings_are_read_from_the_environment(tmp_path: Path) -> None:
    environ = {
        "HUB_DATA_DIR": str(tmp_path),
        "HUB_LOGIN_FAILURES": "5",
        "HUB_LOGIN_WINDOW": "60",
        "HUB_LOGIN_BACKOFF": "2",
        "HUB_REGISTRATIONS": "0",
        "HUB_MAX_ADDRESS_HOLDS": "2",
        "HUB_PASSWORD_QUEUE": "8",
    }
    settings = load_settings(environ)
    assert (settings.login_failures, settings.login_window, settings.login_backoff) == (5, 60, 2)
    assert (settings.registrations, settings.max_address_holds) == (0, 2)
    assert settings.password_queue == 8


async def test_a_throttle_that_cannot_count_refuses_to_start(tmp_path: Path) -> None:
    settings = load_settings({"HUB_DATA_DIR": str(tmp_path), "HUB_LOGIN_WINDOW": "0"})
    with pytest.raises(ConfigError, match="positive"):
        Throttle(MemoryStorage(), settings)
