from __future__ import annotations

from typing import Any

from hub import catalog
from hub.api.endpoint import Call, Endpoint
from hub.schemas import SpecializationCreate, SpecializationOut


async def list_specializations(call: Call[None]) -> list[SpecializationOut]:
    rows = await catalog.list_specializations(call.hub.sessions)
    return [SpecializationOut.model_validate(row) for row in rows]


async def get_specialization(call: Call[None]) -> SpecializationOut:
    row = await catalog.get_specialization(call.hub.sessions, call.path_int("id"))
    return SpecializationOut.model_validate(row)


async def add_specialization(call: Call[SpecializationCreate]) -> SpecializationOut:
    row = await catalog.add_specialization(call.hub.sessions, call.principal, call.body.name)
    return SpecializationOut.model_validate(row)


async def rename_specialization(call: Call[SpecializationCreate]) -> SpecializationOut:
    row = await catalog.rename_specialization(
        call.hub.sessions, call.principal, call.path_int("id"), call.body.name
    )
    return SpecializationOut.model_validate(row)


async def remove_specialization(call: Call[None]) -> None:
    await catalog.remove_specialization(call.hub.sessions, call.principal, call.path_int("id"))


ENDPOINTS: list[Endpoint[Any, Any]] = [
    Endpoint(
        "POST",
        "/specializations/",
        add_specialization,
        summary="Add a specialization (admins)",
        tag="specializations",
        response=SpecializationOut,
        body=SpecializationCreate,
        status=201,
        errors=(401, 403, 409, 422),
    ),
    Endpoint(
        "GET",
        "/specializations/",
        list_specializations,
        summary="Every specialization",
        tag="specializations",
        response=list[SpecializationOut],
        auth=False,
    ),
    Endpoint(
        "GET",
        "/specializations/{id:int}",
        get_specialization,
        summary="One specialization",
        tag="specializations",
        response=SpecializationOut,
        auth=False,
        errors=(404,),
    ),
    Endpoint(
        "PUT",
        "/specializations/{id:int}",
        rename_specialization,
        summary="Rename a specialization (admins); its doctors keep it",
        tag="specializations",
        response=SpecializationOut,
        body=SpecializationCreate,
        errors=(401, 403, 404, 409, 422),
    ),
    Endpoint(
        "DELETE",
        "/specializations/{id:int}",
        remove_specialization,
        summary="Remove a specialization (admins); 409 in_use while a doctor has it",
        tag="specializations",
        status=204,
        errors=(401, 403, 404, 409),
    ),
]
