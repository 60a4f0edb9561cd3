"""The outbox as a relay's transaction writes it: the events in one Core INSERT before the
commit (one per event where the database does not number a multi-row INSERT), the doctor's
version raised by Core, the events published in the order they were written and marked
published by the ids the INSERT gave them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import db, events
from hub.bus import Bus
from hub.config import Settings
from hub.models import Doctor, Gender, OutboxEvent, Schedule, Specialization, Status
from hub.relay import Relay
from hub.schedules import new_schedule


class _Bus:
    """A bus that keeps what it was given to publish, in order."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def publish_many(self, messages: list[tuple[str, Any]]) -> None:
        self.published.extend((channel, dict(message)) for channel, message in messages)


class _Row:
    """What record_appointment reads of an appointment."""

    def __init__(self, doctor_id: int) -> None:
        self.id, self.doctor_id, self.patient_id = 7, doctor_id, 3
        self.start_at = datetime(2027, 1, 4, 9, tzinfo=UTC)
        self.status = Status.scheduled


async def _doctor(sessions: db.SessionFactory, name: str) -> int:
    """A doctor with the default schedule, by the ORM (no accounts, no hashing)."""
    async with sessions.begin() as session:
        kind = Specialization(name=name)
        session.add(kind)
        await session.flush()
        doctor = Doctor(
            first_name=name,
            last_name="Doctor",
            email=f"{name.lower()}@example.org",
            password_hash="-",
            specialization_id=kind.id,
            date_of_birth=date(1980, 1, 1),
            gender=Gender.other,
            phone="+4420794600",
        )
        session.add(doctor)
        await session.flush()
        session.add(new_schedule(doctor.id))
        return doctor.id


@pytest.mark.parametrize("numbered", [True, False], ids=["one-insert", "one-per-event"])
async def test_a_transactions_events_are_written_in_order_published_and_marked(
    settings: Settings, numbered: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.create_engine(settings.database_url)
    if not numbered:  # as on MySQL 8, which has no INSERT ... RETURNING
        monkeypatch.setattr(
            engine.sync_engine.dialect,
            "insert_executemany_returning_sort_by_parameter_order",
            False,
        )
    try:
        sessions = db.session_factory(engine)
        doctor_id = await _doctor(sessions, "Outbox")
        bus = _Bus()
        relay = Relay(sessions, cast(Bus, bus))
        start = datetime(2027, 1, 4, 9, tzinfo=UTC)

        async def work(session: AsyncSession) -> int:
            await events.record_slot(session, doctor_id, start, "held")
            await events.record_appointment(session, _Row(doctor_id), "booked", patient_name="P")  # type: ignore[arg-type]
            return await events.record_slot(session, doctor_id, start, "booked")

        assert await relay.transaction(work) == 2
        channels = [
            f"doctor:{doctor_id}:slots",
            f"doctor:{doctor_id}:appointments",
            "patient:3:appointments",
            f"doctor:{doctor_id}:slots",
        ]
        async with sessions() as session:
            rows = (await session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))).all()
            version = await session.scalar(
                select(Schedule.version).where(Schedule.doctor_id == doctor_id)
            )
        assert version == 2
        assert [row.channel for row in rows] == channels
        assert [row.version for row in rows] == [1, None, None, 2]
        assert [row.payload.get("state") for row in rows] == ["held", None, None, "booked"]
        assert all(row.claimed_by and row.published_at is None for row in rows)
        # Published in the order written (the slot events with their commit time, unstored).
        assert [message["type"] for _, message in bus.published] == [
            "slot",
            "appointment",
            "appointment",
            "slot",
        ]
        assert [message.get("version") for _, message in bus.published] == [1, None, None, 2]
        assert "committed_at" in bus.published[0][1] and "committed_at" not in rows[0].payload
        # Marked published by the ids the INSERT gave: nothing left for a leftover sweep.
        assert await relay.flush(leftovers=False) == 0
        async with sessions() as session:
            unmarked = (
                await session.scalars(
                    select(OutboxEvent.id).where(OutboxEvent.published_at.is_(None))
                )
            ).all()
        assert unmarked == []
        assert await relay.flush() == 0
        assert len(bus.published) == 4  # marked, so never published again
    finally:
        await engine.dispose()


async def test_a_version_raised_with_the_hours_changed_keeps_both(settings: Settings) -> None:
    # The version goes by Core beside the row the unit of work flushes: neither overwrites
    # the other, and the loaded row knows its new version.
    engine = db.create_engine(settings.database_url)
    try:
        sessions = db.session_factory(engine)
        doctor_id = await _doctor(sessions, "Hours")
        relay = Relay(sessions, cast(Bus, _Bus()))

        async def change(session: AsyncSession) -> int:
            row = await events.locked_schedule(session, doctor_id)
            await events.record_hours(session, doctor_id)  # the version alone
            loaded.append(row.updated_at)
            assert row.version == 1
            row.slot_minutes, row.buffer_minutes = 45, 5  # changed after the version went
            return await events.record_hours(session, doctor_id)

        async with sessions.begin() as session:  # last changed a day ago
            old = await session.get(Schedule, doctor_id)
            assert old is not None
            old.updated_at = datetime.now(UTC) - timedelta(days=1)
        loaded: list[datetime] = []
        assert await relay.transaction(change) == 2
        async with sessions() as session:
            stored = await session.get(Schedule, doctor_id)
            assert stored is not None
            assert (stored.version, stored.slot_minutes, stored.buffer_minutes) == (2, 45, 5)
            assert stored.updated_at > datetime.now(UTC) - timedelta(minutes=1)
            # The loaded row knows the time the version went with, not the one it was read with.
            assert abs(stored.updated_at - loaded[0]) < timedelta(seconds=5)
    finally:
        await engine.dispose()
