from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub import accounts
from hub.api.endpoint import Call, Endpoint, Param
from hub.auth import Role, Token, require
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
    TokenOut,
)


class DoctorFilter(BaseModel):
    model_config = ConfigDict(extra="ignore")
    specialization_id: int | None = Field(default=None, ge=1)
    specialization: str | None = Field(default=None, max_length=50)


def _token(token: Token) -> TokenOut:
    return TokenOut(access_token=token.access_token, expires_in=token.expires_in)


def _login(role: Role) -> Any:
    async def login(call: Call) -> TokenOut:
        hub, body = call.hub, call.body
        token = await accounts.login(
            hub.sessions, hub.passwords, hub.tokens, role, body.username, body.password
        )
        return _token(token)

    login.__name__ = f"{role.value}_login"
    return login


async def register_patient(call: Call) -> PatientOut:
    row = await accounts.register_patient(call.hub.sessions, call.hub.passwords, call.body)
    return PatientOut.model_validate(row)


async def list_patients(call: Call) -> list[PatientOut]:
    rows = await accounts.list_patients(call.hub.sessions, call.principal)
    return [PatientOut.model_validate(row) for row in rows]


async def me_patient(call: Call) -> PatientOut:
    caller = require(call.principal, Role.patient)
    return PatientOut.model_validate(
        await accounts.get_patient(call.hub.sessions, caller, caller.id)
    )


async def get_patient(call: Call) -> PatientOut:
    row = await accounts.get_patient(call.hub.sessions, call.principal, call.path_int("id"))
    return PatientOut.model_validate(row)


async def update_patient(call: Call) -> PatientOut:
    row = await accounts.update_patient(
        call.hub.sessions, call.hub.passwords, call.principal, call.path_int("id"), call.body
    )
    return PatientOut.model_validate(row)


def _doctor_view(call: Call, row: Doctor) -> DoctorOut | DoctorPublic:
    if accounts.sees_doctor_in_full(call.principal, row.id):
        return DoctorOut.model_validate(row)
    return DoctorPublic.model_validate(row)


async def register_doctor(call: Call) -> DoctorOut:
    row = await accounts.register_doctor(call.hub.sessions, call.hub.passwords, call.body)
    return DoctorOut.model_validate(row)


async def list_doctors(call: Call) -> list[DoctorOut | DoctorPublic]:
    where = call.query(DoctorFilter)
    rows = await accounts.list_doctors(
        call.hub.sessions, where.specialization_id, where.specialization
    )
    return [_doctor_view(call, row) for row in rows]


async def me_doctor(call: Call) -> DoctorOut:
    caller = require(call.principal, Role.doctor)
    return DoctorOut.model_validate(await accounts.get_doctor(call.hub.sessions, caller.id))


async def get_doctor(call: Call) -> DoctorOut | DoctorPublic:
    return _doctor_view(call, await accounts.get_doctor(call.hub.sessions, call.path_int("id")))


async def update_doctor(call: Call) -> DoctorOut:
    row = await accounts.update_doctor(
        call.hub.sessions, call.hub.passwords, call.principal, call.path_int("id"), call.body
    )
    return DoctorOut.model_validate(row)


LOGIN_ERRORS = (401, 422)
ENDPOINTS = [
    Endpoint(
        "POST",
        "/patients/login",
        _login(Role.patient),
        "Sign in as a patient (OAuth2 password form)",
        "patients",
        TokenOut,
        Login,
        form=True,
        auth=False,
        errors=LOGIN_ERRORS,
    ),
    Endpoint(
        "GET",
        "/patients/",
        list_patients,
        "Patients: all for admins, a doctor's own patients for a doctor",
        "patients",
        list[PatientOut],
        errors=(401, 403),
    ),
    Endpoint(
        "POST",
        "/patients/",
        register_patient,
        "Register a patient",
        "patients",
        PatientOut,
        PatientCreate,
        status=201,
        auth=False,
        errors=(409, 422),
    ),
    Endpoint(
        "GET",
        "/patients/me",
        me_patient,
        "The signed-in patient's record",
        "patients",
        PatientOut,
        errors=(401, 403),
    ),
    Endpoint(
        "GET",
        "/patients/{id:int}",
        get_patient,
        "A patient's record (self, their doctors, admins)",
        "patients",
        PatientOut,
        errors=(401, 403, 404),
    ),
    Endpoint(
        "PUT",
        "/patients/{id:int}",
        update_patient,
        "Change a patient's record (self, admins)",
        "patients",
        PatientOut,
        PatientUpdate,
        errors=(401, 403, 404, 409, 422),
    ),
    Endpoint(
        "POST",
        "/doctors/login",
        _login(Role.doctor),
        "Sign in as a doctor (OAuth2 password form)",
        "doctors",
        TokenOut,
        Login,
        form=True,
        auth=False,
        errors=LOGIN_ERRORS,
    ),
    Endpoint(
        "GET",
        "/doctors/",
        list_doctors,
        "Doctors' public profiles, optionally by specialization",
        "doctors",
        list[DoctorOut | DoctorPublic],
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
        "Register a doctor",
        "doctors",
        DoctorOut,
        DoctorCreate,
        status=201,
        auth=False,
        errors=(404, 409, 422),
    ),
    Endpoint(
        "GET",
        "/doctors/me",
        me_doctor,
        "The signed-in doctor's record",
        "doctors",
        DoctorOut,
        errors=(401, 403),
    ),
    Endpoint(
        "GET",
        "/doctors/{id:int}",
        get_doctor,
        "A doctor: public profile, or everything for that doctor and admins",
        "doctors",
        DoctorOut | DoctorPublic,
        auth=False,
        errors=(404,),
    ),
    Endpoint(
        "PUT",
        "/doctors/{id:int}",
        update_doctor,
        "Change a doctor's record (self, admins)",
        "doctors",
        DoctorOut,
        DoctorUpdate,
        errors=(401, 403, 404, 409, 422),
    ),
    Endpoint(
        "POST",
        "/admins/login",
        _login(Role.admin),
        "Sign in as an admin (OAuth2 password form)",
        "admins",
        TokenOut,
        Login,
        form=True,
        auth=False,
        errors=LOGIN_ERRORS,
    ),
]
