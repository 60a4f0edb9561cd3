from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from hub import schedules
from hub.api.endpoint import Call, Endpoint, Param
from hub.auth import Role
from hub.availability import WEEKDAYS, Availability, Interval, Override
from hub.errors import InvalidInput
from hub.schemas import AvailabilityIn, CalendarOut, IntervalIn, OverrideIn, SlotOut, Week

MAX_DAYS = 31
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class WindowQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    first: str = Field(alias="from", max_length=40)
    last: str = Field(alias="to", max_length=40)


def _intervals(items: list[IntervalIn]) -> tuple[Interval, ...]:
    return tuple(Interval(item.start, item.end) for item in items)


def to_availability(body: AvailabilityIn) -> Availability:
    return Availability(
        timezone=body.timezone,
        weekly=tuple(_intervals(getattr(body.weekly, day)) for day in WEEKDAYS),
        slot_minutes=body.slot_minutes,
        buffer_minutes=body.buffer_minutes,
        notice_minutes=body.notice_minutes,
        horizon_days=body.horizon_days,
        overrides=tuple(
            Override(o.first, o.last or o.first, _intervals(o.intervals)) for o in body.overrides
        ),
    )


def _pairs(intervals: tuple[Interval, ...]) -> list[IntervalIn]:
    return [IntervalIn(start=i.start, end=i.end) for i in intervals]


def to_body(hours: Availability) -> AvailabilityIn:
    return AvailabilityIn(
        timezone=hours.timezone,
        weekly=Week(**{d: _pairs(i) for d, i in zip(WEEKDAYS, hours.weekly, strict=True)}),
        slot_minutes=hours.slot_minutes,
        buffer_minutes=hours.buffer_minutes,
        notice_minutes=hours.notice_minutes,
        horizon_days=hours.horizon_days,
        overrides=[
            OverrideIn(first=o.first, last=o.last, intervals=_pairs(o.intervals))
            for o in hours.overrides
        ],
    )


async def get_availability(call: Call) -> AvailabilityIn:
    hours = await schedules.get_availability(call.hub.sessions, call.principal, call.path_int("id"))
    return to_body(hours)


async def put_availability(call: Call) -> AvailabilityIn:
    hours = await schedules.set_availability(
        call.hub.sessions, call.principal, call.path_int("id"), to_availability(call.body)
    )
    return to_body(hours)


def _bound(name: str, text: str) -> date | datetime:
    try:
        if DATE.fullmatch(text):
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"{name} is not a date or an ISO 8601 time",
            [{"field": name, "message": "must be YYYY-MM-DD or an ISO 8601 time with offset"}],
        ) from exc
    if moment.tzinfo is None:
        raise InvalidInput(
            f"{name} needs an offset", [{"field": name, "message": "add Z or an offset"}]
        )
    return moment.astimezone(UTC)


def _day(bound: date | datetime, pad: int) -> date:
    # An instant is widened by a day on its side: its local date depends on the doctor's zone.
    return bound.date() + timedelta(days=pad) if isinstance(bound, datetime) else bound


def _inside(start: datetime, low: date | datetime, high: date | datetime) -> bool:
    after_low = not isinstance(low, datetime) or start >= low
    return after_low and (not isinstance(high, datetime) or start < high)


async def doctor_slots(call: Call) -> CalendarOut:
    window = call.query(WindowQuery)
    low, high = _bound("from", window.first), _bound("to", window.last)
    first, last = _day(low, -1), _day(high, 1)
    if last < first:
        raise InvalidInput("to is before from", [{"field": "to", "message": "before from"}])
    if (_day(high, 0) - _day(low, 0)).days >= MAX_DAYS:
        raise InvalidInput(
            f"at most {MAX_DAYS} days at a time",
            [{"field": "to", "message": f"at most {MAX_DAYS} days after from"}],
        )
    doctor_id = call.path_int("id")
    hours, slots, active = await call.hub.booking.calendar(doctor_id, first, last)
    caller = call.principal
    out = []
    for slot in slots:
        if not _inside(slot.start, low, high):
            continue
        row = active.get(slot.start)
        seen = (
            row is not None
            and caller is not None
            and (
                caller.role is Role.admin
                or caller.is_(Role.doctor, row.doctor_id)
                or caller.is_(Role.patient, row.patient_id)
            )
        )
        out.append(
            SlotOut(
                start=slot.start,
                end=slot.end,
                state=slot.state,
                appointment_id=row.id if seen and row else None,
                patient_id=row.patient_id if seen and row else None,
            )
        )
    return CalendarOut(doctor_id=doctor_id, timezone=hours.timezone, slots=out)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/doctors/{id:int}/availability",
        get_availability,
        "A doctor's working hours, slot length, notice, horizon and overrides",
        "availability",
        AvailabilityIn,
        errors=(401, 403, 404),
    ),
    Endpoint(
        "PUT",
        "/doctors/{id:int}/availability",
        put_availability,
        "Replace a doctor's availability (the doctor, admins); appointments never move",
        "availability",
        AvailabilityIn,
        AvailabilityIn,
        errors=(401, 403, 404, 422),
    ),
    Endpoint(
        "GET",
        "/doctors/{id:int}/slots",
        doctor_slots,
        "Every offered slot in a window (at most 31 days) with its state",
        "availability",
        CalendarOut,
        auth=False,
        errors=(404, 422),
        query=(
            Param("from", {"type": "string"}, "YYYY-MM-DD (doctor's local date) or ISO time", True),
            Param("to", {"type": "string"}, "YYYY-MM-DD (inclusive) or ISO time (exclusive)", True),
        ),
    ),
]
