"""Unit tests of hub.availability: examples first, then properties over DST changes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hub.availability import (
    Availability,
    Interval,
    Override,
    Slot,
    calendar,
    check_offered,
    covers,
    day_starts,
    offered,
)
from hub.errors import NotOffered

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REASONS = {"day_off", "misaligned", "outside_hours", "too_soon", "beyond_horizon"}
ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "America/Santiago",  # changes at local midnight
    "Asia/Kolkata",
    "Pacific/Chatham",  # changes at 02:45
    "UTC",
)
PROPERTY = settings(max_examples=500, deadline=None, database=None)


# --- helpers ---------------------------------------------------------------------------------


def _span(start: str, end: str) -> Interval:
    return Interval(time.fromisoformat(start), time.fromisoformat(end))


def _every_day(*intervals: Interval) -> tuple[tuple[Interval, ...], ...]:
    return (tuple(intervals),) * 7


def _open(**fields: Any) -> Availability:
    """Hours with no notice and a two-year horizon, so only the hours decide."""
    return Availability(**{"notice_minutes": 0, "horizon_days": 730, **fields})


def _starts(
    availability: Availability, first: date, last: date | None = None, now: datetime = NOW
) -> list[datetime]:
    return list(offered(availability, first, last or first, now))


def _walls(availability: Availability, starts: list[datetime]) -> list[str]:
    """The starts as HH:MM on the doctor's wall clock."""
    return [s.astimezone(availability.zone).strftime("%H:%M") for s in starts]


def _utc(starts: list[datetime]) -> list[str]:
    return [s.astimezone(UTC).strftime("%H:%M") for s in starts]


def _reason(availability: Availability, start: datetime, now: datetime = NOW) -> str:
    with pytest.raises(NotOffered) as caught:
        check_offered(availability, start, now)
    return caught.value.reason


def _states(slots: list[Slot]) -> dict[str, str]:
    return {s.start.strftime("%H:%M"): s.state for s in slots}


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    """Whether a naive wall time names an instant in `zone` (false in a DST gap)."""
    back = wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
    return back.replace(tzinfo=None) == wall


def _bounds_of(interval: Interval, day: date) -> tuple[datetime, datetime]:
    """An interval as naive wall datetimes on `day` (an end of 00:00 is midnight)."""
    end_day = day + timedelta(days=1) if interval.end == time(0) else day
    return datetime.combine(day, interval.start), datetime.combine(end_day, interval.end)


def _changes(name: str) -> list[date]:
    """The local dates on which `name` changes its UTC offset in 2025-2027."""
    zone, moment, found = ZoneInfo(name), datetime(2025, 1, 1, tzinfo=UTC), []
    offset = moment.astimezone(zone).utcoffset()
    while moment.year < 2028:
        moment += timedelta(hours=1)
        if (new := moment.astimezone(zone).utcoffset()) != offset:
            found.append(moment.astimezone(zone).date())
            offset = new
    return found


CHANGES = {name: _changes(name) for name in ZONES}


# --- strategies ------------------------------------------------------------------------------

GRID = 5  # minutes
DAY = 24 * 60 // GRID  # grid points in a day


def _clock(point: int) -> time:
    return time(0) if point == DAY else time(point * GRID // 60, point * GRID % 60)


def _intervals(points: Sequence[int]) -> tuple[Interval, ...]:
    """Sorted distinct grid points paired up as (start, end): ordered, non-overlapping."""
    ordered = sorted(points)[: len(points) // 2 * 2]
    pairs = zip(ordered[::2], ordered[1::2], strict=True)
    return tuple(Interval(_clock(a), _clock(b)) for a, b in pairs)


def _grid(hours: float) -> int:
    return int(hours * 60) // GRID


# 0-3 intervals a day on a 5-minute grid, biased towards the night hours that DST moves: either
# points anywhere (half of them drawn from 00-05h), or one interval from 00-02h to 02-08h.
POINT = st.one_of(st.integers(0, DAY), st.integers(0, _grid(5)))
SCATTERED = st.lists(POINT, max_size=6, unique=True).map(_intervals)
NIGHT = st.tuples(st.integers(0, _grid(2) - 1), st.integers(_grid(2), _grid(8))).map(_intervals)
DAY_HOURS = st.one_of(SCATTERED, NIGHT)
# Any length, but often a usual one (left alone, hypothesis favours the 5-minute minimum).
SLOTS = st.sampled_from([90, 60, 45, 120, 30, 20, 15, 180, 240]) | st.integers(5, 240)
BUFFERS = st.sampled_from([0, 5, 10, 15, 30]) | st.integers(0, 60)
NOTICES = st.sampled_from([0, 60, 120]) | st.integers(0, 1440)
# `now` relative to local midnight of the first date: mostly before it, so its nights count.
SINCE_MIDNIGHT = (st.integers(-2 * 1440, 0) | st.integers(-3 * 1440, 1440)).map(
    lambda minutes: timedelta(minutes=minutes)
)
WEEKLY = st.tuples(*[DAY_HOURS] * 7)


def _dates_near(name: str) -> st.SearchStrategy[date]:
    """A date on or within 10 days of one of the zone's offset changes, or any date in 2025-27."""
    anywhere = st.dates(date(2025, 1, 1), date(2027, 12, 31))
    if not CHANGES[name]:
        return anywhere
    shift = st.one_of(st.just(0), st.integers(-10, 10)).map(lambda n: timedelta(days=n))
    near = st.builds(lambda day, by: day + by, st.sampled_from(CHANGES[name]), shift)
    return st.one_of(near, near, anywhere)


DATES = {name: _dates_near(name) for name in ZONES}


@dataclass(frozen=True)
class Scenario:
    availability: Availability
    first: date
    last: date
    now: datetime

    @property
    def earliest(self) -> datetime:
        return self.now + timedelta(minutes=self.availability.notice_minutes)

    @property
    def latest(self) -> datetime:
        return self.now + timedelta(days=self.availability.horizon_days)

    def starts(self) -> list[datetime]:
        return list(offered(self.availability, self.first, self.last, self.now))


def _overrides(first: date) -> st.SearchStrategy[tuple[Override, ...]]:
    """0-2 overrides within the first days drawn; often `first` itself given night hours."""

    def override(start: int, length: int, hours: tuple[Interval, ...]) -> Override:
        return Override(
            first + timedelta(days=start), first + timedelta(days=start + length), hours
        )

    anywhere = st.builds(override, st.integers(0, 3), st.integers(0, 2), DAY_HOURS)
    tonight = NIGHT.map(lambda hours: Override(first, first, hours))
    return st.one_of(tonight.map(lambda o: (o,)), st.lists(anywhere, max_size=2).map(tuple))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    name = draw(st.sampled_from(ZONES))
    first = draw(DATES[name])
    availability = Availability(
        timezone=name,
        weekly=draw(WEEKLY),
        slot_minutes=draw(SLOTS),
        buffer_minutes=draw(BUFFERS),
        notice_minutes=draw(NOTICES),
        horizon_days=draw(st.integers(1, 120)),
        overrides=draw(_overrides(first)),
    )
    last = first + timedelta(days=draw(st.integers(0, 3)))
    midnight = datetime.combine(first, time(0), availability.zone).astimezone(UTC)
    now = midnight + draw(SINCE_MIDNIGHT)
    return Scenario(availability, first, last, now)


def _by_interval(scenario: Scenario) -> dict[tuple[date, int], list[datetime]]:
    """Offered starts as naive wall times, grouped by local date and interval index."""
    availability, groups = scenario.availability, defaultdict(list)
    for start in scenario.starts():
        wall = start.astimezone(availability.zone).replace(tzinfo=None)
        for index, interval in enumerate(availability.intervals_on(wall.date())):
            opens, closes = _bounds_of(interval, wall.date())
            if opens <= wall < closes:
                groups[wall.date(), index].append(wall)
    return groups


# --- examples: weekly hours ------------------------------------------------------------------

MONDAY = date(2026, 3, 2)


def test_default_hours_are_eight_hourly_slots_from_nine_utc_on_a_weekday() -> None:
    starts = _starts(Availability(), MONDAY, now=datetime(2026, 3, 1, tzinfo=UTC))
    assert _utc(starts) == [f"{h:02}:00" for h in range(9, 17)]


def test_default_hours_offer_nothing_at_the_weekend() -> None:
    saturday, sunday = MONDAY - timedelta(days=2), MONDAY - timedelta(days=1)
    assert _starts(Availability(), saturday, sunday, now=datetime(2026, 2, 27, tzinfo=UTC)) == []


def test_lunch_break_leaves_a_gap_between_two_intervals() -> None:
    hours = _open(weekly=_every_day(_span("09:00", "12:00"), _span("13:00", "17:00")))
    assert _walls(hours, _starts(hours, MONDAY)) == [
        "09:00",
        "10:00",
        "11:00",
        "13:00",
        "14:00",
        "15:00",
        "16:00",
    ]


def test_buffer_spaces_starts_by_slot_plus_buffer() -> None:
    hours = _open(weekly=_every_day(_span("09:00", "11:00")), slot_minutes=30, buffer_minutes=10)
    assert _walls(hours, _starts(hours, MONDAY)) == ["09:00", "09:40", "10:20"]


def test_a_slot_that_would_run_past_the_end_of_hours_is_not_offered() -> None:
    hours = _open(weekly=_every_day(_span("09:00", "10:30")))
    assert _walls(hours, _starts(hours, MONDAY)) == ["09:00"]


def test_an_interval_ending_at_midnight_runs_to_midnight() -> None:
    hours = _open(weekly=_every_day(_span("22:00", "00:00")))
    assert _walls(hours, _starts(hours, MONDAY)) == ["22:00", "23:00"]


def test_override_with_no_intervals_is_a_day_off() -> None:
    hours = _open(overrides=(Override(MONDAY, MONDAY),))
    assert _starts(hours, MONDAY) == []
    assert len(_starts(hours, MONDAY + timedelta(days=1))) == 8


def test_override_range_is_a_vacation_on_every_day_from_first_to_last() -> None:
    friday = MONDAY + timedelta(days=4)
    hours = _open(overrides=(Override(MONDAY, friday),))
    assert _starts(hours, MONDAY, friday) == []
    assert len(_starts(hours, friday + timedelta(days=3))) == 8  # the Monday after


def test_override_hours_replace_the_weekly_hours() -> None:
    hours = _open(overrides=(Override(MONDAY, MONDAY, (_span("14:00", "16:00"),)),))
    assert _walls(hours, _starts(hours, MONDAY)) == ["14:00", "15:00"]


def test_override_can_open_a_day_the_week_has_off() -> None:
    sunday = MONDAY - timedelta(days=1)
    hours = _open(overrides=(Override(sunday, sunday, (_span("10:00", "11:00"),)),))
    assert _walls(hours, _starts(hours, sunday)) == ["10:00"]


def test_the_last_override_covering_a_day_wins() -> None:
    week_off = Override(MONDAY, MONDAY + timedelta(days=4))
    monday_morning = Override(MONDAY, MONDAY, (_span("08:00", "09:00"),))
    hours = _open(overrides=(week_off, monday_morning))
    assert _walls(hours, _starts(hours, MONDAY)) == ["08:00"]
    assert _starts(hours, MONDAY + timedelta(days=1)) == []


def test_berlin_nine_o_clock_is_eight_utc_in_winter() -> None:
    hours = _open(timezone="Europe/Berlin")
    assert _utc(_starts(hours, date(2026, 1, 12)))[:1] == ["08:00"]


def test_berlin_nine_o_clock_is_seven_utc_in_summer() -> None:
    hours = _open(timezone="Europe/Berlin")
    assert _utc(_starts(hours, date(2026, 7, 13)))[:1] == ["07:00"]


def test_notice_and_horizon_trim_the_offered_starts() -> None:
    now = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    hours = Availability(notice_minutes=60)
    assert _utc(_starts(hours, MONDAY, now=now))[:1] == ["12:00"]
    assert _starts(Availability(horizon_days=1), MONDAY + timedelta(days=1), now=now)[-1] == (
        datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    )


# --- examples: check_offered -----------------------------------------------------------------


def test_check_offered_returns_an_offered_start_in_utc() -> None:
    hours = _open(timezone="Europe/Berlin")
    start = datetime(2026, 1, 12, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    answer = check_offered(hours, start, NOW)
    assert answer == datetime(2026, 1, 12, 8, 0, tzinfo=UTC)
    assert answer.tzinfo is UTC


def test_check_offered_refuses_a_day_off() -> None:
    assert _reason(_open(), datetime(2026, 3, 1, 10, tzinfo=UTC)) == "day_off"


def test_check_offered_refuses_a_time_between_slot_starts_as_misaligned() -> None:
    assert _reason(_open(), datetime(2026, 3, 2, 10, 30, tzinfo=UTC)) == "misaligned"


def test_check_offered_refuses_a_time_outside_the_hours() -> None:
    assert _reason(_open(), datetime(2026, 3, 2, 8, tzinfo=UTC)) == "outside_hours"
    assert _reason(_open(), datetime(2026, 3, 2, 17, tzinfo=UTC)) == "outside_hours"


def test_check_offered_refuses_a_start_inside_the_notice_as_too_soon() -> None:
    now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    assert _reason(Availability(), datetime(2026, 3, 2, 10, tzinfo=UTC), now) == "too_soon"


def test_check_offered_refuses_a_start_past_the_horizon() -> None:
    hours = Availability(horizon_days=30)
    assert _reason(hours, datetime(2026, 3, 2, 10, tzinfo=UTC), NOW) == "beyond_horizon"


# --- examples: calendar ----------------------------------------------------------------------


def test_a_longer_appointment_books_every_slot_it_overlaps() -> None:
    hours = _open(weekly=_every_day(_span("10:00", "12:00")), slot_minutes=30)
    booked = [(datetime(2026, 3, 2, 10, tzinfo=UTC), datetime(2026, 3, 2, 11, tzinfo=UTC))]
    states = _states(calendar(hours, MONDAY, MONDAY, NOW, booked))
    assert states == {"10:00": "booked", "10:30": "booked", "11:00": "free", "11:30": "free"}


def test_an_appointment_straddling_a_slot_start_books_both_slots() -> None:
    hours = _open(weekly=_every_day(_span("10:00", "12:00")))
    booked = [(datetime(2026, 3, 2, 10, 30, tzinfo=UTC), datetime(2026, 3, 2, 11, 15, tzinfo=UTC))]
    assert _states(calendar(hours, MONDAY, MONDAY, NOW, booked)) == {
        "10:00": "booked",
        "11:00": "booked",
    }


def test_an_early_long_appointment_is_not_skipped_for_a_later_short_one() -> None:
    hours = _open(weekly=_every_day(_span("10:00", "13:00")))
    long = (datetime(2026, 3, 2, 9, tzinfo=UTC), datetime(2026, 3, 2, 13, tzinfo=UTC))
    short = (datetime(2026, 3, 2, 9, 30, tzinfo=UTC), datetime(2026, 3, 2, 9, 45, tzinfo=UTC))
    states = _states(calendar(hours, MONDAY, MONDAY, NOW, [short, long]))
    assert set(states.values()) == {"booked"}


def test_held_start_is_marked_held_and_others_free() -> None:
    hours = _open(weekly=_every_day(_span("10:00", "12:00")))
    held = {datetime(2026, 3, 2, 11, tzinfo=UTC)}
    states = _states(calendar(hours, MONDAY, MONDAY, NOW, [], held))
    assert states == {"10:00": "free", "11:00": "held"}


def test_booked_wins_over_held() -> None:
    hours = _open(weekly=_every_day(_span("10:00", "11:00")))
    start = datetime(2026, 3, 2, 10, tzinfo=UTC)
    slots = calendar(hours, MONDAY, MONDAY, NOW, [(start, start + timedelta(hours=1))], {start})
    assert _states(slots) == {"10:00": "booked"}


def test_an_appointment_ending_at_a_slot_start_leaves_it_free() -> None:
    hours = _open(weekly=_every_day(_span("10:00", "12:00")))
    booked = [(datetime(2026, 3, 2, 9, tzinfo=UTC), datetime(2026, 3, 2, 10, tzinfo=UTC))]
    assert _states(calendar(hours, MONDAY, MONDAY, NOW, booked))["10:00"] == "free"


# --- examples: DST changes -------------------------------------------------------------------

NIGHT_BERLIN = _open(timezone="Europe/Berlin", weekly=_every_day(_span("00:00", "06:00")))
NIGHT_NEW_YORK = _open(timezone="America/New_York", weekly=_every_day(_span("00:00", "06:00")))
SPANNING_THE_GAP = _open(  # on 2026-03-29, 01:30 CET + 90 min runs across the missing hour
    timezone="Europe/Berlin", weekly=_every_day(_span("01:30", "06:00")), slot_minutes=90
)
PAST_THE_CLOSE = _open(  # on 2026-03-29, 01:30 CET + 90 min would end at 04:00 CEST
    timezone="Europe/Berlin", weekly=_every_day(_span("00:00", "03:00")), slot_minutes=90
)


def test_berlin_spring_forward_skips_the_missing_hour() -> None:
    starts = _starts(NIGHT_BERLIN, date(2026, 3, 29))
    assert _walls(NIGHT_BERLIN, starts) == ["00:00", "01:00", "03:00", "04:00", "05:00"]
    assert len(set(starts)) == len(starts)


def test_berlin_fall_back_offers_the_repeated_hour_once_at_its_first_occurrence() -> None:
    starts = _starts(NIGHT_BERLIN, date(2026, 10, 25))
    walls = _walls(NIGHT_BERLIN, starts)
    assert walls == ["00:00", "01:00", "02:00", "03:00", "04:00", "05:00"]
    assert starts[walls.index("02:00")] == datetime(2026, 10, 25, 0, 0, tzinfo=UTC)  # CEST


def test_new_york_spring_forward_skips_the_missing_hour() -> None:
    starts = _starts(NIGHT_NEW_YORK, date(2026, 3, 8))
    assert _walls(NIGHT_NEW_YORK, starts) == ["00:00", "01:00", "03:00", "04:00", "05:00"]
    assert len(set(starts)) == len(starts)


def test_new_york_fall_back_offers_the_repeated_hour_once_at_its_first_occurrence() -> None:
    starts = _starts(NIGHT_NEW_YORK, date(2026, 11, 1))
    walls = _walls(NIGHT_NEW_YORK, starts)
    assert walls == ["00:00", "01:00", "02:00", "03:00", "04:00", "05:00"]
    assert starts[walls.index("01:00")] == datetime(2026, 11, 1, 5, 0, tzinfo=UTC)  # EDT


def test_berlin_day_hours_on_the_spring_change_day_are_eight_slots_from_seven_utc() -> None:
    hours = _open(timezone="Europe/Berlin", weekly=_every_day(_span("09:00", "17:00")))
    starts = _starts(hours, date(2026, 3, 29))
    assert _walls(hours, starts) == [f"{h:02}:00" for h in range(9, 17)]
    assert _utc(starts) == [f"{h:02}:00" for h in range(7, 15)]


def test_second_occurrence_of_the_repeated_hour_is_not_a_slot_start() -> None:
    second = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # 02:00 CET, after the clocks went back
    assert not covers(NIGHT_BERLIN, second)
    assert _reason(NIGHT_BERLIN, second) == "misaligned"


def test_check_offered_accepts_a_first_occurrence_given_in_the_doctor_zone() -> None:
    wall = datetime(2026, 10, 25, 2, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # fold=0: CEST
    assert check_offered(NIGHT_BERLIN, wall, NOW) == datetime(2026, 10, 25, 0, 0, tzinfo=UTC)


def test_a_slot_spanning_the_spring_forward_gap_does_not_overlap_the_next() -> None:
    # 01:30 CET + 90 min ends at 04:00 CEST (02:00Z), but wall 03:00 CEST is 01:00Z.
    starts = _starts(SPANNING_THE_GAP, date(2026, 3, 29))
    for before, after in pairwise(starts):
        assert before + SPANNING_THE_GAP.slot <= after, _walls(SPANNING_THE_GAP, starts)


def test_a_slot_spanning_the_spring_forward_gap_still_ends_by_the_close() -> None:
    # 01:30 CET + 90 min ends at 04:00 CEST, an hour after the 03:00 close.
    assert _walls(PAST_THE_CLOSE, _starts(PAST_THE_CLOSE, date(2026, 3, 29))) == ["00:00"]


def test_a_slot_ending_as_the_clocks_jump_forward_is_offered() -> None:
    # 00:00-02:00 is 23:00Z-01:00Z that night: 01:00-02:00 CET (00:00Z-01:00Z) fits exactly,
    # though its end reads 03:00 CEST on the wall clock.
    hours = _open(timezone="Europe/Berlin", weekly=_every_day(_span("00:00", "02:00")))
    assert _walls(hours, _starts(hours, date(2026, 3, 29))) == ["00:00", "01:00"]


# --- properties ------------------------------------------------------------------------------
#
# Each property also runs on a few fixed scenarios that straddle a clock change.

SANTIAGO_NIGHTS = _open(
    timezone="America/Santiago", weekly=_every_day(_span("00:00", "02:00"), _span("22:00", "00:00"))
)
FIXED = (
    Scenario(SPANNING_THE_GAP, date(2026, 3, 29), date(2026, 3, 29), NOW),
    Scenario(PAST_THE_CLOSE, date(2026, 3, 29), date(2026, 3, 29), NOW),
    Scenario(
        _open(timezone="Australia/Lord_Howe", weekly=_every_day(_span("01:00", "05:00"))),
        date(2026, 10, 4),  # 02:00 -> 02:30
        date(2026, 10, 4),
        NOW,
    ),
    Scenario(
        _open(
            timezone="Pacific/Chatham", weekly=_every_day(_span("00:00", "06:00")), slot_minutes=45
        ),
        date(2026, 4, 5),  # 03:45 -> 02:45
        date(2026, 4, 5),
        NOW,
    ),
    Scenario(SANTIAGO_NIGHTS, date(2026, 4, 4), date(2026, 4, 5), NOW),  # 24:00 -> 23:00
    Scenario(SANTIAGO_NIGHTS, date(2026, 9, 5), date(2026, 9, 6), NOW),  # 24:00 -> 01:00
    Scenario(
        _open(timezone="America/New_York", weekly=_every_day(_span("00:00", "02:00"))),
        date(2026, 3, 8),  # 02:00 -> 03:00, just as the hours close
        date(2026, 3, 8),
        NOW,
    ),
    Scenario(
        NIGHT_NEW_YORK, date(2026, 3, 7), date(2026, 3, 9), datetime(2026, 3, 8, 6, 30, tzinfo=UTC)
    ),
)


def properties(test: Callable[[Scenario], None]) -> Callable[..., None]:
    """Run `test` on the fixed scenarios and on 500 drawn ones."""
    for scenario in FIXED:
        test = example(scenario)(test)
    return PROPERTY(given(scenarios())(test))


@properties
def test_every_start_and_its_end_lie_in_one_working_interval(s: Scenario) -> None:
    zone, slot = s.availability.zone, s.availability.slot
    for start in s.starts():
        wall = start.astimezone(zone).replace(tzinfo=None)
        # the last moment of the slot on the wall clock (across a change its wall end moves)
        last = (start + slot - timedelta(microseconds=1)).astimezone(zone).replace(tzinfo=None)
        assert s.first <= wall.date() <= s.last
        spans = [_bounds_of(i, wall.date()) for i in s.availability.intervals_on(wall.date())]
        assert any(
            opens <= wall and wall + slot <= closes and last < closes for opens, closes in spans
        ), (zone.key, _walls(s.availability, [start]))


@properties
def test_offered_starts_strictly_increase(s: Scenario) -> None:
    starts = s.starts()
    assert all(before < after for before, after in pairwise(starts))


@properties
def test_offered_slots_never_overlap_in_absolute_time(s: Scenario) -> None:
    slot = s.availability.slot
    for before, after in pairwise(s.starts()):
        assert before + slot <= after, (s.availability.zone.key, before, after)


@properties
def test_starts_in_an_interval_step_by_slot_plus_buffer_except_over_missing_times(
    s: Scenario,
) -> None:
    zone, slot, step = s.availability.zone, s.availability.slot, s.availability.step

    def skippable(wall: datetime, previous: datetime) -> bool:
        """A wall time may be left out if it does not exist, is outside notice and horizon,
        or its slot would overlap the previous one (after a spring-forward gap)."""
        if not _exists(wall, zone):
            return True
        instant = wall.replace(tzinfo=zone).astimezone(UTC)
        overlaps = instant < previous.replace(tzinfo=zone).astimezone(UTC) + slot
        return overlaps or not s.earliest <= instant <= s.latest

    for (day, index), walls in _by_interval(s).items():
        opens, _ = _bounds_of(s.availability.intervals_on(day)[index], day)
        assert (walls[0] - opens) % step == timedelta(0)
        for before, after in pairwise(walls):
            gap, remainder = divmod(after - before, step)
            assert remainder == timedelta(0) and gap >= 1, (before, after)
            skipped = [before + n * step for n in range(1, gap)]
            assert all(skippable(wall, before) for wall in skipped), (before, after)


@properties
def test_offered_starts_respect_notice_and_horizon(s: Scenario) -> None:
    assert all(s.earliest <= start <= s.latest for start in s.starts())


@properties
def test_check_offered_accepts_every_offered_start(s: Scenario) -> None:
    for start in s.starts():
        assert check_offered(s.availability, start, s.now) == start


@PROPERTY
@given(
    scenarios(),
    st.integers(-2 * 1440, 6 * 1440),
    st.sampled_from([0, 0, 0, 17, 59]),
    st.booleans(),
)
def test_check_offered_on_any_instant_agrees_with_covers_or_names_a_reason(
    s: Scenario, minutes: int, seconds: int, local: bool
) -> None:
    midnight = datetime.combine(s.first, time(0), s.availability.zone).astimezone(UTC)
    instant = midnight + timedelta(minutes=minutes, seconds=seconds)
    asked = instant.astimezone(s.availability.zone) if local else instant
    try:
        answer = check_offered(s.availability, asked, s.now)
    except NotOffered as refusal:
        assert refusal.reason in REASONS
        in_hours = refusal.reason in {"too_soon", "beyond_horizon"}
        assert covers(s.availability, instant) == in_hours, refusal.reason
        if in_hours:
            assert not s.earliest <= instant <= s.latest
        return
    assert answer == instant and answer.tzinfo is UTC
    assert covers(s.availability, answer)
    assert s.earliest <= answer <= s.latest


@properties
def test_no_wall_time_appears_twice_in_a_day(s: Scenario) -> None:
    for day in range(s.last.toordinal() - s.first.toordinal() + 1):
        local = s.first + timedelta(days=day)
        walls = [
            start.astimezone(s.availability.zone).replace(tzinfo=None)
            for start in day_starts(s.availability, local)
        ]
        assert len(walls) == len(set(walls))
        assert all(wall.date() == local for wall in walls)


@properties
def test_every_start_that_fits_is_offered(s: Scenario) -> None:
    """The whole rule: step through each interval in wall time; keep a start that exists
    (first occurrence), whose slot stays before the close on the wall clock and does not
    overlap the slot kept before it, and that is within notice and horizon."""
    zone, slot, step = s.availability.zone, s.availability.slot, s.availability.step
    expected: list[datetime] = []
    for offset in range(s.last.toordinal() - s.first.toordinal() + 1):
        day, busy_until = s.first + timedelta(days=offset), None
        for interval in s.availability.intervals_on(day):
            wall, closes = _bounds_of(interval, day)
            while wall + slot <= closes:
                instant = wall.replace(tzinfo=zone).astimezone(UTC)
                last = (instant + slot - timedelta(microseconds=1)).astimezone(zone)
                fits = last.replace(tzinfo=None) < closes
                if _exists(wall, zone) and fits and (busy_until is None or instant >= busy_until):
                    expected.append(instant)
                    busy_until = instant + slot
                wall += step
    assert s.starts() == [start for start in expected if s.earliest <= start <= s.latest]
