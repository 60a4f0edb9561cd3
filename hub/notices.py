"""Notifications: what the hub tells people by email (and, where a clinic plugs one in, by
SMS), written in the transaction of the change as the outbox is, and sent by whichever
process claims it when it falls due.

Written: booked, rescheduled, cancelled (who and why), a waitlist offer, the reminders before
the start (HUB_REMINDERS, 24 h and 2 h by default; one that would fall in the quiet hours,
21:00-08:00 in the patient's zone, is moved earlier), and the verification and password-reset
links. Sent: every process's `Sender` claims due rows (a claim decides who; a claim left by a
process that died goes stale after a minute), reads the appointment again and drops what no
longer applies (a reminder of an appointment cancelled or moved since, a confirmation of one
cancelled since, an offer that ended, a kind the person turned off), sends the rest through
its transports, retries a failure with back-off, and records the delivery.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.clock import Clock, utcnow
from hub.db import SessionFactory
from hub.driver import Statement
from hub.models import Delivery, Notice, Notification

log = logging.getLogger("hub.notices")
STALE = timedelta(seconds=60)  # a claim older than this was made by a process that died
BATCH = 50
ATTEMPTS = 6
BACKOFF = (5, 30, 120, 600, 1800)  # seconds before the next attempt
QUIET_MARGIN = timedelta(minutes=5)  # a reminder moved out of the quiet hours goes this early


@dataclass(frozen=True, slots=True)
class Policy:
    """When reminders go: minutes before the start, and the quiet hours (local to the
    patient) during which none is sent; `sms` also sends reminders as text messages."""

    reminders: tuple[int, ...] = (1440, 120)
    quiet: tuple[int, int] = (21, 8)
    sms: bool = False


DEFAULT = Policy()
_INSERT = Statement.into(cast(Table, Notification.__table__))


def rows(
    kind: Notice,
    role: str,
    account_id: int,
    now: datetime,
    *,
    appointment_id: int | None = None,
    start: datetime | None = None,
    due: datetime | None = None,
    channel: str = "email",
    payload: dict[str, object] | None = None,
) -> dict[str, object]:
    """One notification row's values."""
    return {
        "kind": kind.value,
        "channel": channel,
        "role": role,
        "account_id": account_id,
        "appointment_id": appointment_id,
        "start_at": start,
        "payload": payload or {},
        "due_at": due or now,
        "state": Delivery.pending.value,
        "attempts": 0,
        "created_at": now,
    }


WRITTEN = "hub.notices.written"  # in a session's info: its transaction wrote notifications


async def write(session: AsyncSession, values: Sequence[dict[str, object]]) -> None:
    """Write notification rows in the caller's transaction (one statement, however many);
    the process's sender is woken once it commits (hub.db.after_commit)."""
    if values:
        await _INSERT.run_many(session, values)
        session.info[WRITTEN] = True


def zone_of(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    """A person's own zone, or `fallback` (the doctor's) when they have none or this host
    does not know the one the database holds."""
    try:
        return ZoneInfo(name) if name else fallback
    except (ValueError, KeyError):
        return fallback


def reminder_times(
    policy: Policy, start: datetime, now: datetime, zone: ZoneInfo
) -> list[datetime]:
    """When the reminders of an appointment starting at `start` fall due: each lead time
    before it, moved earlier out of the quiet hours (in `zone`); none already past."""
    begin, end = policy.quiet
    due: list[datetime] = []
    for minutes in policy.reminders:
        at = start - timedelta(minutes=minutes)
        local = at.astimezone(zone)
        if local.hour >= begin or local.hour < end:  # quiet: the evening before it, at 20:55
            day = local.date() if local.hour >= begin else local.date() - timedelta(days=1)
            quiet_from = datetime.combine(day, time(begin), tzinfo=zone)
            at = quiet_from - QUIET_MARGIN
        if at > now and at not in due:
            due.append(at)
    return due


def booked_rows(
    policy: Policy,
    *,
    patient_id: int,
    appointment_id: int,
    start: datetime,
    now: datetime,
    zone: ZoneInfo,
    moved: bool,
) -> list[dict[str, object]]:
    """The confirmation of a booking (or a move) and its reminders."""
    kind = Notice.rescheduled if moved else Notice.booked
    values = [rows(kind, "patient", patient_id, now, appointment_id=appointment_id, start=start)]
    for due in reminder_times(policy, start, now, zone):
        channels = ("email", "sms") if policy.sms else ("email",)
        for channel in channels:
            values.append(
                rows(
                    Notice.reminder,
                    "patient",
                    patient_id,
                    now,
                    appointment_id=appointment_id,
                    start=start,
                    due=due,
                    channel=channel,
                )
            )
    return values


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=BACKOFF[min(attempts, len(BACKOFF)) - 1])


# The earliest unclaimed due time, read off the (state, due_at) index in its order: the
# first unclaimed row ends the read. MIN() with the claim's condition, which that index does
# not hold, read every pending row (MariaDB scanned the whole table: 44,787 rows and 7.7 ms
# for each round of each process's sender, and growing with every reminder written).
NEXT_DUE = (
    select(Notification.due_at)
    .where(Notification.state == Delivery.pending, Notification.claimed_at.is_(None))
    .order_by(Notification.due_at)
    .limit(1)
)
Outcome = tuple[Notification, Delivery, str | None]  # a claimed row, what became of it, why


class Claims:
    """Claiming due notifications for one process (`token`), and recording their outcome."""

    def __init__(self, sessions: SessionFactory, clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._clock = clock
        self.token = secrets.token_hex(16)

    async def claim(self, limit: int = BATCH) -> list[Notification]:
        """Due notifications, claimed for this process (none is claimed by two)."""
        now = self._clock()
        due = (
            (Notification.state == Delivery.pending)
            & (Notification.due_at <= now)
            & (Notification.claimed_at.is_(None) | (Notification.claimed_at < now - STALE))
        )
        async with self._sessions.begin() as session:
            ids = (
                await session.scalars(
                    select(Notification.id).where(due).order_by(Notification.due_at).limit(limit)
                )
            ).all()
            if not ids:
                return []
            await session.execute(
                update(Notification)
                .where(Notification.id.in_(ids), due)
                .values(claimed_by=self.token, claimed_at=now)
            )
        async with self._sessions() as session:
            claimed = await session.scalars(
                select(Notification)
                .where(  # by key: what this round claimed of the ids it picked
                    Notification.id.in_(ids),
                    Notification.claimed_by == self.token,
                    Notification.claimed_at == now,
                    Notification.state == Delivery.pending,
                )
                .order_by(Notification.id)
            )
            return list(claimed)

    async def next_due(self) -> datetime | None:
        """When the earliest notification that nobody has claimed falls due (None: none)."""
        async with self._sessions() as session:
            return await session.scalar(NEXT_DUE)

    async def done(self, row: Notification, state: Delivery, detail: str | None = None) -> bool:
        """Record what became of a claimed notification; False if the claim was lost."""
        return bool(await self.finish([(row, state, detail)]))

    async def finish(self, outcomes: Sequence[Outcome]) -> int:
        """Record what became of claimed notifications, in one transaction (one statement
        per kind of outcome); how many were still this process's claims."""
        groups: dict[tuple[Delivery, str | None], list[int]] = {}
        for row, state, detail in outcomes:
            groups.setdefault((state, detail[:200] if detail else None), []).append(row.id)
        if not groups:
            return 0
        now, recorded = self._clock(), 0
        async with self._sessions.begin() as session:
            for (state, detail), ids in groups.items():
                result = cast(
                    CursorResult[Any],
                    await session.execute(
                        update(Notification)
                        .where(Notification.id.in_(ids), Notification.claimed_by == self.token)
                        .values(
                            state=state,
                            sent_at=now if state is Delivery.sent else None,
                            detail=detail,
                            claimed_by=None,
                            claimed_at=None,
                        )
                    ),
                )
                recorded += result.rowcount
        return recorded

    async def retry(self, row: Notification, error: str) -> None:
        """A failed attempt: again after a back-off, or failed for good after ATTEMPTS."""
        attempts = row.attempts + 1
        if attempts >= ATTEMPTS:
            await self.done(row, Delivery.failed, error)
            return
        async with self._sessions.begin() as session:
            await session.execute(
                update(Notification)
                .where(Notification.id == row.id, Notification.claimed_by == self.token)
                .values(
                    attempts=attempts,
                    due_at=self._clock() + backoff(attempts),
                    detail=error[:200],
                    claimed_by=None,
                    claimed_at=None,
                )
            )
