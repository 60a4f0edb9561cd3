from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from hub.api.endpoint import Call, Endpoint, Param
from hub.schemas import AppointmentCreate, AppointmentOut, CancelRequest, IsoDate, SlotsOut


class DayQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    date: IsoDate


async def book(call: Call) -> AppointmentOut:
    body: AppointmentCreate = call.body
    row = await call.hub.booking.book(
        call.principal, body.doctor_id, body.scheduled_datetime, body.patient_id
    )
    return AppointmentOut.model_validate(row)


async def for_patient(call: Call) -> list[AppointmentOut]:
    rows = await call.hub.booking.for_patient(call.principal, call.path_int("id"))
    return [AppointmentOut.model_validate(row) for row in rows]


async def for_doctor(call: Call) -> list[AppointmentOut]:
    rows = await call.hub.booking.for_doctor(call.principal, call.path_int("id"))
    return [
        AppointmentOut.model_validate(row).model_copy(update={"outside_hours": outside})
        for row, outside in rows
    ]


async def cancel(call: Call) -> AppointmentOut:
    body: CancelRequest = call.body
    row = await call.hub.booking.cancel(call.principal, call.path_int("id"), body.reason)
    return AppointmentOut.model_validate(row)


async def complete(call: Call) -> AppointmentOut:
    row = await call.hub.booking.complete(call.principal, call.path_int("id"))
    return AppointmentOut.model_validate(row)


async def available_slots(call: Call) -> SlotsOut:
    day = call.query(DayQuery).date
    doctor_id = call.path_int("id")
    slots = await call.hub.booking.free_slots(doctor_id, day)
    return SlotsOut(doctor_id=doctor_id, date=day, slots=slots)


ENDPOINTS = [
    Endpoint(
        "POST",
        "/appointments/",
        book,
        "Book a slot for the signed-in patient",
        "appointments",
        AppointmentOut,
        AppointmentCreate,
        status=201,
        errors=(401, 403, 404, 409, 422),
    ),
    Endpoint(
        "GET",
        "/appointments/patient/{id:int}",
        for_patient,
        "A patient's appointments (self, admins)",
        "appointments",
        list[AppointmentOut],
        errors=(401, 403),
    ),
    Endpoint(
        "GET",
        "/appointments/doctor/{id:int}",
        for_doctor,
        "A doctor's appointments (self, admins)",
        "appointments",
        list[AppointmentOut],
        errors=(401, 403),
    ),
    Endpoint(
        "PUT",
        "/appointments/{id:int}/cancel",
        cancel,
        "Cancel an appointment (its patient, its doctor, admins)",
        "appointments",
        AppointmentOut,
        CancelRequest,
        errors=(401, 403, 404, 409, 422),
    ),
    Endpoint(
        "PUT",
        "/appointments/{id:int}/complete",
        complete,
        "Mark an appointment completed (its doctor, at or after the start)",
        "appointments",
        AppointmentOut,
        errors=(401, 403, 404, 409),
    ),
    Endpoint(
        "GET",
        "/appointments/doctor/{id:int}/available-slots",
        available_slots,
        "Free slot starts of a doctor on a date, in UTC",
        "appointments",
        SlotsOut,
        auth=False,
        errors=(404, 422),
        query=(
            Param(
                "date", {"type": "string", "format": "date"}, "The day, YYYY-MM-DD", required=True
            ),
        ),
    ),
]
