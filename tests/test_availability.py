from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.availability import check_offered, day_slots, free_slots
from hub.errors import NotOffered

MONDAY = date(2030, 1, 7)
FRIDAY = date(2030, 1, 11)
SATURDAY = date(2030, 1, 12)
SUNDAY = date(2030, 1, 13)
LONG_BEFORE = datetime(2029, 12, 1, tzinfo=UTC)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def test_a_weekday_offers_eight_hourly_starts_from_nine_to_sixteen_utc() -> None:
    assert day_slots(MONDAY) == [at(MONDAY, hour) for hour in range(9, 17)]


def test_every_offered_start_is_in_utc() -> None:
    assert all(start.tzinfo is UTC for start in day_slots(FRIDAY))


@pytest.mark.parametrize("day", [SATURDAY, SUNDAY], ids=["saturday", "sunday"])
def test_a_weekend_day_offers_nothing(day: date) -> None:
    assert day_slots(day) == []


def test_free_slots_leave_out_the_taken_starts() -> None:
    taken = {at(MONDAY, 10), at(MONDAY, 14)}
    free = free_slots(MONDAY, taken, LONG_BEFORE)
    assert free == [at(MONDAY, hour) for hour in (9, 11, 12, 13, 15, 16)]


def test_free_slots_leave_out_the_starts_already_begun_or_past() -> None:
    now = at(MONDAY, 12)
    assert free_slots(MONDAY, set(), now) == [at(MONDAY, hour) for hour in (13, 14, 15, 16)]


def test_free_slots_match_taken_starts_given_in_another_offset() -> None:
    taken = {datetime.combine(MONDAY, time(13), tzinfo=timezone(timedelta(hours=3)))}
    assert at(MONDAY, 10) not in free_slots(MONDAY, taken, LONG_BEFORE)


def test_check_offered_returns_the_start_in_utc_for_an_offset_input() -> None:
    local = datetime.combine(MONDAY, time(13), tzinfo=timezone(timedelta(hours=3)))
    start = check_offered(local, LONG_BEFORE)
    assert start == at(MONDAY, 10)
    assert start.tzinfo is UTC
    assert start.hour == 10


def test_check_offered_accepts_the_last_start_of_the_day() -> None:
    assert check_offered(at(FRIDAY, 16), LONG_BEFORE) == at(FRIDAY, 16)


@pytest.mark.parametrize(
    ("start", "reason"),
    [
        (at(SATURDAY, 10), "day_off"),
        (at(SUNDAY, 10), "day_off"),
        # Monday 01:00 at +03:00 is Sunday 22:00 UTC: the rule is judged in UTC.
        (datetime.combine(MONDAY, time(1), tzinfo=timezone(timedelta(hours=3))), "day_off"),
        (at(MONDAY, 10, 30), "misaligned"),
        (at(MONDAY, 10).replace(second=1), "misaligned"),
        (at(MONDAY, 10).replace(microsecond=1), "misaligned"),
        (at(MONDAY, 8), "outside_hours"),
        (at(MONDAY, 17), "outside_hours"),
        (at(MONDAY, 0), "outside_hours"),
        (at(date(2029, 11, 30), 10), "too_soon"),
    ],
    ids=[
        "saturday",
        "sunday",
        "sunday-in-utc",
        "half-past",
        "one-second-past",
        "one-microsecond-past",
        "before-nine",
        "at-seventeen",
        "midnight",
        "past-weekday",
    ],
)
def test_check_offered_names_the_reason_a_start_is_not_offered(
    start: datetime, reason: str
) -> None:
    with pytest.raises(NotOffered) as caught:
        check_offered(start, LONG_BEFORE)
    assert caught.value.reason == reason


def test_a_start_that_is_now_is_too_soon() -> None:
    with pytest.raises(NotOffered) as caught:
        check_offered(at(MONDAY, 10), at(MONDAY, 10))
    assert caught.value.reason == "too_soon"


def test_not_offered_is_answered_as_422_with_its_reason() -> None:
    error = NotOffered("day_off", "the doctor does not work on that day")
    assert error.status == 422
    assert error.payload()["error"] == "not_offered"
    assert error.payload()["reason"] == "day_off"


# Instants drawn in UTC, mostly on the hour, then written in any fixed offset (down to the
# microsecond), so every branch is reached often; plus any wall time in any offset.
OFFSETS = st.timedeltas(
    min_value=timedelta(hours=-24) + timedelta(microseconds=1),
    max_value=timedelta(hours=24) - timedelta(microseconds=1),
).map(timezone)
MOMENTS = st.builds(
    lambda day, hour, minute, second, zone: datetime.combine(
        day, time(hour, minute, second), tzinfo=UTC
    ).astimezone(zone),
    st.dates(date(2020, 1, 2), date(2035, 12, 30)),
    st.one_of(st.integers(9, 16), st.integers(0, 23)),
    st.one_of(st.just(0), st.sampled_from([0, 1, 30, 59])),
    st.one_of(st.just(0), st.sampled_from([0, 1, 59])),
    OFFSETS,
)
FIRST, LAST = datetime(2020, 1, 1), datetime(2035, 12, 31, 23, 59, 59, 999999)
ANY_MOMENT = st.datetimes(FIRST, LAST, timezones=OFFSETS)
NOWS = st.one_of(
    st.just(FIRST.replace(tzinfo=UTC)), st.datetimes(FIRST, LAST, timezones=st.just(UTC))
)


@settings(max_examples=500, database=None)
@given(start=st.one_of(MOMENTS, ANY_MOMENT), now=NOWS)
def test_check_offered_returns_an_offered_future_utc_start_or_raises_not_offered(
    start: datetime, now: datetime
) -> None:
    try:
        offered = check_offered(start, now)
    except NotOffered as refusal:
        assert refusal.reason in {"too_soon", "day_off", "misaligned", "outside_hours"}
        return
    assert offered == start
    assert offered.tzinfo is UTC
    assert offered > now
    assert offered in day_slots(offered.date())
