from __future__ import annotations

import re
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from hub import schedules
from hub.api.endpoint import Call, Endpoint, Param
from hub.auth import Principal, Role
from hub.availability import WEEKDAYS, Availability, Interval, Override
from hub.errors import InvalidInput
from hub.runtime import Hub
from hub.schemas import (
    AvailabilityIn,
    CalendarOut,
    IntervalIn,
    OverrideIn,
    PolicyIn,
    SlotOut,
    Week,
)

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


def to_body(hours: Availability, policy: schedules.Policy) -> AvailabilityIn:
    return AvailabilityIn(
        policy=PolicyIn(**asdict(policy)),
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
    hours, policy = await schedules.get_availability(
        call.hub.sessions, call.principal, call.path_int("id")
    )
    return to_body(hours, policy)


async def put_availability(call: Call) -> AvailabilityIn:
    body: AvailabilityIn = call.body
    hours, policy = await schedules.set_availability(
        call.hub.sessions,
        call.principal,
        call.path_int("id"),
        to_availability(body),
        schedules.Policy(**body.policy.model_dump()),
    )
    return to_body(hours, policy)


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
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        problem = [{"field": name, "message": "out of range in UTC"}]
        raise InvalidInput(f"{name} is out of range", problem) from exc


def _day(bound: date | datetime, pad: int = 0) -> date:
    # An instant is widened by a day on its side: its local date depends on the doctor's zone.
    if not isinstance(bound, datetime):
        return bound
    try:
        return bound.date() + timedelta(days=pad)
    except OverflowError:
        return date.max if pad > 0 else date.min


def both_instants(low: date | datetime, high: date | datetime) -> bool:
    return isinstance(low, datetime) and isinstance(high, datetime)


def _inside(start: datetime, low: date | datetime, high: date | datetime) -> bool:
    after_low = not isinstance(low, datetime) or start >= low
    return after_low and (not isinstance(high, datetime) or start < high)


def window(first_text: str, last_text: str) -> tuple[date | datetime, date | datetime]:
    """The bounds of a calendar request, checked: InvalidInput naming the field if not."""
    low, high = _bound("from", first_text), _bound("to", last_text)
    backwards = high <= low if both_instants(low, high) else _day(high) < _day(low)
    if backwards:
        raise InvalidInput("to is before from", [{"field": "to", "message": "before from"}])
    inclusive = 0 if isinstance(high, datetime) else 1  # a date `to` counts its own day
    if (_day(high) - _day(low)).days + inclusive > MAX_DAYS:
        raise InvalidInput(
            f"at most {MAX_DAYS} days at a time",
            [{"field": "to", "message": f"at most {MAX_DAYS} days after from"}],
        )
    return low, high


async def calendar_view(
    hub: Hub, principal: Principal | None, doctor_id: int, first_text: str, last_text: str
) -> CalendarOut:
    """Every offered slot of a doctor between `from` and `to` (dates in the doctor's zone,
    `to` inclusive, or ISO instants, `to` exclusive; at most 31 days) with its state; who
    booked is shown only to that patient, the doctor and admins."""
    low, high = window(first_text, last_text)
    hours, slots, active = await hub.booking.calendar(doctor_id, _day(low, -1), _day(high, 1))
    out = []
    for slot in slots:
        if not _inside(slot.start, low, high):
            continue
        row = active.get(slot.start)
        seen = (
            row is not None
            and principal is not None
            and (
                principal.role is Role.admin
                or principal.is_(Role.doctor, row.doctor_id)
                or principal.is_(Role.patient, row.patient_id)
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


async def doctor_slots(call: Call) -> CalendarOut:
    window = call.query(WindowQuery)
    return await calendar_view(
        call.hub, call.principal, call.path_int("id"), window.first, window.last
    )


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
