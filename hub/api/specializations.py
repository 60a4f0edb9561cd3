from __future__ import annotations

from hub import catalog
from hub.api.endpoint import Call, Endpoint
from hub.schemas import SpecializationCreate, SpecializationOut


async def list_specializations(call: Call) -> list[SpecializationOut]:
    rows = await catalog.list_specializations(call.hub.sessions)
    return [SpecializationOut.model_validate(row) for row in rows]


async def get_specialization(call: Call) -> SpecializationOut:
    row = await catalog.get_specialization(call.hub.sessions, call.path_int("id"))
    return SpecializationOut.model_validate(row)


async def add_specialization(call: Call) -> SpecializationOut:
    body: SpecializationCreate = call.body
    row = await catalog.add_specialization(call.hub.sessions, call.principal, body.name)
    return SpecializationOut.model_validate(row)


ENDPOINTS = [
    Endpoint(
        "POST",
        "/specializations/",
        add_specialization,
        "Add a specialization (admins)",
        "specializations",
        SpecializationOut,
        SpecializationCreate,
        status=201,
        errors=(401, 403, 409, 422),
    ),
    Endpoint(
        "GET",
        "/specializations/",
        list_specializations,
        "Every specialization",
        "specializations",
        list[SpecializationOut],
        auth=False,
    ),
    Endpoint(
        "GET",
        "/specializations/{id:int}",
        get_specialization,
        "One specialization",
        "specializations",
        SpecializationOut,
        auth=False,
        errors=(404,),
    ),
]
