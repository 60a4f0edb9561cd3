from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from starlette.responses import Response

from hub import schedules
from hub.api.endpoint import Call, Endpoint, Param
from hub.availability import WEEKDAYS, Availability, Interval, Override
from hub.calendar import CalendarView, Window
from hub.schemas import (
    AvailabilityIn,
    CalendarOut,
    IntervalIn,
    OverrideIn,
    PolicyIn,
    Week,
)


class WindowQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    first: str = Field(alias="from", max_length=40)
    last: str = Field(alias="to", max_length=40)
    visit_type_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


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


async def get_availability(call: Call[None]) -> AvailabilityIn:
    hours, policy = await schedules.get_availability(
        call.hub.sessions, call.principal, call.path_int("id")
    )
    return to_body(hours, policy)


async def put_availability(call: Call[AvailabilityIn]) -> AvailabilityIn:
    body = call.body
    hours, policy = await schedules.set_availability(
        call.hub.relay,
        call.principal,
        call.path_int("id"),
        to_availability(body),
        schedules.Policy(**body.policy.model_dump()),
    )
    return to_body(hours, policy)


# A calendar is written straight from its view's dataclasses, whose fields are CalendarOut's
# (which documents it) but for `shared`: validating a busy week's hundreds of slots into
# models first cost ten times the writing.
_CALENDAR = TypeAdapter(CalendarView)
_INTERNAL = {"shared"}


async def doctor_slots(call: Call[None]) -> Response:
    query = call.query(WindowQuery)
    window = Window.parse(query.first, query.last)
    view = await call.hub.calendar.view(
        call.principal, call.path_int("id"), window, query.visit_type_id
    )
    return Response(_CALENDAR.dump_json(view, exclude=_INTERNAL), media_type="application/json")


ENDPOINTS: list[Endpoint[Any, Any]] = [
    Endpoint(
        "GET",
        "/doctors/{id:int}/availability",
        get_availability,
        summary="A doctor's working hours, slot length, notice, horizon and overrides",
        tag="availability",
        response=AvailabilityIn,
        errors=(401, 403, 404),
    ),
    Endpoint(
        "PUT",
        "/doctors/{id:int}/availability",
        put_availability,
        summary="Replace a doctor's availability (the doctor, admins); appointments never move",
        tag="availability",
        response=AvailabilityIn,
        body=AvailabilityIn,
        errors=(401, 403, 404, 422),
    ),
    Endpoint(
        "GET",
        "/doctors/{id:int}/slots",
        doctor_slots,
        summary="Every offered slot in a window (at most 31 days) with its state",
        tag="availability",
        response=CalendarOut,
        auth=False,
        errors=(404, 422),
        query=(
            Param("from", {"type": "string"}, "YYYY-MM-DD (doctor's local date) or ISO time", True),
            Param("to", {"type": "string"}, "YYYY-MM-DD (inclusive) or ISO time (exclusive)", True),
            Param("visit_type_id", {"type": "integer", "minimum": 1}, "Default: the first"),
        ),
    ),
]
