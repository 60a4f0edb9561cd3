"""The audit trail: every read or change of a patient's record or appointments, over REST or
WebSocket, and every refused attempt, as one row (UTC time, actor, role, action, resource,
outcome, channel, request id; no names, tokens or free text).

The edges note each one here; the rows are written in batches (every sweeper tick, half a
second, and when the process stops), so auditing adds no transaction to a booking. A process
killed outright loses at most its last half second of rows. Admins read them at `GET /audit`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Table, insert, select

from hub.auth import Principal, Role, require
from hub.clock import Clock
from hub.db import SessionFactory
from hub.models import AuditEvent

log = logging.getLogger("hub.audit")
Channel = Literal["rest", "ws"]
MAX_BUFFERED = 100_000  # rows kept while the database is away; the oldest go first
_INSERT = insert(cast(Table, AuditEvent.__table__))


@dataclass(frozen=True, slots=True)
class Filter:
    actor_role: Role | None = None
    actor_id: int | None = None
    action: str | None = None
    resource: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


class Audit:
    def __init__(self, sessions: SessionFactory, clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        self._pending: list[dict[str, object]] = []  # rows of audit_events to insert

    def note(
        self,
        caller: Principal | None,
        action: str,
        resource: str,
        outcome: str,
        channel: Channel,
        request_id: str | None = None,
    ) -> None:
        """Keep one row to write with the next batch."""
        if len(self._pending) >= MAX_BUFFERED:
            del self._pending[: MAX_BUFFERED // 10]
            log.warning("audit rows dropped: the database has been away too long")
        self._pending.append(
            {
                "at": self._clock(),
                "actor_role": caller.role.value if caller else None,
                "actor_id": caller.id if caller else None,
                "action": action,
                "resource": resource,
                "outcome": outcome,
                "channel": channel,
                "request_id": request_id,
            }
        )

    async def flush(self) -> int:
        """Write what was noted; kept for the next try if the database refuses."""
        batch, self._pending = self._pending, []
        if not batch:
            return 0
        try:
            async with self._sessions.begin() as session:
                await session.execute(_INSERT, batch)
        except BaseException:
            self._pending[:0] = batch
            raise
        return len(batch)

    async def read(self, principal: Principal | None, where: Filter) -> Sequence[AuditEvent]:
        """Rows, newest first, for admins (what this process noted is written first)."""
        require(principal, Role.admin)
        await self.flush()
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(where.limit)
        conditions: list[Any] = []
        if where.actor_role is not None:
            conditions.append(AuditEvent.actor_role == where.actor_role.value)
        if where.actor_id is not None:
            conditions.append(AuditEvent.actor_id == where.actor_id)
        if where.action is not None:
            conditions.append(AuditEvent.action == where.action)
        if where.resource is not None:
            conditions.append(AuditEvent.resource == where.resource)
        if where.outcome is not None:
            conditions.append(AuditEvent.outcome == where.outcome)
        if where.since is not None:
            conditions.append(AuditEvent.at >= where.since)
        if where.until is not None:
            conditions.append(AuditEvent.at < where.until)
        async with self._sessions() as session:
            return (await session.scalars(query.where(*conditions))).all()
