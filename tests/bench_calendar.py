"""Benchmark: a 31-day calendar for a doctor with 500 appointments (hub.availability.calendar).

    python tests/bench_calendar.py

Prints the median and best of many runs in milliseconds. Not collected by pytest: speed is
measured here, never asserted in a test.
"""

from __future__ import annotations

import random
import statistics
import timeit
from datetime import UTC, date, datetime, time, timedelta

from hub.availability import Availability, Interval, calendar, offered

DAYS = 31
APPOINTMENTS = 500


def main() -> None:
    hours = Availability(
        timezone="Europe/Berlin",
        weekly=((Interval(time(8), time(12)), Interval(time(13), time(18))),) * 7,
        slot_minutes=20,
        notice_minutes=0,
        horizon_days=120,
    )
    now = datetime(2027, 3, 1, tzinfo=UTC)
    first = date(2027, 3, 10)  # spans the March DST change
    last = first + timedelta(days=DAYS - 1)
    starts = list(offered(hours, first, last, now))
    random.seed(7)
    chosen = sorted(random.sample(starts, APPOINTMENTS))
    booked = [(start, start + hours.slot) for start in chosen]
    held = set(random.sample(starts, 20))

    def run() -> None:
        calendar(hours, first, last, now, booked, held)

    result = calendar(hours, first, last, now, booked, held)
    assert sum(slot.state == "booked" for slot in result) == APPOINTMENTS
    runs = timeit.repeat(run, number=1, repeat=200)
    print(
        f"calendar: {DAYS} days, {len(result)} slots, {APPOINTMENTS} appointments, 20 holds: "
        f"median {statistics.median(runs) * 1000:.2f} ms, best {min(runs) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
