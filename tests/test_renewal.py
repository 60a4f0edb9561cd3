"""A sign-in outlives its access token: the refresh cookie (HttpOnly, SameSite=Strict) renews
it, rotating on every use; a refresh token used twice ends the sign-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from hub.config import Settings
from tests.clocks import MovingClock, app_on
from tests.conftest import PASSWORD, World

COOKIE = "hub_refresh"


@pytest.fixture
def clock() -> MovingClock:
    return MovingClock()


@pytest.fixture
def timed(settings: Settings, raw: Engine, clock: MovingClock) -> Iterator[World]:
    with app_on(settings, clock) as client:
        yield World(client, settings, raw)


def _sign_in(client: TestClient, email: str) -> str:
    answer = client.post("/patients/login", data={"username": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _refresh(client: TestClient, cookie: str | None = None) -> tuple[int, dict[str, object]]:
    if cookie is not None:  # as another tab, or a thief, would send it
        client.cookies.clear()
        client.cookies.set(COOKIE, cookie)
    answer = client.post("/auth/refresh")
    return answer.status_code, answer.json() if answer.content else {}


def test_a_login_sets_an_httponly_strict_refresh_cookie_for_the_auth_routes(world: World) -> None:
    patient = world.patient()
    answer = world.client.post(
        "/patients/login", data={"username": patient.email, "password": PASSWORD}
    )
    header = answer.headers["set-cookie"]
    assert header.startswith(f"{COOKIE}=")
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/auth" in header
    assert "Max-Age=1209600" in header  # 14 days


def test_the_cookie_renews_the_sign_in_and_rotates(timed: World) -> None:
    patient = timed.patient()
    _sign_in(timed.client, patient.email)
    first = timed.client.cookies.get(COOKIE)
    status, body = _refresh(timed.client)
    assert status == 200, body
    assert body["role"] == "patient" and body["id"] == patient.id
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert timed.client.get("/patients/me", headers=headers).status_code == 200
    assert timed.client.cookies.get(COOKIE) not in (None, first)


def test_two_tabs_renewing_at_once_both_go_on(timed: World, clock: MovingClock) -> None:
    patient = timed.patient()
    _sign_in(timed.client, patient.email)
    shared = timed.client.cookies.get(COOKIE)
    assert _refresh(timed.client, shared)[0] == 200
    clock.advance(2)  # within the grace: the other tab had the same cookie
    assert _refresh(timed.client, shared)[0] == 200


def test_a_refresh_token_used_twice_ends_the_whole_sign_in(
    timed: World, clock: MovingClock
) -> None:
    patient = timed.patient()
    _sign_in(timed.client, patient.email)
    stolen = timed.client.cookies.get(COOKIE)
    assert _refresh(timed.client)[0] == 200
    current = timed.client.cookies.get(COOKIE)
    clock.advance(60)
    status, body = _refresh(timed.client, stolen)
    assert status == 401 and "used twice" in str(body["detail"])
    assert _refresh(timed.client, current)[0] == 401  # the owner's newest one too


def test_sign_out_everywhere_and_here_end_the_refresh_cookie(timed: World) -> None:
    patient = timed.patient()
    token = _sign_in(timed.client, patient.email)
    answer = timed.client.post(
        "/patients/me/sign-out", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 204
    assert _refresh(timed.client)[0] == 401
    _sign_in(timed.client, patient.email)
    assert timed.client.post("/auth/sign-out").status_code == 204
    assert _refresh(timed.client)[0] == 401


def test_a_refresh_cookie_expires_unused(timed: World, clock: MovingClock) -> None:
    patient = timed.patient()
    _sign_in(timed.client, patient.email)
    clock.advance(15 * 24 * 3600)
    assert _refresh(timed.client)[0] == 401


def test_a_password_change_ends_other_sign_ins_and_renews_its_own(timed: World) -> None:
    patient = timed.patient()
    other = TestClient(timed.client.app)  # another browser, signed in too
    with other:
        _sign_in(other, patient.email)
        token = _sign_in(timed.client, patient.email)
        change = {"password": "an entirely new one", "current_password": PASSWORD}
        answer = timed.client.put(
            f"/patients/{patient.id}", json=change, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200, answer.text
        assert _refresh(other)[0] == 401
        assert _refresh(timed.client)[0] == 200
