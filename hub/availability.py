from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Literal
from zoneinfo import ZoneInfo

from hub.errors import NotOffered

SlotState = Literal["free", "held", "booked"]
ZERO = timedelta(0)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True)
class Interval:
    """Working time within one local day, [start, end) in wall-clock time."""

    start: time
    end: time


@dataclass(frozen=True, slots=True)
class Override:
    """Different hours on the local dates first..last (inclusive); no intervals is a day off."""

    first: date
    last: date
    intervals: tuple[Interval, ...] = ()


NINE_TO_FIVE = (Interval(time(9), time(17)),)


@dataclass(frozen=True)
class Availability:
    """When a doctor works, in their own time zone. The default is the original rule:
    Monday to Friday, 09:00-17:00, one-hour slots."""

    timezone: str = "UTC"
    weekly: tuple[tuple[Interval, ...], ...] = (NINE_TO_FIVE,) * 5 + ((),) * 2
    slot_minutes: int = 60
    buffer_minutes: int = 0
    notice_minutes: int = 60
    horizon_days: int = 90
    overrides: tuple[Override, ...] = field(default=())
    # A visit type's length and the buffer after it, when it is not one slot (hub.visits):
    # what must fit at a start; the grid of starts stays the slots'.
    visit_minutes: int | None = None
    visit_buffer: int = 0

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def slot(self) -> timedelta:
        return timedelta(minutes=self.slot_minutes)

    @property
    def length(self) -> timedelta:
        """How long a visit lasts: its type's minutes, or one slot."""
        return timedelta(minutes=self.visit_minutes or self.slot_minutes)

    @property
    def span(self) -> timedelta:
        """The time a visit takes from the calendar: its length and its buffer."""
        return self.length + timedelta(minutes=self.visit_buffer)

    @property
    def step(self) -> timedelta:
        return timedelta(minutes=self.slot_minutes + self.buffer_minutes)

    def intervals_on(self, day: date) -> tuple[Interval, ...]:
        """The working intervals of a local date: the last override covering it, else the week."""
        for override in reversed(self.overrides):
            if override.first <= day <= override.last:
                return override.intervals
        return self.weekly[day.weekday()]

    def local_day(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()


@dataclass(frozen=True, slots=True)
class Slot:
    start: datetime
    end: datetime
    state: SlotState


def _to_utc(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The instant a local wall time names, or None if it does not exist (a DST gap).
    An ambiguous wall time (the repeated hour) is taken once, at its first occurrence."""
    aware = wall.replace(tzinfo=zone, fold=0)
    instant = aware.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return instant


def _close(day: date, interval: Interval) -> datetime:
    if interval.end == time(0):  # an interval ending at 00:00 runs to midnight
        return datetime.combine(day + timedelta(days=1), time(0))
    return datetime.combine(day, interval.end)


def day_starts(availability: Availability, day: date) -> Iterator[datetime]:
    """Every slot start on a local date, in UTC, laid out in the doctor's wall-clock time.
    A start that does not exist (the spring-forward gap) is skipped, an ambiguous one (the
    repeated hour) is taken once, and no slot overlaps another or runs past the close."""
    zone, slot, step = availability.zone, availability.slot, availability.step
    span = availability.span
    midnight = datetime.combine(day, time(0))
    offset = zone.utcoffset(midnight)
    if offset is not None and offset == zone.utcoffset(midnight + timedelta(days=1)):
        # No clock change today (no zone changes twice within a day): plain arithmetic.
        for interval in availability.intervals_on(day):
            wall = datetime.combine(day, interval.start)
            close = _close(day, interval)
            while wall + span <= close:
                yield (wall - offset).replace(tzinfo=UTC)
                wall += step
        return
    for interval in availability.intervals_on(day):
        wall = datetime.combine(day, interval.start)
        close = _close(day, interval)
        busy_until = None
        while wall + min(slot, span) <= close:
            instant = _to_utc(wall, zone)
            # A slot lasts its length in real time. Across a change its wall-clock end moves,
            # so it must still end by the close, and the next start must not fall inside it.
            if instant is not None and (busy_until is None or instant >= busy_until):
                # Read its last moment on the wall clock: an end that coincides with a jump
                # forward shows the later wall time although it is the same instant.
                last = instant + span - timedelta(microseconds=1)
                if last.astimezone(zone).replace(tzinfo=None) < close:
                    yield instant
                    busy_until = instant + slot
            wall += step


def _bounds(availability: Availability, now: datetime) -> tuple[datetime, datetime]:
    earliest = now + timedelta(minutes=availability.notice_minutes)
    return earliest, now + timedelta(days=availability.horizon_days)


def offered(
    availability: Availability, first: date, last: date, now: datetime
) -> Iterator[datetime]:
    """The starts a patient may book on local dates first..last: after the notice, within
    the horizon, in time order."""
    earliest, latest = _bounds(availability, now)
    day = first
    while day <= last:
        for start in day_starts(availability, day):
            if earliest <= start <= latest:
                yield start
        day += timedelta(days=1)


def calendar(
    availability: Availability,
    first: date,
    last: date,
    now: datetime,
    booked: Iterable[tuple[datetime, datetime]],
    held: Collection[datetime] = (),
) -> list[Slot]:
    """Every offered slot on local dates first..last with its state. A slot is booked when
    an active appointment overlaps it (appointments may predate a change of slot length),
    held when a live hold names its start, and free otherwise. With a visit type, a slot
    lasts the type's length, and it is booked when its span (length and buffer) meets the
    time an appointment takes (`booked` gives each with its buffer)."""
    taken = sorted(booked)
    length, span = availability.length, availability.span
    slots: list[Slot] = []
    index = 0
    for start in offered(availability, first, last, now):
        end = start + span
        while index < len(taken) and taken[index][1] <= start:
            index += 1
        busy = False
        for taken_start, taken_end in taken[index:]:
            if taken_start >= end or busy:
                break
            busy = start < taken_end
        state: SlotState = "booked" if busy else "held" if start in held else "free"
        slots.append(Slot(start, start + length, state))
    return slots


def covers(availability: Availability, start: datetime) -> bool:
    """Whether `start` is a slot start of the doctor's hours (notice and horizon aside)."""
    start = start.astimezone(UTC)
    day = availability.local_day(start)
    zone, span, step = availability.zone, availability.span, availability.step
    midnight = datetime.combine(day, time(0))
    offset = zone.utcoffset(midnight)
    if offset is None or offset != zone.utcoffset(midnight + timedelta(days=1)):
        return start in set(day_starts(availability, day))  # a clock change today
    # As day_starts lays the day out, without laying it out: on the grid of an interval.
    wall = start.replace(tzinfo=None) + offset
    for interval in availability.intervals_on(day):
        first = datetime.combine(day, interval.start)
        if first <= wall and wall + span <= _close(day, interval) and (wall - first) % step == ZERO:
            return True
    return False


def check_offered(availability: Availability, start: datetime, now: datetime) -> datetime:
    """`start` in UTC if the doctor offers it; NotOffered naming the reason if not."""
    start = start.astimezone(UTC)
    # A start whose local day is past the calendar's edge is far outside the bounds below.
    with contextlib.suppress(OverflowError):
        _check_hours(availability, start)
    earliest, latest = _bounds(availability, now)
    if start < earliest:
        raise NotOffered("too_soon", f"book at least {availability.notice_minutes} minutes ahead")
    if start > latest:
        raise NotOffered("beyond_horizon", f"book at most {availability.horizon_days} days ahead")
    return start


def _check_hours(availability: Availability, start: datetime) -> None:
    day = availability.local_day(start)
    intervals = availability.intervals_on(day)
    if not covers(availability, start):
        if not intervals:
            raise NotOffered("day_off", f"the doctor does not work on {day.isoformat()}")
        wall = start.astimezone(availability.zone).time()
        if any(i.start <= wall and (wall < i.end or i.end == time(0)) for i in intervals):
            raise NotOffered(
                "misaligned",
                f"slots are {availability.slot_minutes} minutes from the start of working hours",
            )
        raise NotOffered("outside_hours", "the doctor does not work at that time")
