from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from jwt.warnings import InsecureKeyLengthWarning
from starlette.testclient import TestClient

from hub import auth
from hub.auth import ALGORITHM, Passwords, Principal, Role, Tokens
from hub.errors import Unauthenticated
from tests.conftest import SECRET, World, bearer
from tests.conftest import test_settings as make_settings

REQUIRED = ("exp", "iat", "iss", "aud", "sub", "role")
UNIT = make_settings("sqlite+aiosqlite:///unused.sqlite3", None, Path("unused"))
PASSWORDS = Passwords(UNIT.argon2_time_cost, UNIT.argon2_memory_kib)


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "7",
        "role": "patient",
        "iat": now,
        "exp": now + 60,
        "iss": "hub",
        "aud": "hub",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _signed(claims: dict[str, Any], key: str = SECRET, algorithm: str = ALGORITHM) -> str:
    with warnings.catch_warnings():  # HS512 wants 64 bytes; the point is the same key
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=algorithm)


BAD_TOKENS: dict[str, tuple[Callable[[], str], type[Exception]]] = {
    "other-key": (lambda: _signed(_claims(), "x" * 48), jwt.InvalidSignatureError),
    "expired": (
        lambda: Tokens(UNIT).issue(Principal(Role.patient, 7), now=time.time() - 7200).access_token,
        jwt.ExpiredSignatureError,
    ),
    **{
        f"missing-{name}": (
            lambda name=name: _signed(_claims(**{name: None})),
            jwt.MissingRequiredClaimError,
        )
        for name in REQUIRED
    },
    "wrong-audience": (lambda: _signed(_claims(aud="else")), jwt.InvalidAudienceError),
    "wrong-issuer": (lambda: _signed(_claims(iss="else")), jwt.InvalidIssuerError),
    "alg-none": (
        lambda: jwt.encode(_claims(), None, algorithm="none"),
        jwt.InvalidAlgorithmError,
    ),
    "hs512": (lambda: _signed(_claims(), algorithm="HS512"), jwt.InvalidAlgorithmError),
    "unknown-role": (lambda: _signed(_claims(role="root")), ValueError),
    "non-integer-sub": (lambda: _signed(_claims(sub="seven")), ValueError),
    "garbage": (lambda: "not.a.token", jwt.DecodeError),
}


def test_issued_token_decodes_to_its_principal_and_expiry() -> None:
    tokens = Tokens(UNIT)
    token = tokens.issue(Principal(Role.doctor, 42))
    assert token.expires_in == UNIT.token_ttl
    assert tokens.decode(token.access_token) == (Principal(Role.doctor, 42), token.expires_at)


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_bad_token_is_unauthenticated_for_its_own_reason(kind: str) -> None:
    build, reason = BAD_TOKENS[kind]
    with pytest.raises(Unauthenticated) as refused:
        Tokens(UNIT).decode(build())
    assert isinstance(refused.value.__cause__, reason)


def test_expired_token_says_so() -> None:
    with pytest.raises(Unauthenticated, match="expired"):
        Tokens(UNIT).decode(BAD_TOKENS["expired"][0]())


def test_a_token_remembered_as_verified_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = Tokens(UNIT)
    token = tokens.issue(Principal(Role.patient, 7))
    assert tokens.decode(token.access_token)[0] == Principal(Role.patient, 7)
    later = token.expires_at + 1.0
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.decode(token.access_token)


def test_a_remembered_token_is_no_key_to_one_with_another_signature() -> None:
    tokens = Tokens(UNIT)
    good = tokens.issue(Principal(Role.admin, 1)).access_token
    tokens.decode(good)
    head, body, signature = good.split(".")
    forged = f"{head}.{body}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"  # real bits
    with pytest.raises(Unauthenticated):
        tokens.decode(forged)
    other = _signed(_claims(role="admin", sub="1"), "x" * 48)  # the same claims, another key
    with pytest.raises(Unauthenticated):
        tokens.decode(other)


def test_the_tokens_remembered_are_bounded() -> None:
    tokens = Tokens(UNIT)
    issued = [tokens.issue(Principal(Role.patient, n)).access_token for n in range(5000)]
    for token in issued:
        tokens.decode(token)
    assert len(tokens._known) == auth.KNOWN_TOKENS
    assert tokens.decode(issued[0])[0] == Principal(Role.patient, 0)  # verified again


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_bad_token_is_401_with_www_authenticate_bearer(client: TestClient, kind: str) -> None:
    answer = client.get("/patients/me", headers=bearer(BAD_TOKENS[kind][0]()))
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["error"] == "unauthenticated"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Token abc", "bearer"])
def test_malformed_authorization_header_is_401(client: TestClient, header: str) -> None:
    answer = client.get("/patients/me", headers={"Authorization": header})
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"


def test_malformed_authorization_header_is_401_even_where_signing_in_is_optional(
    client: TestClient,
) -> None:
    assert client.get("/doctors/", headers={"Authorization": "Basic eDp5"}).status_code == 401


def test_token_for_a_doctor_is_refused_on_a_patient_route(world: World) -> None:
    doctor = world.doctor()
    assert world.client.get("/patients/me", headers=doctor.headers).status_code == 403


async def test_password_verifies_against_its_hash() -> None:
    stored = await PASSWORDS.hash("s3cret password")
    assert await PASSWORDS.verify(stored, "s3cret password") is True


async def test_wrong_password_does_not_verify() -> None:
    stored = await PASSWORDS.hash("s3cret password")
    assert await PASSWORDS.verify(stored, "S3cret password") is False


@pytest.mark.parametrize(
    "garbage",
    ["", "not a hash", "$argon2id$v=19$m=1024,t=1,p=1$garbage", "$2b$12$" + "a" * 53],
)
async def test_verify_on_a_garbage_hash_is_false(garbage: str) -> None:
    assert await PASSWORDS.verify(garbage, "s3cret password") is False


async def test_verify_missing_is_always_false() -> None:
    assert await PASSWORDS.verify_missing("not a password anyone has") is False


async def test_hashes_are_argon2id_and_salted() -> None:
    first, second = await PASSWORDS.hash("same"), await PASSWORDS.hash("same")
    assert first.startswith("$argon2id$") and first != second


async def test_hashing_runs_off_the_loop_at_most_workers_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passwords = Passwords(UNIT.argon2_time_cost, UNIT.argon2_memory_kib, workers=2)
    real, lock = PasswordHasher.hash, threading.Lock()
    threads: set[int] = set()
    running = most = 0

    def watched(hasher: PasswordHasher, password: str, *, salt: bytes | None = None) -> str:
        nonlocal running, most
        with lock:
            threads.add(threading.get_ident())
            running += 1
            most = max(most, running)
        time.sleep(0.05)  # long enough for the others to pile up
        with lock:
            running -= 1
        return real(hasher, password, salt=salt)

    monkeypatch.setattr(PasswordHasher, "hash", watched)
    await asyncio.gather(*(passwords.hash(str(n)) for n in range(8)))
    assert most == 2
    assert threading.get_ident() not in threads
