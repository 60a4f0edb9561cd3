from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub import events, protocol
from hub.bus import Bus
from hub.clock import Clock, utcnow
from hub.db import SessionFactory, transaction
from hub.metrics import Metrics
from hub.models import OutboxEvent

log = logging.getLogger("hub.relay")
T = TypeVar("T")
STALE = timedelta(seconds=3)  # a claim older than this was made by a process that died
BATCH = 500


class Relay:
    """Publishes committed outbox events on the bus.

    A change commits its events already claimed by this process (`transaction`); right after
    the commit they are published from memory, in commit order, with no lock and no read,
    and marked published later in one batched UPDATE (`flush`, on the sweeper's tick). Every
    process also looks for leftovers: events a process committed and never published (it
    died, or the bus was away), whose claim went stale. Viewers ignore a version they hold
    already, so an event published twice is harmless."""

    def __init__(
        self,
        sessions: SessionFactory,
        bus: Bus,
        metrics: Metrics | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._token = secrets.token_hex(16)
        self._published: list[int] = []  # published, not yet marked so
        self._listeners: list[Callable[[protocol.Event], None]] = []

    def listen(self, listener: Callable[[protocol.Event], None]) -> None:
        """Have `listener` called with every committed event this process publishes (or
        tries to: the commit happened), as it is published."""
        self._listeners.append(listener)

    async def transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` in one transaction (db.transaction: deadlocks retried), then publish
        the events it wrote. The change is committed whatever happens to the publishing."""
        written: list[OutboxEvent] = []

        async def claimed(session: AsyncSession) -> T:
            written.clear()  # a retried attempt writes its events again
            events.claim_for(session, self._token, self._clock(), written)
            result = await work(session)
            await events.write_claimed(session, written)
            return result

        result = await transaction(self._sessions, claimed)
        committed = events.utc_text(self._clock())
        for row in written:
            if row.payload.get("type") == "slot":
                row.payload = {**row.payload, "committed_at": committed}  # not stored
        await self._publish(written)
        return result

    async def _publish(self, rows: list[OutboxEvent]) -> None:
        if not rows:
            return
        for listener in self._listeners:
            for row in rows:
                try:
                    listener(protocol.event(row.payload))
                except Exception:  # a listener's fault is not the change's
                    log.exception("a listener of the relay failed")
        try:
            await self._bus.publish_many([(r.channel, protocol.event(r.payload)) for r in rows])
            self._metrics.published.inc(len(rows))
            self._published.extend(row.id for row in rows)
        except Exception as exc:  # the claim goes stale and some process publishes it
            log.warning("publishing events failed (the relay retries): %r", exc)

    async def flush(self, leftovers: bool = True) -> int:
        """Mark what this process published; then (with `leftovers`) publish the leftovers,
        oldest first; how many leftovers this call published."""
        await self._acknowledge()
        if not leftovers:
            return 0
        now = self._clock()
        await self._measure(now)
        pending = OutboxEvent.published_at.is_(None) & (
            OutboxEvent.claimed_at.is_(None) | (OutboxEvent.claimed_at < now - STALE)
        )
        token = secrets.token_hex(16)
        async with self._sessions.begin() as session:
            ids = (
                await session.scalars(
                    select(OutboxEvent.id).where(pending).order_by(OutboxEvent.id).limit(BATCH)
                )
            ).all()
            if not ids:
                return 0
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(ids), pending)
                .values(claimed_at=now, claimed_by=token)
            )
        async with self._sessions() as session:
            claimed = (
                await session.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.claimed_by == token)
                    .order_by(OutboxEvent.id)
                )
            ).all()
        await self._publish(list(claimed))
        await self._acknowledge()
        return len(claimed)

    async def _measure(self, now: datetime) -> None:
        """How far the outbox is behind, for the metrics (the alert on outbox lag): events
        other processes published are marked on their next tick, so a healthy outbox reads
        under a second or two; one that grows means nobody is publishing."""
        async with self._sessions() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(OutboxEvent.created_at)).where(
                        OutboxEvent.published_at.is_(None)
                    )
                )
            ).one()
        lag = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        self._metrics.outbox_lag.set(lag)
        self._metrics.outbox_unpublished.set(count)

    async def flush_quietly(self, leftovers: bool = True) -> None:
        """Flush, logging instead of raising: the timer tries again."""
        try:
            await self.flush(leftovers)
        except Exception as exc:
            log.warning("relaying events failed (the relay retries): %r", exc)

    async def _acknowledge(self) -> None:
        done, self._published = self._published, []
        try:
            for first in range(0, len(done), BATCH):
                async with self._sessions.begin() as session:
                    await session.execute(
                        update(OutboxEvent)
                        .where(OutboxEvent.id.in_(done[first : first + BATCH]))
                        .values(published_at=self._clock())
                    )
        except Exception:
            self._published = done + self._published  # next time
            raise
