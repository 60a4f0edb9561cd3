from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from hub.api.endpoint import Call, Endpoint, Param, audit_as
from hub.links import Links
from hub.manage import Managed, ManageLinks
from hub.schemas import (
    CancelRequest,
    IsoDate,
    ManagedDoctorOut,
    ManagedOut,
    ManagedPolicyOut,
    ManagedSlotsOut,
    ManageReschedule,
    SpecializationOut,
)

LINK = "/manage/{token:str}"
GONE = 410


class DayQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    date: IsoDate


def _links(call: Call[Any]) -> ManageLinks:
    hub = call.hub
    return ManageLinks(
        hub.sessions, Links(hub.settings), hub.lifecycle, hub.booking, hub.calendar, hub.clock
    )


def _token(call: Call[Any]) -> str:
    return str(call.request.path_params["token"])


def managed_out(managed: Managed) -> ManagedOut:
    row, policy = managed.appointment, managed.policy
    doctor = row.doctor
    return ManagedOut(
        id=row.id,
        start=row.start_at,
        end=row.end_at,
        status=row.status,
        late_cancel=row.late_cancel,
        rescheduled_from_id=row.rescheduled_from_id,
        timezone=managed.timezone,
        doctor=ManagedDoctorOut(
            first_name=doctor.first_name,
            last_name=doctor.last_name,
            specialization=SpecializationOut.model_validate(doctor.specialization),
        ),
        patient_first_name=row.patient.first_name,
        policy=ManagedPolicyOut(
            cancel_cutoff_minutes=policy.cancel_cutoff_minutes,
            allow_late_cancel=policy.allow_late_cancel,
            words=managed.words,
        ),
        cancelling=managed.cancelling,
        cancel_until=managed.cancel_until,
    )


async def _acting(call: Call[Any]) -> ManageLinks:
    # Audited as the patient acting on the appointment, once the link says which.
    links = _links(call)
    subject = await links.check(_token(call))
    audit_as(call, subject.patient, f"appointment:{subject.appointment_id}")
    return links


async def manage_show(call: Call[None]) -> ManagedOut:
    links = await _acting(call)
    return managed_out(await links.show(_token(call)))


async def manage_cancel(call: Call[CancelRequest]) -> ManagedOut:
    links = await _acting(call)
    return managed_out(await links.cancel(_token(call), call.body.reason))


async def manage_reschedule(call: Call[ManageReschedule]) -> ManagedOut:
    links = await _acting(call)
    return managed_out(await links.reschedule(_token(call), call.body.start))


async def manage_slots(call: Call[None]) -> ManagedSlotsOut:
    day = call.query(DayQuery).date
    _doctor_id, starts = await _links(call).free_starts(_token(call), day)
    return ManagedSlotsOut(date=day, slots=starts)


ENDPOINTS: list[Endpoint[Any, Any]] = [
    Endpoint(
        "GET",
        LINK,
        manage_show,
        audit=("appointment.read", "manage-link"),
        summary="The appointment a manage link names, its doctor's cancellation policy and "
        "what a cancellation now would be (no sign-in: the link is the key)",
        tag="manage",
        response=ManagedOut,
        auth=False,
        errors=(GONE,),
    ),
    Endpoint(
        "POST",
        LINK + "/cancel",
        manage_cancel,
        audit=("appointment.cancel", "manage-link"),
        summary="Cancel the appointment as its patient (the cutoff applies); the link is used",
        tag="manage",
        response=ManagedOut,
        body=CancelRequest,
        body_required=False,
        auth=False,
        errors=(409, GONE, 422),
    ),
    Endpoint(
        "POST",
        LINK + "/reschedule",
        manage_reschedule,
        audit=("appointment.reschedule", "manage-link"),
        summary="Move the appointment to a free start as its patient: the new appointment; "
        "the link is used",
        tag="manage",
        response=ManagedOut,
        body=ManageReschedule,
        auth=False,
        errors=(403, 409, GONE, 422),
    ),
    Endpoint(
        "GET",
        LINK + "/slots",
        manage_slots,
        summary="The free starts with the appointment's doctor on a local date, in UTC",
        tag="manage",
        response=ManagedSlotsOut,
        auth=False,
        errors=(GONE, 422),
        query=(Param("date", {"type": "string", "format": "date"}, "YYYY-MM-DD", required=True),),
    ),
]
