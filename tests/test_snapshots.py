"""Snapshots for a storm of viewers: one read per doctor and dates at a time, shared by whoever
asked while the one before it ran, never older than the moment a caller asked; one view object
(and one serialised frame) for every viewer who sees no one's appointment."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hub import runtime
from hub.auth import Principal, Role
from hub.calendar import Layout, Window
from hub.config import Settings
from hub.ws.frames import Snapshots
from tests.conftest import World, slot


def window() -> Window:
    day = slot(10).date().isoformat()
    return Window.parse(day, day)


async def test_a_storm_of_snapshot_asks_runs_one_read_at_a_time_each_fresh_from_its_ask(
    world: World, settings: Settings
) -> None:
    doctor, booker = world.doctor(), world.patient()
    async with runtime.open_hub(settings) as hub:
        calendar = hub.calendar
        real = calendar._versioned
        running, most, reads = 0, 0, 0
        first_read_done = asyncio.Event()
        release_first = asyncio.Event()

        async def versioned(doctor_id: int, shown: Window) -> tuple[int, Layout]:
            nonlocal running, most, reads
            running += 1
            most, reads = max(most, running), reads + 1
            try:
                result = await real(doctor_id, shown)
                if reads == 1:  # the first read is slow: asks pile up behind it
                    first_read_done.set()
                    await release_first.wait()
                return result
            finally:
                running -= 1

        calendar._versioned = versioned  # type: ignore[method-assign]
        viewers = [Principal(Role.patient, 10_000 + n) for n in range(200)]
        first = asyncio.create_task(calendar.snapshot(viewers[0], doctor.id, window()))
        await first_read_done.wait()
        # A change lands after the first read took its version; whoever asks from now on
        # must see it.
        await asyncio.to_thread(world.book, booker, doctor, slot(10))
        later = [
            asyncio.create_task(calendar.snapshot(viewer, doctor.id, window()))
            for viewer in viewers[1:]
        ]
        await asyncio.sleep(0.05)
        release_first.set()
        (old_version, _), *answers = await asyncio.gather(first, *later)

    assert most == 1, f"{most} reads of one doctor ran at once"
    assert reads == 2, f"{reads} reads for 200 asks"
    assert {version for version, _ in answers} == {old_version + 1}
    booked = [s for s in answers[0][1].slots if s.start == slot(10)]
    assert [s.state for s in booked] == ["booked"]
    # None of the 199 is party to the appointment: they share one view, which names no one.
    assert len({id(view) for _, view in answers}) == 1
    assert all(s.patient_id is None and s.appointment_id is None for s in answers[0][1].slots)


async def test_whoever_is_party_to_an_appointment_gets_their_own_view(
    world: World, settings: Settings
) -> None:
    doctor, booker = world.doctor(), world.patient()
    booked = world.book(booker, doctor, slot(11))
    async with runtime.open_hub(settings) as hub:
        shown = window()
        asks = {
            "stranger": Principal(Role.patient, 999_999),
            "other": Principal(Role.patient, 999_998),
            "booker": Principal(Role.patient, booker.id),
            "doctor": Principal(Role.doctor, doctor.id),
            "anonymous": None,
        }
        views = {
            name: (await hub.calendar.snapshot(who, doctor.id, shown))[1]
            for name, who in asks.items()
        }

    def named(name: str) -> list[tuple[Any, Any]]:
        return [(s.appointment_id, s.patient_id) for s in views[name].slots if s.start == slot(11)]

    assert named("booker") == named("doctor") == [(booked["id"], booker.id)]
    assert named("stranger") == named("other") == named("anonymous") == [(None, None)]
    assert views["booker"] is not views["stranger"]


async def test_calendar_reads_asked_at_once_share_one_read_but_the_desks_is_its_own(
    world: World, settings: Settings
) -> None:
    # A clinic's morning: many patients read the same doctor's week at once over REST.
    doctor = world.doctor()
    async with runtime.open_hub(settings) as hub:
        calendar = hub.calendar
        real = calendar._versioned
        reads = 0

        async def versioned(doctor_id: int, shown: Window) -> tuple[int, Layout]:
            nonlocal reads
            reads += 1
            return await real(doctor_id, shown)

        calendar._versioned = versioned  # type: ignore[method-assign]
        patients = [Principal(Role.patient, 20_000 + n) for n in range(50)]
        views = await asyncio.gather(
            *(calendar.view(who, doctor.id, window()) for who in [*patients, None])
        )
        assert reads == 1, f"{reads} reads for 51 asks"
        assert len({id(view) for view in views}) == 1
        # The front desk and the doctor may see front-desk-only visit types: their own read.
        for who in (Principal(Role.staff, 1), Principal(Role.doctor, doctor.id)):
            await calendar.view(who, doctor.id, window())
        assert reads == 1


def test_a_shared_snapshot_frame_carries_each_clients_ref() -> None:
    from hub.calendar import CalendarView, SlotView
    from hub.schedules import Policy

    start = slot(9)
    view = CalendarView(7, "UTC", (SlotView(start, start, "free"),), Policy(), shared=True)
    frames = Snapshots(keep=2, keep_bytes=10_000)
    plain, mine = frames.of(3, view, None), frames.of(3, view, 'a "quoted" ref')
    assert json.loads(mine) == {**json.loads(plain), "ref": 'a "quoted" ref'}
    assert json.loads(plain)["version"] == 3 and "ref" not in json.loads(plain)
    assert frames.of(3, view, None) is plain  # built once
    assert frames.of(4, view, None) != plain  # a new version is a new frame
    # A view naming someone is serialised for its one viewer and not kept.
    private = CalendarView(7, "UTC", (SlotView(start, start, "booked", 5, 6),), Policy())
    assert frames.of(3, private, None) is not frames.of(3, private, None)
    # Kept within the bytes allowed: a frame too large is not kept at all.
    big = CalendarView(7, "UTC", (SlotView(start, start, "free"),) * 200, Policy(), shared=True)
    assert frames.of(3, big, None) is not frames.of(3, big, None)
    assert frames.of(4, view, None) is frames.of(4, view, None)
