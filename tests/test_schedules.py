from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hub.schemas import CalendarOut, PolicyIn, SlotOut
from tests.conftest import Actor, World, iso, next_workday, slot

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
FIELDS = (
    "timezone",
    "weekly",
    "slot_minutes",
    "buffer_minutes",
    "notice_minutes",
    "horizon_days",
    "overrides",
)


def _span(start: str, end: str) -> dict[str, str]:
    return {"start": start, "end": end}


def _week(*intervals: dict[str, str], days: tuple[str, ...] = WEEKDAYS[:5]) -> dict[str, Any]:
    return {day: list(intervals) if day in days else [] for day in WEEKDAYS}


def _hours(**changes: Any) -> dict[str, Any]:
    """A complete availability body: the original rule, with `changes` applied."""
    return {
        "timezone": "UTC",
        "weekly": _week(_span("09:00", "17:00")),
        "slot_minutes": 60,
        "buffer_minutes": 0,
        "notice_minutes": 60,
        "horizon_days": 90,
        "overrides": [],
        **changes,
    }


def _every_day(zone: str) -> dict[str, Any]:
    """09:00-17:00 every day in `zone`, bookable from now on for two years."""
    week = _week(_span("09:00", "17:00"), days=WEEKDAYS)
    return _hours(timezone=zone, weekly=week, notice_minutes=0, horizon_days=730)


def _hours_of(answer: Any) -> dict[str, Any]:
    """The availability fields of an answer (other settings may travel alongside)."""
    assert answer.status_code == 200, answer.text
    return {name: answer.json()[name] for name in FIELDS}


def _get(world: World, caller: Actor | None, doctor_id: int) -> Any:
    headers = caller.headers if caller else None
    return world.client.get(f"/doctors/{doctor_id}/availability", headers=headers)


def _put(world: World, caller: Actor | None, doctor_id: int, body: dict[str, Any]) -> Any:
    headers = caller.headers if caller else None
    return world.client.put(f"/doctors/{doctor_id}/availability", json=body, headers=headers)


def _set(world: World, doctor: Actor, body: dict[str, Any]) -> None:
    answer = _put(world, doctor, doctor.id, body)
    assert answer.status_code == 200, answer.text


def _calendar(
    world: World, doctor_id: int, first: date | str, last: date | str, caller: Actor | None = None
) -> Any:
    return world.client.get(
        f"/doctors/{doctor_id}/slots",
        params={"from": str(first), "to": str(last)},
        headers=caller.headers if caller else None,
    )


def _starts(world: World, doctor_id: int, first: date | str, last: date | str) -> list[str]:
    answer = _calendar(world, doctor_id, first, last)
    assert answer.status_code == 200, answer.text
    return [row["start"] for row in answer.json()["slots"]]


def _book(world: World, patient: Actor, doctor: Actor, when: datetime | str) -> Any:
    moment = when if isinstance(when, str) else iso(when)
    body = {"doctor_id": doctor.id, "scheduled_datetime": moment}
    return world.client.post("/appointments/", json=body, headers=patient.headers)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def _utc_hours(day: date, hours: range) -> list[str]:
    return [iso(_at(day, hour)) for hour in hours]


def _ahead(candidates: Callable[[int], date], min_days: int = 2) -> date:
    """The first of the yearly dates `candidates(year)` at least `min_days` after today."""
    today = datetime.now(UTC).date()
    year = today.year
    while (candidates(year) - today).days < min_days:
        year += 1
    return candidates(year)


def _last_sunday_of_march(year: int) -> date:
    day = date(year, 3, 31)
    return day - timedelta(days=(day.weekday() - 6) % 7)


def _first_sunday_of_november(year: int) -> date:
    day = date(year, 11, 1)
    return day + timedelta(days=(6 - day.weekday()) % 7)


# Reading and replacing availability


def test_a_new_doctors_availability_is_the_original_rule(world: World) -> None:
    doctor = world.doctor()
    assert _hours_of(_get(world, doctor, doctor.id)) == {
        "timezone": "UTC",
        "weekly": {
            **{day: [{"start": "09:00", "end": "17:00"}] for day in WEEKDAYS[:5]},
            "saturday": [],
            "sunday": [],
        },
        "slot_minutes": 60,
        "buffer_minutes": 0,
        "notice_minutes": 60,
        "horizon_days": 90,
        "overrides": [],
    }


def test_what_get_returns_after_a_put_is_what_was_put_in_order(world: World) -> None:
    doctor = world.doctor()
    day = next_workday()
    body = _hours(
        timezone="Europe/Berlin",
        weekly=_week(_span("13:00", "17:30"), _span("08:15", "12:00")),
        slot_minutes=45,
        buffer_minutes=15,
        notice_minutes=120,
        horizon_days=30,
        overrides=[
            {"from": day.isoformat(), "intervals": []},
            {
                "from": (day + timedelta(days=3)).isoformat(),
                "to": (day + timedelta(days=5)).isoformat(),
                "intervals": [_span("14:00", "18:00"), _span("10:00", "12:00")],
            },
        ],
    )
    put = _put(world, doctor, doctor.id, body)
    assert put.status_code == 200, put.text
    expected = _hours(
        timezone="Europe/Berlin",
        weekly=_week(_span("08:15", "12:00"), _span("13:00", "17:30")),
        slot_minutes=45,
        buffer_minutes=15,
        notice_minutes=120,
        horizon_days=30,
        overrides=[
            {"from": day.isoformat(), "to": day.isoformat(), "intervals": []},
            {
                "from": (day + timedelta(days=3)).isoformat(),
                "to": (day + timedelta(days=5)).isoformat(),
                "intervals": [_span("10:00", "12:00"), _span("14:00", "18:00")],
            },
        ],
    )
    assert _hours_of(put) == expected
    assert _hours_of(_get(world, doctor, doctor.id)) == expected


def test_an_admin_replaces_a_doctors_availability(world: World) -> None:
    doctor, admin = world.doctor(), world.admin()
    body = _hours(slot_minutes=30)
    assert _put(world, admin, doctor.id, body).status_code == 200
    assert _hours_of(_get(world, admin, doctor.id)) == body


@pytest.mark.parametrize(
    ("caller", "status"),
    [("other-doctor", 403), ("patient", 403), ("anonymous", 401)],
)
def test_only_the_doctor_and_admins_replace_availability(
    world: World, caller: str, status: int
) -> None:
    doctor = world.doctor()
    actor = {"other-doctor": world.doctor, "patient": world.patient}.get(caller)
    answer = _put(world, actor() if actor else None, doctor.id, _hours(slot_minutes=30))
    assert answer.status_code == status
    assert _hours_of(_get(world, doctor, doctor.id)) == _hours()


@pytest.mark.parametrize(
    ("caller", "status"),
    [("other-doctor", 403), ("patient", 403), ("anonymous", 401)],
)
def test_only_the_doctor_and_admins_read_availability(
    world: World, caller: str, status: int
) -> None:
    doctor = world.doctor()
    actor = {"other-doctor": world.doctor, "patient": world.patient}.get(caller)
    assert _get(world, actor() if actor else None, doctor.id).status_code == status


def test_the_availability_of_an_unknown_doctor_is_not_found(world: World) -> None:
    admin = world.admin()
    assert _get(world, admin, 999_999).status_code == 404
    assert _put(world, admin, 999_999, _hours()).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            _hours(weekly=_week(_span("09:00", "12:00"), _span("11:00", "13:00"))),
            "weekly.monday",
        ),
        (_hours(weekly=_week(_span("17:00", "09:00"))), "weekly.monday.0"),
        (_hours(weekly=_week(_span("09:00", "09:00"))), "weekly.monday.0"),
        (_hours(timezone="Mars/Olympus_Mons"), "timezone"),
        (_hours(slot_minutes=4), "slot_minutes"),
        (_hours(slot_minutes=241), "slot_minutes"),
        (
            _hours(overrides=[{"from": "2030-01-02", "to": "2030-01-01", "intervals": []}]),
            "overrides.0",
        ),
        (_hours(lunch="12:00"), "lunch"),
        (_hours(weekly={**_week(_span("09:00", "17:00")), "funday": []}), "weekly.funday"),
        (_hours(weekly=_week(_span("9:00", "17:00"))), "weekly.monday.0.start"),
        (_hours(weekly=_week(_span("09:00", "25:00"))), "weekly.monday.0.end"),
    ],
    ids=[
        "overlapping",
        "inverted",
        "empty",
        "unknown-zone",
        "slot-4",
        "slot-241",
        "override-to-before-from",
        "unknown-key",
        "unknown-weekday",
        "single-digit-hour",
        "hour-25",
    ],
)
def test_an_invalid_availability_is_refused_naming_the_field(
    world: World, body: dict[str, Any], field: str
) -> None:
    doctor = world.doctor()
    answer = _put(world, doctor, doctor.id, body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid"
    assert field in [problem["field"] for problem in answer.json()["fields"]]


def test_a_refused_put_changes_nothing(world: World) -> None:
    doctor = world.doctor()
    before = _get(world, doctor, doctor.id).json()
    body = _hours(timezone="Asia/Tokyo", horizon_days=10, slot_minutes=4)
    assert _put(world, doctor, doctor.id, body).status_code == 422
    assert _get(world, doctor, doctor.id).json() == before


def test_24_00_is_accepted_as_an_end_and_the_last_slot_ends_at_midnight(world: World) -> None:
    doctor = world.doctor()
    answer = _put(world, doctor, doctor.id, _hours(weekly=_week(_span("20:00", "24:00"))))
    assert answer.status_code == 200, answer.text
    day = next_workday()
    slots = _calendar(world, doctor.id, day, day).json()["slots"]
    assert [row["start"] for row in slots] == _utc_hours(day, range(20, 24))
    assert slots[-1]["end"] == iso(_at(day + timedelta(days=1), 0))


# Changing hours never moves an appointment


def test_an_appointment_the_new_hours_no_longer_cover_stays_marked_outside_hours(
    world: World,
) -> None:
    doctor, first, second = world.doctor(), world.patient(), world.patient()
    early = world.book(first, doctor, slot(10))
    late = world.book(second, doctor, slot(14))
    _set(world, doctor, _hours(weekly=_week(_span("13:00", "17:00"))))
    answer = world.client.get(f"/appointments/doctor/{doctor.id}", headers=doctor.headers)
    assert answer.status_code == 200, answer.text
    rows = [
        (row["id"], row["scheduled_datetime"], row["status"], row["outside_hours"])
        for row in answer.json()
    ]
    assert rows == [
        (early["id"], iso(slot(10)), "scheduled", True),
        (late["id"], iso(slot(14)), "scheduled", False),
    ]


def test_a_change_of_hours_leaves_the_patients_appointments_as_they_were(world: World) -> None:
    doctor, other, patient = world.doctor(), world.doctor(), world.patient()
    world.book(patient, doctor, slot(10))
    world.book(patient, other, slot(14))
    path = f"/appointments/patient/{patient.id}"
    before = world.client.get(path, headers=patient.headers).json()
    _set(world, doctor, _hours(weekly=_week(_span("13:00", "17:00")), slot_minutes=30))
    after = world.client.get(path, headers=patient.headers).json()
    assert after == before
    assert [row["scheduled_datetime"] for row in after] == [iso(slot(10)), iso(slot(14))]


# The slots calendar


def test_the_calendar_lists_every_offered_slot_with_its_state(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    world.book(patient, doctor, slot(12))
    day = next_workday()
    answer = _calendar(world, doctor.id, day, day)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["doctor_id"] == doctor.id
    assert body["timezone"] == "UTC"
    assert [(row["start"], row["end"], row["state"]) for row in body["slots"]] == [
        (iso(slot(hour)), iso(slot(hour + 1)), "booked" if hour == 12 else "free")
        for hour in range(9, 17)
    ]


def test_the_calendar_answers_exactly_the_documented_shape(world: World) -> None:
    # It is written from the view's dataclasses, not through CalendarOut: the two must agree.
    doctor, patient = world.doctor(), world.patient()
    world.book(patient, doctor, slot(12))
    day = next_workday()
    for caller in (patient, None):
        answer = _calendar(world, doctor.id, day, day, caller)
        assert answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert CalendarOut.model_validate(body).model_dump(mode="json") == body
        assert set(body) == set(CalendarOut.model_fields)
        assert set(body["policy"]) == set(PolicyIn.model_fields)
        assert all(set(row) == set(SlotOut.model_fields) for row in body["slots"])


def test_the_calendar_spans_the_local_dates_from_and_to_inclusive(world: World) -> None:
    doctor = world.doctor()
    monday = next_workday() + timedelta(days=-next_workday().weekday() + 7)
    starts = _starts(world, doctor.id, monday, monday + timedelta(days=6))
    weekdays = [monday + timedelta(days=n) for n in range(5)]
    assert starts == [start for day in weekdays for start in _utc_hours(day, range(9, 17))]


@pytest.mark.parametrize("viewer", ["patient", "doctor", "admin"])
def test_a_booked_slot_names_its_appointment_to_those_involved(world: World, viewer: str) -> None:
    doctor, patient = world.doctor(), world.patient()
    booked = world.book(patient, doctor, slot(12))
    caller = {"patient": patient, "doctor": doctor, "admin": world.admin()}[viewer]
    day = next_workday()
    slots = _calendar(world, doctor.id, day, day, caller).json()["slots"]
    row = next(row for row in slots if row["start"] == iso(slot(12)))
    assert (row["state"], row["appointment_id"], row["patient_id"]) == (
        "booked",
        booked["id"],
        patient.id,
    )


@pytest.mark.parametrize("viewer", ["other-patient", "other-doctor", "anonymous"])
def test_a_booked_slot_hides_its_appointment_from_others(world: World, viewer: str) -> None:
    doctor, patient = world.doctor(), world.patient()
    world.book(patient, doctor, slot(12))
    others = {"other-patient": world.patient, "other-doctor": world.doctor}
    caller = others[viewer]() if viewer in others else None
    day = next_workday()
    slots = _calendar(world, doctor.id, day, day, caller).json()["slots"]
    row = next(row for row in slots if row["start"] == iso(slot(12)))
    assert (row["state"], row["appointment_id"], row["patient_id"]) == ("booked", None, None)


def test_a_free_slot_names_no_appointment(world: World) -> None:
    doctor = world.doctor()
    day = next_workday()
    slots = _calendar(world, doctor.id, day, day, doctor).json()["slots"]
    assert {(row["appointment_id"], row["patient_id"]) for row in slots} == {(None, None)}


def test_a_calendar_of_31_days_is_answered(world: World) -> None:
    doctor = world.doctor()
    day = next_workday()
    assert _calendar(world, doctor.id, day, day + timedelta(days=30)).status_code == 200


def test_a_calendar_of_more_than_31_days_is_refused(world: World) -> None:
    doctor = world.doctor()
    day = next_workday()
    answer = _calendar(world, doctor.id, day, day + timedelta(days=31))
    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid"
    assert [problem["field"] for problem in answer.json()["fields"]] == ["to"]


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (lambda: next_workday(), lambda: next_workday() - timedelta(days=1)),
        (lambda: iso(slot(12)), lambda: iso(slot(10))),
    ],
    ids=["dates", "instants"],
)
def test_a_calendar_ending_before_it_starts_is_refused(
    world: World, first: Callable[[], Any], last: Callable[[], Any]
) -> None:
    doctor = world.doctor()
    answer = _calendar(world, doctor.id, first(), last())
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid"


@pytest.mark.parametrize(
    "query",
    [
        {"to": "2030-01-01"},
        {"from": "tomorrow", "to": "2030-01-01"},
        {"from": "2030-02-30", "to": "2030-03-01"},
        {"from": "2030-01-01T10:00:00", "to": "2030-01-02"},
    ],
    ids=["missing", "word", "no-such-day", "naive-instant"],
)
def test_a_calendar_needs_a_valid_from(world: World, query: dict[str, str]) -> None:
    doctor = world.doctor()
    answer = world.client.get(f"/doctors/{doctor.id}/slots", params=query)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid"
    assert "from" in [problem["field"] for problem in answer.json()["fields"]]


def test_the_calendar_of_an_unknown_doctor_is_not_found(world: World) -> None:
    day = next_workday()
    assert _calendar(world, 999_999, day, day).status_code == 404


def test_instants_restrict_the_calendar_to_from_inclusive_to_exclusive(world: World) -> None:
    doctor = world.doctor()
    starts = _starts(world, doctor.id, iso(slot(10)), iso(slot(13)))
    assert starts == [iso(slot(hour)) for hour in (10, 11, 12)]


def test_instants_are_taken_in_utc_across_the_doctors_local_midnight(world: World) -> None:
    doctor = world.doctor()
    _set(world, doctor, _hours(timezone="Asia/Tokyo"))  # 09:00-17:00 JST is 00:00-08:00Z
    day = next_workday()
    first = _at(day, 0) - timedelta(hours=1)
    starts = _starts(world, doctor.id, iso(first), iso(_at(day, 2)))
    assert starts == _utc_hours(day, range(0, 2))


@pytest.mark.parametrize(
    "query",
    [
        {"from": "9999-12-31T00:00:00Z", "to": "9999-12-31T01:00:00Z"},
        {"from": "0001-01-01T00:00:00Z", "to": "0001-01-01T01:00:00Z"},
        {"from": "9999-12-31T00:00:00Z", "to": "9999-12-31T23:00:00-05:00"},
    ],
    ids=["last-day", "first-day", "after-year-9999-in-utc"],
)
def test_a_calendar_at_the_end_of_time_is_answered_not_an_error(
    world: World, query: dict[str, str]
) -> None:
    doctor = world.doctor()
    answer = world.client.get(f"/doctors/{doctor.id}/slots", params=query)
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 200:
        assert answer.json()["slots"] == []


# Daylight saving time


def test_berlin_slots_follow_the_wall_clock_on_the_saturday_before_the_spring_change(
    world: World,
) -> None:
    doctor = world.doctor()
    _set(world, doctor, _every_day("Europe/Berlin"))
    saturday = _ahead(_last_sunday_of_march) - timedelta(days=1)
    assert _starts(world, doctor.id, saturday, saturday) == _utc_hours(saturday, range(8, 16))


@pytest.mark.parametrize("offset", [0, 1], ids=["sunday", "monday"])
def test_berlin_slots_move_an_hour_earlier_in_utc_from_the_spring_change(
    world: World, offset: int
) -> None:
    doctor = world.doctor()
    _set(world, doctor, _every_day("Europe/Berlin"))
    day = _ahead(_last_sunday_of_march) + timedelta(days=offset)
    assert _starts(world, doctor.id, day, day) == _utc_hours(day, range(7, 15))


def test_nine_oclock_summer_time_in_berlin_is_booked_on_the_change_day(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    _set(world, doctor, _every_day("Europe/Berlin"))
    sunday = _ahead(_last_sunday_of_march)
    answer = _book(world, patient, doctor, f"{sunday.isoformat()}T08:00:00+01:00")
    assert answer.status_code == 201, answer.text
    assert answer.json()["scheduled_datetime"] == iso(_at(sunday, 7))
    assert datetime.fromisoformat(answer.json()["scheduled_datetime"]).astimezone(
        BERLIN
    ).time() == time(9)


@pytest.mark.parametrize(
    ("hour", "minute", "reason"),
    [(15, 0, "outside_hours"), (7, 30, "misaligned")],
    ids=["five-pm-summer-time", "half-past-nine-summer-time"],
)
def test_berlin_refuses_starts_off_the_wall_clock_grid_on_the_change_day(
    world: World, hour: int, minute: int, reason: str
) -> None:
    doctor, patient = world.doctor(), world.patient()
    _set(world, doctor, _every_day("Europe/Berlin"))
    sunday = _ahead(_last_sunday_of_march)
    answer = _book(world, patient, doctor, _at(sunday, hour, minute))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "not_offered"
    assert answer.json()["reason"] == reason


@pytest.mark.parametrize(
    ("offset", "first_hour"), [(-1, 13), (0, 14)], ids=["saturday-edt", "fall-back-sunday-est"]
)
def test_new_york_slots_follow_the_wall_clock_across_the_autumn_change(
    world: World, offset: int, first_hour: int
) -> None:
    doctor = world.doctor()
    _set(world, doctor, _every_day("America/New_York"))
    day = _ahead(_first_sunday_of_november) + timedelta(days=offset)
    starts = _starts(world, doctor.id, day, day)
    assert starts == _utc_hours(day, range(first_hour, first_hour + 8))
    local = [datetime.fromisoformat(start).astimezone(NEW_YORK).hour for start in starts]
    assert local == list(range(9, 17))


# Why a start is not offered


def _override_day_off() -> dict[str, Any]:
    return _hours(overrides=[{"from": next_workday().isoformat(), "intervals": []}])


@pytest.mark.parametrize(
    ("hours", "start", "reason"),
    [
        (_override_day_off, lambda: slot(10), "day_off"),
        (lambda: _hours(horizon_days=1), lambda: slot(10), "beyond_horizon"),
        (lambda: _hours(notice_minutes=60 * 24 * 30), lambda: slot(10), "too_soon"),
        (
            lambda: _hours(weekly=_week(_span("09:00", "12:00"), _span("13:00", "17:00"))),
            lambda: slot(12),
            "outside_hours",
        ),
        (lambda: _hours(slot_minutes=30), lambda: slot(10).replace(minute=15), "misaligned"),
    ],
    ids=["override-day-off", "beyond-horizon", "within-notice", "lunch-break", "quarter-past"],
)
def test_a_start_the_doctors_hours_do_not_offer_is_refused_with_its_reason(
    world: World,
    hours: Callable[[], dict[str, Any]],
    start: Callable[[], datetime],
    reason: str,
) -> None:
    doctor, patient = world.doctor(), world.patient()
    _set(world, doctor, hours())
    answer = _book(world, patient, doctor, start())
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "not_offered"
    assert answer.json()["reason"] == reason


def test_the_hours_after_a_lunch_break_are_offered(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    _set(world, doctor, _hours(weekly=_week(_span("09:00", "12:00"), _span("13:00", "17:00"))))
    assert _book(world, patient, doctor, slot(13)).status_code == 201


# Slot length


def test_a_30_minute_slot_ends_30_minutes_after_it_starts(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    _set(world, doctor, _hours(slot_minutes=30))
    answer = _book(world, patient, doctor, slot(10).replace(minute=30))
    assert answer.status_code == 201, answer.text
    assert answer.json()["scheduled_datetime"] == iso(slot(10).replace(minute=30))
    assert answer.json()["end_datetime"] == iso(slot(11))


def test_available_slots_are_the_local_dates_free_starts_of_a_kolkata_doctor(
    world: World,
) -> None:
    doctor = world.doctor()
    _set(world, doctor, _hours(timezone="Asia/Kolkata", slot_minutes=30))
    day = next_workday()
    answer = world.client.get(f"/appointments/doctor/{doctor.id}/available-slots?date={day}")
    assert answer.status_code == 200, answer.text
    first = _at(day, 3, 30)  # 09:00 IST
    assert answer.json()["slots"] == [iso(first + timedelta(minutes=30 * n)) for n in range(16)]


def test_a_60_minute_appointment_keeps_both_halves_booked_after_a_change_to_30(
    world: World,
) -> None:
    doctor, patient = world.doctor(), world.patient()
    world.book(patient, doctor, slot(10))
    _set(world, doctor, _hours(slot_minutes=30))
    day = next_workday()
    slots = _calendar(world, doctor.id, day, day).json()["slots"]
    states = {row["start"]: row["state"] for row in slots}
    assert len(states) == 16
    booked = {start for start, state in states.items() if state == "booked"}
    assert booked == {iso(slot(10)), iso(slot(10).replace(minute=30))}


def test_available_slots_leave_out_both_halves_of_a_60_minute_appointment(world: World) -> None:
    doctor, patient = world.doctor(), world.patient()
    world.book(patient, doctor, slot(10))
    _set(world, doctor, _hours(slot_minutes=30))
    day = next_workday()
    free = world.client.get(f"/appointments/doctor/{doctor.id}/available-slots?date={day}")
    starts = free.json()["slots"]
    assert iso(slot(10)) not in starts
    assert iso(slot(10).replace(minute=30)) not in starts
    assert iso(slot(11)) in starts
    assert len(starts) == 14


def test_the_second_half_of_a_60_minute_appointment_is_taken_after_a_change_to_30(
    world: World,
) -> None:
    doctor, patient, other = world.doctor(), world.patient(), world.patient()
    world.book(patient, doctor, slot(10))
    _set(world, doctor, _hours(slot_minutes=30))
    answer = _book(world, other, doctor, slot(10).replace(minute=30))
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "slot_taken"
