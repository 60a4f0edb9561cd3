from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta

from hub.errors import NotOffered

# The original design's rule, until per-doctor availability replaces it: one-hour slots
# on the hour, 09:00-17:00 UTC, Monday to Friday, in the future.
SLOT = timedelta(hours=1)
OPENS = time(9)
CLOSES = time(17)
WORKDAYS = range(5)


def day_slots(day: date) -> list[datetime]:
    """Every slot start the rule offers on `day`, in UTC."""
    if day.weekday() not in WORKDAYS:
        return []
    first = datetime.combine(day, OPENS, tzinfo=UTC)
    last = datetime.combine(day, CLOSES, tzinfo=UTC) - SLOT
    count = int((last - first) / SLOT) + 1
    return [first + i * SLOT for i in range(count)]


def free_slots(day: date, taken: Collection[datetime], now: datetime) -> list[datetime]:
    """The starts on `day` that are offered, in the future and not taken."""
    return [start for start in day_slots(day) if start > now and start not in taken]


def check_offered(start: datetime, now: datetime) -> datetime:
    """`start` in UTC if the rule offers it; NotOffered naming the reason if not."""
    start = start.astimezone(UTC)
    if start <= now:
        raise NotOffered("too_soon", "the slot has already started or passed")
    if start.weekday() not in WORKDAYS:
        raise NotOffered("day_off", "the doctor does not work on that day")
    if (start.minute, start.second, start.microsecond) != (0, 0, 0):
        raise NotOffered("misaligned", "slots start on the hour")
    if not OPENS <= start.time() < CLOSES:
        raise NotOffered("outside_hours", "slots run from 09:00 to 17:00 UTC")
    return start
