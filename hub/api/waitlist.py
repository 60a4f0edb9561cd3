from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.api.appointments import appointment_out
from hub.api.endpoint import MAX_ID, Call, Endpoint, Param
from hub.schemas import AppointmentOut, WaitlistJoin, WaitlistOut
from hub.waitlist import EntryView


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    doctor_id: int | None = Field(default=None, ge=1, le=MAX_ID)


def entry_out(view: EntryView) -> WaitlistOut:
    return WaitlistOut.model_validate(view)


async def join(call: Call[WaitlistJoin]) -> WaitlistOut:
    return entry_out(await call.hub.waitlist.join(call.principal, call.body.wanted()))


async def list_entries(call: Call[None]) -> list[WaitlistOut]:
    doctor_id = call.query(ListQuery).doctor_id
    return [entry_out(v) for v in await call.hub.waitlist.entries(call.principal, doctor_id)]


async def get_entry(call: Call[None]) -> WaitlistOut:
    return entry_out(await call.hub.waitlist.get(call.principal, call.path_int("id")))


async def leave(call: Call[None]) -> None:
    await call.hub.waitlist.leave(call.principal, call.path_int("id"))


async def accept(call: Call[None]) -> AppointmentOut:
    row = await call.hub.waitlist.accept(call.principal, call.path_int("id"))
    return appointment_out(call, row)


async def decline(call: Call[None]) -> None:
    await call.hub.waitlist.decline(call.principal, call.path_int("id"))


ENTRY = "/waitlist/{id:int}"
OFFER = "/waitlist/offers/{id:int}"
ENDPOINTS: list[Endpoint[Any, Any]] = [
    Endpoint(
        "POST",
        "/waitlist",
        join,
        summary="Join a doctor's waitlist (a patient, or the front desk or the doctor for one); "
        "a free slot that fits is offered at once",
        tag="waitlist",
        response=WaitlistOut,
        body=WaitlistJoin,
        status=201,
        errors=(401, 403, 404, 409, 422),
    ),
    Endpoint(
        "GET",
        "/waitlist",
        list_entries,
        summary="Live waitlist entries: a patient's own, a doctor's list, every list for the "
        "front desk and admins",
        tag="waitlist",
        response=list[WaitlistOut],
        errors=(401, 403, 422),
        query=(Param("doctor_id", {"type": "integer", "minimum": 1, "maximum": MAX_ID}),),
    ),
    Endpoint(
        "GET",
        ENTRY,
        get_entry,
        summary="One entry, its place in line and its open offer",
        tag="waitlist",
        response=WaitlistOut,
        errors=(401, 404),
    ),
    Endpoint(
        "DELETE",
        ENTRY,
        leave,
        summary="Leave the waitlist (an open offer is handed on)",
        tag="waitlist",
        status=204,
        errors=(401, 404),
    ),
    Endpoint(
        "POST",
        OFFER + "/accept",
        accept,
        summary="Accept an offer: book the held slot (or move the entry's appointment there)",
        tag="waitlist",
        response=AppointmentOut,
        errors=(401, 403, 404, 409, 422),
    ),
    Endpoint(
        "POST",
        OFFER + "/decline",
        decline,
        summary="Decline an offer: the slot goes to the next in line",
        tag="waitlist",
        status=204,
        errors=(401, 404, 409),
    ),
]
