from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import SessionFactory
from hub.errors import IdempotencyMismatch
from hub.events import utc_text
from hub.models import IdempotencyKey

KEY_LIFETIME = timedelta(hours=48)  # an Idempotency-Key answers retries for at least this long


class Replayed(Exception):
    """The same idempotency key was committed by a concurrent retry."""


@dataclass(frozen=True, slots=True)
class Key:
    """A booking request's Idempotency-Key: unique per patient, with a hash of what it asked."""

    patient_id: int
    key: str
    fingerprint: str

    @classmethod
    def of(
        cls, patient_id: int, key: str, doctor_id: int, start: datetime, hold_id: str | None
    ) -> Key:
        body = json.dumps([doctor_id, utc_text(start), hold_id])
        return cls(patient_id, key, hashlib.sha256(body.encode()).hexdigest())


async def replay(sessions: SessionFactory, key: Key) -> int | None:
    """The appointment a key already booked, None if it booked none yet;
    IdempotencyMismatch if it was used with another request."""
    stored = await _stored(sessions, key)
    if stored is None:
        return None
    if stored.request_hash != key.fingerprint:
        raise IdempotencyMismatch()
    return stored.appointment_id


async def record(session: AsyncSession, key: Key, appointment_id: int, at: datetime) -> None:
    """Store, in the booking's transaction, that the key booked this appointment; Replayed
    if a concurrent retry with the same key committed first."""
    session.add(
        IdempotencyKey(
            patient_id=key.patient_id,
            key=key.key,
            request_hash=key.fingerprint,
            appointment_id=appointment_id,
            created_at=at,
        )
    )
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Replayed() from exc


async def forget(sessions: SessionFactory, now: datetime, older_than: timedelta) -> int:
    """Delete the keys stored before `now - older_than`; how many."""
    async with sessions.begin() as session:
        gone = await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < now - older_than)
        )
    return int(cast(CursorResult[Any], gone).rowcount)


async def _stored(sessions: SessionFactory, key: Key) -> IdempotencyKey | None:
    async with sessions() as session:
        found: IdempotencyKey | None = await session.scalar(
            select(IdempotencyKey).where(
                IdempotencyKey.patient_id == key.patient_id, IdempotencyKey.key == key.key
            )
        )
    return found
