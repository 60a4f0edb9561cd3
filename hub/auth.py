from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import anyio
import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from hub.config import Settings
from hub.errors import Forbidden, Overloaded, Unauthenticated

ALGORITHM = "HS256"
KNOWN_TOKENS = 4096  # tokens a process remembers having verified (about 1.5 MB)
T = TypeVar("T")


class Role(enum.StrEnum):
    patient = "patient"
    doctor = "doctor"
    admin = "admin"
    staff = "staff"  # the front desk

    @property
    def path(self) -> str:
        """Where this role's accounts live in the REST API: /patients, /doctors, /admins, /staff."""
        return "/staff" if self is Role.staff else f"/{self.value}s"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a role and the id of their row in that role's table, and the session
    epoch their token was issued in (not part of who they are: two principals of one account
    are equal)."""

    role: Role
    id: int
    epoch: int = field(default=0, compare=False)
    approved: bool = field(default=True, compare=False)  # a doctor an admin approved

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
    """argon2id hashing in worker threads, at most `workers` at once (default: one per CPU),
    with at most `queue` more waiting (default: no bound); past that a call is refused at once
    with Overloaded.

    One check costs ~130 ms of CPU at the default cost: on the event loop it would stop every
    socket of the process, and in unbounded threads a login flood would take every thread; an
    unbounded wait would answer everyone late instead of some at once. The callers hold no
    database connection while they wait here."""

    def __init__(
        self,
        time_cost: int,
        memory_kib: int,
        *,
        workers: int | None = None,
        queue: int | None = None,
    ) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, type=Type.ID)
        self._dummy = self._hasher.hash("not a password anyone has")
        self._limiter = anyio.CapacityLimiter(workers or os.cpu_count() or 1)
        self._most = None if queue is None else int(self._limiter.total_tokens) + queue
        self._pending = 0  # running or waiting for a worker

    async def hash(self, password: str) -> str:
        return await self._run(partial(self._hasher.hash, password))

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(partial(self._check, password_hash, password))

    async def _run(self, call: Callable[[], T]) -> T:
        if self._most is not None and self._pending >= self._most:
            raise Overloaded("too many password checks at once: try again in a moment")
        self._pending += 1
        try:
            return await anyio.to_thread.run_sync(call, limiter=self._limiter)
        finally:
            self._pending -= 1

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
        # Tokens verified before, by their whole text (signature included), with what they
        # name: a client sends the same one with every request, and parsing and checking it
        # again was a seventh of a booking request's own work. Its expiry is checked on every
        # use; whether its account may still sign in is the caller's check (hub.standing).
        self._known: dict[str, tuple[Principal, int]] = {}

    def issue(self, principal: Principal, *, now: float | None = None) -> Token:
        issued = int(time.time() if now is None else now)
        claims = {
            "sub": str(principal.id),
            "role": principal.role.value,
            "gen": principal.epoch,
            "iat": issued,
            "exp": issued + self._ttl,
            "iss": self._issuer,
            "aud": self._audience,
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return Token(access_token=token, expires_in=self._ttl, expires_at=issued + self._ttl)

    def decode(self, token: str) -> tuple[Principal, int]:
        """The principal a token names and when it expires; Unauthenticated if it is not valid."""
        known = self._known.get(token)
        if known is None:
            known = self._verify(token)
            if len(self._known) >= KNOWN_TOKENS:
                del self._known[next(iter(self._known))]  # the oldest
            self._known[token] = known
        elif known[1] <= time.time():  # as PyJWT decides it, with no leeway
            del self._known[token]
            raise Unauthenticated("token expired")
        return known

    def _verify(self, token: str) -> tuple[Principal, int]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "role"]},
            )
            epoch = claims.get("gen", 0)
            if type(epoch) is not int:
                raise ValueError("gen")
            principal = Principal(role=Role(claims["role"]), id=int(claims["sub"]), epoch=epoch)
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise Unauthenticated("invalid token") from exc
        return principal, int(claims["exp"])
