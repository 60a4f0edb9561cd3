from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass

import anyio
import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from hub.config import Settings
from hub.errors import Forbidden, Unauthenticated

ALGORITHM = "HS256"


class Role(enum.StrEnum):
    patient = "patient"
    doctor = "doctor"
    admin = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a role and the id of their row in that role's table."""

    role: Role
    id: int

    def is_(self, role: Role, id_: int) -> bool:
        return self.role is role and self.id == id_


def require(principal: Principal | None, *roles: Role) -> Principal:
    """The caller, who must be signed in (and hold one of `roles`, when given)."""
    if principal is None:
        raise Unauthenticated("sign in first")
    if roles and principal.role not in roles:
        names = " or ".join(f"{'an' if role[0] in 'aeiou' else 'a'} {role}" for role in roles)
        raise Forbidden(f"only {names} may do this")
    return principal


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    expires_in: int
    expires_at: int


class Passwords:
    """argon2id hashing in worker threads, at most `workers` at once (default: one per CPU).

    One check costs ~130 ms of CPU at the default cost: on the event loop it would stop every
    socket of the process, and in unbounded threads a login flood would take every thread. The
    callers hold no database connection while they wait here."""

    def __init__(self, time_cost: int, memory_kib: int, *, workers: int | None = None) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, type=Type.ID)
        self._dummy = self._hasher.hash("not a password anyone has")
        self._limiter = anyio.CapacityLimiter(workers or os.cpu_count() or 1)

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await anyio.to_thread.run_sync(
            self._check, password_hash, password, limiter=self._limiter
        )

    async def verify_missing(self, password: str) -> bool:
        """False, after the work of a real check: an unknown email must cost what a wrong
        password costs, or timing tells them apart."""
        await self.verify(self._dummy, password)
        return False

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


class Tokens:
    """Signed access tokens (PyJWT, HS256 pinned); decoding requires every claim we issue."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.secret_key
        self._ttl = settings.token_ttl
        self._issuer = settings.token_issuer
        self._audience = settings.token_audience

    def issue(self, principal: Principal, *, now: float | None = None) -> Token:
        issued = int(time.time() if now is None else now)
        claims = {
            "sub": str(principal.id),
            "role": principal.role.value,
            "iat": issued,
            "exp": issued + self._ttl,
            "iss": self._issuer,
            "aud": self._audience,
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return Token(access_token=token, expires_in=self._ttl, expires_at=issued + self._ttl)

    def decode(self, token: str) -> tuple[Principal, int]:
        """The principal a token names and when it expires; Unauthenticated if it is not valid."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "role"]},
            )
            principal = Principal(role=Role(claims["role"]), id=int(claims["sub"]))
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise Unauthenticated("invalid token") from exc
        return principal, int(claims["exp"])
