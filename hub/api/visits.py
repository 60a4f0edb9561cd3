from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, RootModel

from hub import visits
from hub.api.endpoint import Call, Endpoint
from hub.schemas import VisitTypeIn, VisitTypeOut
from hub.visits import MAX_TYPES, Visit


class VisitTypesIn(RootModel[Annotated[list[VisitTypeIn], Field(max_length=MAX_TYPES)]]):
    """A doctor's whole list of visit types, the first the default."""


def _out(types: list[Visit]) -> list[VisitTypeOut]:
    return [VisitTypeOut.model_validate(visit) for visit in types]


async def get_visit_types(call: Call[None]) -> list[VisitTypeOut]:
    return _out(await visits.list_types(call.hub.sessions, call.principal, call.path_int("id")))


async def put_visit_types(call: Call[VisitTypesIn]) -> list[VisitTypeOut]:
    wanted = [
        Visit(item.id, item.name, item.minutes, item.buffer_minutes, item.online)
        for item in call.body.root
    ]
    types = await visits.replace_types(call.hub.relay, call.principal, call.path_int("id"), wanted)
    return _out(types)


ENDPOINTS: list[Endpoint[Any, Any]] = [
    Endpoint(
        "GET",
        "/doctors/{id:int}/visit-types",
        get_visit_types,
        summary="A doctor's visit types, the first the default (patients see the online ones)",
        tag="availability",
        response=list[VisitTypeOut],
        auth=False,
        errors=(404,),
    ),
    Endpoint(
        "PUT",
        "/doctors/{id:int}/visit-types",
        put_visit_types,
        summary="Replace a doctor's visit types (the doctor, admins); appointments never move",
        tag="availability",
        response=list[VisitTypeOut],
        body=VisitTypesIn,
        errors=(401, 403, 404, 422),
    ),
]
