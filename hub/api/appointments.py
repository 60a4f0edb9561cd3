from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from hub import visits
from hub.api.endpoint import Call, Endpoint, Param
from hub.errors import InvalidInput
from hub.models import Appointment
from hub.schemas import (
    AppointmentCreate,
    AppointmentOut,
    CancelRequest,
    HistoryOut,
    HoldCreate,
    HoldOut,
    IsoDate,
    RescheduleRequest,
    SlotsOut,
)

KEY = re.compile(r"^[\x21-\x7e]{1,100}$")


class DayQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    date: IsoDate


def _idempotency_key(call: Call[Any]) -> str | None:
    key = call.request.headers.get("idempotency-key")
    if key is not None and not KEY.fullmatch(key):
        raise InvalidInput(
            "Idempotency-Key must be 1-100 visible ASCII characters",
            [{"field": "Idempotency-Key", "message": "1-100 visible ASCII characters"}],
        )
    return key


def appointment_out(call: Call[Any], row: Appointment) -> AppointmentOut:
    # The patient's reason only for the doctor, the front desk and admins.
    out = AppointmentOut.model_validate(row)
    if visits.sees_reason(call.principal, row.doctor_id):
        return out.model_copy(update={"reason": row.reason})
    return out


async def book(call: Call[AppointmentCreate]) -> AppointmentOut:
    body = call.body
    row, _replayed = await call.hub.booking.book(
        call.principal,
        body.doctor_id,
        body.scheduled_datetime,
        patient_id=body.patient_id,
        hold_id=body.hold_id,
        idempotency_key=_idempotency_key(call),
        visit_type_id=body.visit_type_id,
        reason=body.reason,
    )
    return appointment_out(call, row)


async def hold(call: Call[HoldCreate]) -> HoldOut:
    body = call.body
    held = await call.hub.booking.hold(
        call.principal,
        body.doctor_id,
        body.scheduled_datetime,
        address=call.address,
        moving=body.appointment_id,
        visit_type_id=body.visit_type_id,
    )
    return HoldOut(
        hold_id=held.id,
        doctor_id=held.doctor_id,
        scheduled_datetime=held.start,
        expires_at=held.expires_at,
    )


async def release(call: Call[None]) -> None:
    await call.hub.booking.release(call.principal, call.request.path_params["hold_id"])


async def for_patient(call: Call[None]) -> list[AppointmentOut]:
    rows = await call.hub.lifecycle.for_patient(call.principal, call.path_int("id"))
    return [appointment_out(call, row) for row in rows]


async def for_doctor(call: Call[None]) -> list[AppointmentOut]:
    rows = await call.hub.lifecycle.for_doctor(call.principal, call.path_int("id"))
    return [
        appointment_out(call, row).model_copy(update={"outside_hours": outside})
        for row, outside in rows
    ]


async def cancel(call: Call[CancelRequest]) -> AppointmentOut:
    body = call.body
    row = await call.hub.lifecycle.cancel(call.principal, call.path_int("id"), body.reason)
    return appointment_out(call, row)


async def complete(call: Call[None]) -> AppointmentOut:
    row = await call.hub.lifecycle.complete(call.principal, call.path_int("id"))
    return appointment_out(call, row)


async def no_show(call: Call[None]) -> AppointmentOut:
    row = await call.hub.lifecycle.no_show(call.principal, call.path_int("id"))
    return appointment_out(call, row)


async def reschedule(call: Call[RescheduleRequest]) -> AppointmentOut:
    body = call.body
    row = await call.hub.booking.reschedule(
        call.principal,
        call.path_int("id"),
        body.scheduled_datetime,
        body.hold_id,
        body.visit_type_id,
    )
    return appointment_out(call, row)


async def history(call: Call[None]) -> list[HistoryOut]:
    rows = await call.hub.lifecycle.history(call.principal, call.path_int("id"))
    return [HistoryOut.model_validate(row) for row in rows]


async def available_slots(call: Call[None]) -> SlotsOut:
    day = call.query(DayQuery).date
    doctor_id = call.path_int("id")
    slots = await call.hub.calendar.free_starts(doctor_id, day)
    return SlotsOut(doctor_id=doctor_id, date=day, slots=slots)


APPOINTMENT = "/appointments/{id:int}"
ENDPOINTS: list[Endpoint[Any, Any]] = [
    Endpoint(
        "POST",
        "/appointments/",
        book,
        audit=("appointment.book", "appointments"),
        summary="Book a slot for the signed-in patient, from a hold or directly "
        "(honours an Idempotency-Key header)",
        tag="appointments",
        response=AppointmentOut,
        body=AppointmentCreate,
        status=201,
        errors=(401, 403, 404, 409, 422),
    ),
    Endpoint(
        "POST",
        "/appointments/holds",
        hold,
        audit=("hold.create", "holds"),
        summary="Hold a free slot for a short time while confirming (patients)",
        tag="appointments",
        response=HoldOut,
        body=HoldCreate,
        status=201,
        errors=(401, 403, 404, 409, 422, 503),
    ),
    Endpoint(
        "DELETE",
        "/appointments/holds/{hold_id:str}",
        release,
        audit=("hold.release", "hold:{hold_id}"),
        summary="Release a hold (its patient)",
        tag="appointments",
        response=None,
        status=204,
        errors=(401, 403, 404, 422, 503),
    ),
    Endpoint(
        "GET",
        "/appointments/patient/{id:int}",
        for_patient,
        audit=("appointments.list", "patient:{id}"),
        summary="A patient's appointments (self, admins)",
        tag="appointments",
        response=list[AppointmentOut],
        errors=(401, 403),
    ),
    Endpoint(
        "GET",
        "/appointments/doctor/{id:int}",
        for_doctor,
        audit=("appointments.list", "doctor:{id}"),
        summary="A doctor's appointments (self, admins); outside_hours marks those the hours no "
        "longer cover",
        tag="appointments",
        response=list[AppointmentOut],
        errors=(401, 403, 404),
    ),
    Endpoint(
        "PUT",
        APPOINTMENT + "/cancel",
        cancel,
        audit=("appointment.cancel", "appointment:{id}"),
        summary="Cancel an appointment (its patient within the cutoff, its doctor, admins)",
        tag="appointments",
        response=AppointmentOut,
        body=CancelRequest,
        errors=(401, 403, 404, 409, 422),
    ),
    Endpoint(
        "PUT",
        APPOINTMENT + "/reschedule",
        reschedule,
        audit=("appointment.reschedule", "appointment:{id}"),
        summary="Move an appointment to a new start or a held slot, atomically",
        tag="appointments",
        response=AppointmentOut,
        body=RescheduleRequest,
        errors=(401, 403, 404, 409, 422),
    ),
    Endpoint(
        "PUT",
        APPOINTMENT + "/complete",
        complete,
        audit=("appointment.complete", "appointment:{id}"),
        summary="Mark an appointment completed (its doctor, at or after the start)",
        tag="appointments",
        response=AppointmentOut,
        errors=(401, 403, 404, 409),
    ),
    Endpoint(
        "PUT",
        APPOINTMENT + "/no-show",
        no_show,
        audit=("appointment.no_show", "appointment:{id}"),
        summary="Mark a no-show (its doctor, after the start + grace)",
        tag="appointments",
        response=AppointmentOut,
        errors=(401, 403, 404, 409),
    ),
    Endpoint(
        "GET",
        APPOINTMENT + "/history",
        history,
        audit=("appointment.history", "appointment:{id}"),
        summary="Every state change: who, when, from, to, why (its patient, its doctor, admins)",
        tag="appointments",
        response=list[HistoryOut],
        errors=(401, 403, 404),
    ),
    Endpoint(
        "GET",
        "/appointments/doctor/{id:int}/available-slots",
        available_slots,
        summary="Free slot starts of a doctor on a local date, in UTC",
        tag="appointments",
        response=SlotsOut,
        auth=False,
        errors=(404, 422),
        query=(Param("date", {"type": "string", "format": "date"}, "YYYY-MM-DD", required=True),),
    ),
]
