"""Whether the account a token names still stands: it exists, it is active, and it has not
ended the sessions of the epoch the token was issued in. Checked on every REST request and
every WebSocket sign-in, so a token outlives neither its account nor a password change.

Each process keeps what it read for `TTL` seconds (a signed-in page polling, a booking burst:
one read per account per moment, not per request); the process that ends a session forgets
it at once, the others within `TTL`. Live WebSocket sessions are ended through the account's
feed (`events.record_session_end`), not by this cache.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Select, bindparam, select

from hub.accounts import TABLES
from hub.auth import Principal, Role
from hub.db import SessionFactory
from hub.errors import Unauthenticated
from hub.models import Doctor

TTL = 2.0
MAX_CACHED = 50_000  # accounts; past it the cache starts again (a bound, not an eviction policy)


@dataclass(frozen=True, slots=True)
class Standing:
    active: bool
    epoch: int
    approved: bool  # an admin approved the doctor; always true of patients and admins


class Standings:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions
        self._cache: dict[tuple[Role, int], tuple[float, Standing | None]] = {}
        # Reads under way: whoever asks about the same account meanwhile (a storm of one
        # account's sessions) waits for that read instead of starting another.
        self._reading: dict[tuple[Role, int], asyncio.Future[Standing | None]] = {}

    async def ensure(self, principal: Principal) -> Principal:
        """The caller as they stand now (a doctor's approval included); Unauthenticated if
        their session has ended."""
        standing = await self.of(principal.role, principal.id)
        if standing is None or not standing.active or principal.epoch < standing.epoch:
            raise Unauthenticated("this session has ended: sign in again")
        return replace(principal, approved=standing.approved)

    async def of(self, role: Role, id_: int) -> Standing | None:
        key = (role, id_)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < TTL:
            return cached[1]
        reading = self._reading.get(key)
        if reading is not None:
            try:
                return await asyncio.shield(reading)
            except Exception:  # that read failed: try alone
                return await self._read(role, id_)
        reading = self._reading[key] = asyncio.get_running_loop().create_future()
        try:
            standing = await self._read(role, id_)
        except BaseException as exc:
            reading.set_exception(RuntimeError(f"standing not read: {exc!r}"))
            reading.exception()  # retrieved: nobody may be waiting
            raise
        finally:
            current = self._reading.get(key) is reading  # not forgotten meanwhile
            if current:
                del self._reading[key]
        reading.set_result(standing)
        if current:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[key] = (now, standing)
        return standing

    def forget(self, role: Role, id_: int) -> None:
        """This process changed the account: read it again next time (a read under way
        since before the change is neither kept nor joined)."""
        self._cache.pop((role, id_), None)
        self._reading.pop((role, id_), None)

    async def _read(self, role: Role, id_: int) -> Standing | None:
        async with self._sessions() as session:
            row = (await session.execute(_READS[role], {"id": id_})).first()
        if row is None:
            return None
        return Standing(bool(row[0]), int(row[1]), bool(row[2]) if role is Role.doctor else True)


def _read_of(role: Role) -> Select[*tuple[Any, ...]]:
    table = TABLES[role]
    approved = [Doctor.approved] if role is Role.doctor else []
    return select(table.active, table.session_epoch, *approved).where(table.id == bindparam("id"))


# Built once: building a statement cost more than running it (a storm of sign-ins, py-spy).
_READS = {role: _read_of(role) for role in TABLES}
