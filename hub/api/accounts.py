from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub import access, accounts
from hub.api.endpoint import Call, Endpoint, Param
from hub.auth import Role, require
from hub.models import Doctor
from hub.schemas import (
    DoctorCreate,
    DoctorOut,
    DoctorPublic,
    DoctorUpdate,
    Login,
    PatientCreate,
    PatientOut,
    PatientUpdate,
    PersonCreate,
    PersonUpdate,
    TokenOut,
)


class DoctorFilter(BaseModel):
    model_config = ConfigDict(extra="ignore")
    specialization_id: int | None = Field(default=None, ge=1)
    specialization: str | None = Field(default=None, max_length=50)


def _person(body: PersonCreate) -> accounts.NewPerson:
    return accounts.NewPerson(**body.model_dump(exclude={"specialization_id"}))


def _changes(body: PersonUpdate) -> accounts.PersonChanges:
    # Only what the client sent: an omitted field keeps its value, a null address clears it.
    return accounts.PersonChanges(
        **body.model_dump(exclude_unset=True, exclude={"specialization_id"})
    )


def _login(role: Role) -> Callable[[Call[Login]], Awaitable[TokenOut]]:
    async def login(call: Call[Login]) -> TokenOut:
        hub, body = call.hub, call.body
        token = await accounts.login(
            hub.sessions, hub.passwords, hub.tokens, role, body.username, body.password
        )
        return TokenOut(access_token=token.access_token, expires_in=token.expires_in)

    login.__name__ = f"{role.value}_login"
    return login


async def register_patient(call: Call[PatientCreate]) -> PatientOut:
    row = await accounts.register_patient(call.hub.sessions, call.hub.passwords, _person(call.body))
    return PatientOut.model_validate(row)


async def list_patients(call: Call[None]) -> list[PatientOut]:
    rows = await accounts.list_patients(call.hub.sessions, call.principal)
    return [PatientOut.model_validate(row) for row in rows]


async def me_patient(call: Call[None]) -> PatientOut:
    caller = require(call.principal, Role.patient)
    return PatientOut.model_validate(
        await accounts.get_patient(call.hub.sessions, caller, caller.id)
    )


async def get_patient(call: Call[None]) -> PatientOut:
    row = await accounts.get_patient(call.hub.sessions, call.principal, call.path_int("id"))
    return PatientOut.model_validate(row)


async def update_patient(call: Call[PatientUpdate]) -> PatientOut:
    row = await accounts.update_patient(
        call.hub.sessions,
        call.hub.passwords,
        call.principal,
        call.path_int("id"),
        _changes(call.body),
    )
    return PatientOut.model_validate(row)


def _doctor_view(call: Call[None], row: Doctor) -> DoctorOut | DoctorPublic:
    if access.manages_doctor(call.principal, row.id):
        return DoctorOut.model_validate(row)
    return DoctorPublic.model_validate(row)


async def register_doctor(call: Call[DoctorCreate]) -> DoctorOut:
    body = call.body
    row = await accounts.register_doctor(
        call.hub.sessions, call.hub.passwords, _person(body), body.specialization_id
    )
    return DoctorOut.model_validate(row)


async def list_doctors(call: Call[None]) -> list[DoctorOut | DoctorPublic]:
    where = call.query(DoctorFilter)
    rows = await accounts.list_doctors(
        call.hub.sessions, where.specialization_id, where.specialization
    )
    return [_doctor_view(call, row) for row in rows]


async def me_doctor(call: Call[None]) -> DoctorOut:
    caller = require(call.principal, Role.doctor)
    return DoctorOut.model_validate(await accounts.get_doctor(call.hub.sessions, caller.id))


async def get_doctor(call: Call[None]) -> DoctorOut | DoctorPublic:
    return _doctor_view(call, await accounts.get_doctor(call.hub.sessions, call.path_int("id")))


async def update_doctor(call: Call[DoctorUpdate]) -> DoctorOut:
    body = call.body
    row = await accounts.update_doctor(
        call.hub.sessions,
        call.hub.passwords,
        call.principal,
        call.path_int("id"),
        _changes(body),
        body.specialization_id,
    )
    return DoctorOut.model_validate(row)


def _login_endpoint(role: Role) -> Endpoint[Login, TokenOut]:
    return Endpoint(
        "POST",
        f"/{role.value}s/login",
        _login(role),
        summary=f"Sign in as {'an' if role is Role.admin else 'a'} {role.value} "
        "(OAuth2 password form)",
        tag=f"{role.value}s",
        response=TokenOut,
        body=Login,
        form=True,
        auth=False,
        errors=(401, 422),
    )


ENDPOINTS: list[Endpoint[Any, Any]] = [
    _login_endpoint(Role.patient),
    Endpoint(
        "GET",
        "/patients/",
        list_patients,
        summary="Patients: all for admins, a doctor's own patients for a doctor",
        tag="patients",
        response=list[PatientOut],
        errors=(401, 403),
    ),
    Endpoint(
        "POST",
        "/patients/",
        register_patient,
        summary="Register a patient",
        tag="patients",
        response=PatientOut,
        body=PatientCreate,
        status=201,
        auth=False,
        errors=(409, 422),
    ),
    Endpoint(
        "GET",
        "/patients/me",
        me_patient,
        summary="The signed-in patient's record",
        tag="patients",
        response=PatientOut,
        errors=(401, 403),
    ),
    Endpoint(
        "GET",
        "/patients/{id:int}",
        get_patient,
        summary="A patient's record (self, their doctors, admins)",
        tag="patients",
        response=PatientOut,
        errors=(401, 403, 404),
    ),
    Endpoint(
        "PUT",
        "/patients/{id:int}",
        update_patient,
        summary="Change a patient's record (self, admins)",
        tag="patients",
        response=PatientOut,
        body=PatientUpdate,
        errors=(401, 403, 404, 409, 422),
    ),
    _login_endpoint(Role.doctor),
    Endpoint(
        "GET",
        "/doctors/",
        list_doctors,
        summary="Doctors' public profiles, optionally by specialization",
        tag="doctors",
        response=list[DoctorOut | DoctorPublic],
        auth=False,
        errors=(422,),
        query=(
            Param(
                "specialization_id", {"type": "integer", "minimum": 1}, "Only this specialization"
            ),
            Param(
                "specialization",
                {"type": "string", "maxLength": 50},
                "Only this specialization, by name",
            ),
        ),
    ),
    Endpoint(
        "POST",
        "/doctors/",
        register_doctor,
        summary="Register a doctor",
        tag="doctors",
        response=DoctorOut,
        body=DoctorCreate,
        status=201,
        auth=False,
        errors=(404, 409, 422),
    ),
    Endpoint(
        "GET",
        "/doctors/me",
        me_doctor,
        summary="The signed-in doctor's record",
        tag="doctors",
        response=DoctorOut,
        errors=(401, 403),
    ),
    Endpoint(
        "GET",
        "/doctors/{id:int}",
        get_doctor,
        summary="A doctor: public profile, or everything for that doctor and admins",
        tag="doctors",
        response=DoctorOut | DoctorPublic,
        auth=False,
        errors=(404,),
    ),
    Endpoint(
        "PUT",
        "/doctors/{id:int}",
        update_doctor,
        summary="Change a doctor's record (self, admins)",
        tag="doctors",
        response=DoctorOut,
        body=DoctorUpdate,
        errors=(401, 403, 404, 409, 422),
    ),
    _login_endpoint(Role.admin),
]
