from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub import clinic
from hub.api.endpoint import MAX_ID, Call, Endpoint, Param
from hub.schemas import DayAppointmentOut, DoctorDayOut, DoctorPublic, IsoDate, PatientOnCall


class DayQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    date: IsoDate
    specialization_id: int | None = Field(default=None, ge=1, le=MAX_ID)


def _entry(entry: clinic.Entry) -> DayAppointmentOut:
    row = entry.appointment
    return DayAppointmentOut(
        id=row.id,
        start=row.start_at,
        end=row.end_at,
        status=row.status,
        patient=PatientOnCall.model_validate(row.patient),
        visit_type_id=row.visit_type_id,
        visit_type=entry.visit_type,
        reason=row.reason,  # the front desk and admins read it (hub.visits.sees_reason)
        cancel_reason=row.cancel_reason,
        rescheduled_from_id=row.rescheduled_from_id,
        moved_to=entry.moved_to,
    )


async def clinic_day(call: Call[None]) -> list[DoctorDayOut]:
    where = call.query(DayQuery)
    days = await clinic.day(call.hub.sessions, call.principal, where.date, where.specialization_id)
    return [
        DoctorDayOut(
            doctor=DoctorPublic.model_validate(day.doctor),
            timezone=day.timezone,
            appointments=[_entry(entry) for entry in day.entries],
        )
        for day in days
    ]


ENDPOINTS: list[Endpoint[Any, Any]] = [
    Endpoint(
        "GET",
        "/appointments/day",
        clinic_day,
        audit=("appointments.list", "clinic"),
        summary="The clinic's day (the front desk, admins): every active doctor with their "
        "appointments that start on the date in the doctor's own time zone, every status",
        tag="appointments",
        response=list[DoctorDayOut],
        errors=(401, 403, 422),
        query=(
            Param("date", {"type": "string", "format": "date"}, "YYYY-MM-DD", required=True),
            Param(
                "specialization_id",
                {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                "Only the doctors of this specialization",
            ),
        ),
    ),
]
