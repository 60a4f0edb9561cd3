from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub import access, accounts, privacy
from hub.api import signin
from hub.api.addresses import verifying
from hub.api.endpoint import MAX_ID, Call, Endpoint, Param
from hub.auth import Principal, Role, require
from hub.models import Doctor, Patient
from hub.schemas import (
    Approval,
    AuditOut,
    DeskRegistration,
    DoctorChanged,
    DoctorCreate,
    DoctorOut,
    DoctorPublic,
    DoctorUpdate,
    Erasure,
    ExportedAppointment,
    ExportedWait,
    HistoryOut,
    Login,
    PatientChanged,
    PatientContact,
    PatientCreate,
    PatientExport,
    PatientOut,
    PatientUpdate,
    PersonUpdate,
    StaffCreate,
    StaffOut,
    Standing,
    TokenOut,
)


class DoctorFilter(BaseModel):
    model_config = ConfigDict(extra="ignore")
    specialization_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    specialization: str | None = Field(default=None, max_length=50)


def _person(body: DeskRegistration) -> accounts.NewPerson:
    fields = body.model_dump(exclude={"specialization_id"})
    fields.setdefault("password", secrets.token_urlsafe(32))  # at the desk: nobody knows it
    return accounts.NewPerson(**fields)


def _patient_view(call: Call[Any], row: Patient) -> PatientOut | PatientContact:
    # The front desk sees what scheduling needs; the patient, their doctors and admins all.
    if access.is_staff(call.principal):
        return PatientContact.model_validate(row)
    return PatientOut.model_validate(row)


async def register_at_desk(call: Call[DeskRegistration]) -> PatientContact:
    person = _person(call.body)
    row = await accounts.register_at_desk(
        call.hub.sessions, call.hub.passwords, call.principal, person, verify=verifying(call)
    )
    return PatientContact.model_validate(row)


async def create_staff(call: Call[StaffCreate]) -> StaffOut:
    body = call.body
    row = await accounts.add_staff(
        call.hub.sessions,
        call.hub.passwords,
        call.principal,
        body.email,
        body.password,
        (body.first_name, body.last_name),
    )
    return StaffOut.model_validate(row)


async def list_staff(call: Call[None]) -> list[StaffOut]:
    rows = await accounts.list_staff(call.hub.sessions, call.principal)
    return [StaffOut.model_validate(row) for row in rows]


async def me_staff(call: Call[None]) -> StaffOut:
    return StaffOut.model_validate(await accounts.get_staff(call.hub.sessions, call.principal))


def _changes(body: PersonUpdate) -> accounts.PersonChanges:
    # Only what the client sent: an omitted field keeps its value, a null address clears it.
    return accounts.PersonChanges(
        **body.model_dump(exclude_unset=True, exclude={"specialization_id"})
    )


def _login(role: Role) -> Callable[[Call[Login]], Awaitable[TokenOut]]:
    async def login(call: Call[Login]) -> TokenOut:
        hub, body = call.hub, call.body
        async with hub.throttle.login(role.value, body.username, call.address):
            token = await accounts.login(
                hub.sessions, hub.passwords, hub.tokens, role, body.username, body.password
            )
        principal, _expires = hub.tokens.decode(token.access_token)
        await signin.start(call, principal)  # the refresh cookie: the sign-in outlives the hour
        return TokenOut(access_token=token.access_token, expires_in=token.expires_in)

    login.__name__ = f"{role.value}_login"
    return login


async def register_patient(call: Call[PatientCreate]) -> PatientOut:
    await call.hub.throttle.register(call.address)
    hub = call.hub
    person = _person(call.body)
    row = await accounts.register_patient(
        hub.sessions, hub.passwords, person, verify=verifying(call)
    )
    return PatientOut.model_validate(row)


class PatientSearch(BaseModel):
    model_config = ConfigDict(extra="ignore")
    q: str | None = Field(default=None, max_length=100)


async def list_patients(call: Call[None]) -> list[PatientOut | PatientContact]:
    search = call.query(PatientSearch).q
    rows = await accounts.list_patients(call.hub.sessions, call.principal, search)
    return [_patient_view(call, row) for row in rows]


async def me_patient(call: Call[None]) -> PatientOut:
    caller = require(call.principal, Role.patient)
    return PatientOut.model_validate(
        await accounts.get_patient(call.hub.sessions, caller, caller.id)
    )


async def get_patient(call: Call[None]) -> PatientOut | PatientContact:
    row = await accounts.get_patient(call.hub.sessions, call.principal, call.path_int("id"))
    return _patient_view(call, row)


async def update_patient(call: Call[PatientUpdate]) -> PatientChanged:
    row = await accounts.update_patient(
        call.hub.sessions,
        call.hub.passwords,
        call.principal,
        call.path_int("id"),
        _changes(call.body),
        verify=verifying(call),
    )
    out = PatientOut.model_validate(row).model_dump()
    return PatientChanged(
        **out, access_token=await _renewed(call, Role.patient, row.id, row.session_epoch)
    )


async def _renewed(call: Call[Any], role: Role, account_id: int, epoch: int) -> str | None:
    # The change ended the account's sessions: its owner, who made it, gets a new token (and
    # a new sign-in in this browser).
    call.hub.standings.forget(role, account_id)
    caller = call.principal
    if caller is None or not caller.is_(role, account_id) or epoch <= caller.epoch:
        return None
    renewed = Principal(role, account_id, epoch)
    await signin.start(call, renewed)
    return call.hub.tokens.issue(renewed).access_token


def _sign_out(role: Role) -> Callable[[Call[None]], Awaitable[None]]:
    async def sign_out_everywhere(call: Call[None]) -> None:
        caller = require(call.principal, role)
        await accounts.end_sessions(call.hub.sessions, caller)
        call.hub.standings.forget(caller.role, caller.id)

    sign_out_everywhere.__name__ = f"sign_out_{role.value}_everywhere"
    return sign_out_everywhere


def _set_active(role: Role) -> Callable[[Call[Standing]], Awaitable[None]]:
    async def set_active(call: Call[Standing]) -> None:
        account_id = call.path_int("id")
        await accounts.set_standing(
            call.hub.sessions, call.principal, role, account_id, active=call.body.active
        )
        call.hub.standings.forget(role, account_id)

    set_active.__name__ = f"set_{role.value}_active"  # its OpenAPI operationId
    return set_active


async def approve_doctor(call: Call[Approval]) -> DoctorOut:
    did = call.path_int("id")
    await accounts.set_standing(
        call.hub.sessions, call.principal, Role.doctor, did, approved=call.body.approved
    )
    call.hub.standings.forget(Role.doctor, did)
    return DoctorOut.model_validate(
        await accounts.get_doctor(call.hub.sessions, did, call.principal)
    )


async def export_patient(call: Call[None]) -> PatientExport:
    await call.hub.audit.flush()  # what this process noted so far is in the export
    found = await privacy.export(call.hub.sessions, call.principal, call.path_int("id"))
    appointments = [
        ExportedAppointment(
            id=row.id,
            doctor_id=row.doctor_id,
            scheduled_datetime=row.start_at,
            end_datetime=row.end_at,
            status=row.status,
            cancel_reason=row.cancel_reason,
            late_cancel=row.late_cancel,
            rescheduled_from_id=row.rescheduled_from_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
            history=[HistoryOut.model_validate(event) for event in events],
        )
        for row, events in found.appointments
    ]
    return PatientExport(
        exported_at=call.hub.clock(),
        patient=PatientOut.model_validate(found.patient),
        appointments=appointments,
        audit=[AuditOut.model_validate(row) for row in found.audit],
        waitlist=[ExportedWait.model_validate(row) for row in found.waitlist],
    )


async def erase_patient(call: Call[Erasure]) -> None:
    pid = call.path_int("id")
    await privacy.erase(
        call.hub.sessions,
        call.hub.passwords,
        call.principal,
        pid,
        call.body.current_password,
        call.hub.clock,
    )
    call.hub.standings.forget(Role.patient, pid)


def _doctor_view(call: Call[None], row: Doctor) -> DoctorOut | DoctorPublic:
    if access.manages_doctor(call.principal, row.id):
        return DoctorOut.model_validate(row)
    return DoctorPublic.model_validate(row)


async def register_doctor(call: Call[DoctorCreate]) -> DoctorOut:
    await call.hub.throttle.register(call.address)
    body = call.body
    row = await accounts.register_doctor(
        call.hub.sessions,
        call.hub.passwords,
        _person(body),
        body.specialization_id,
        approved=not call.hub.settings.approve_doctors,
    )
    return DoctorOut.model_validate(row)


async def list_doctors(call: Call[None]) -> list[DoctorOut | DoctorPublic]:
    where = call.query(DoctorFilter)
    rows = await accounts.list_doctors(
        call.hub.sessions, call.principal, where.specialization_id, where.specialization
    )
    return [_doctor_view(call, row) for row in rows]


async def me_doctor(call: Call[None]) -> DoctorOut:
    caller = require(call.principal, Role.doctor)
    row = await accounts.get_doctor(call.hub.sessions, caller.id, caller)
    return DoctorOut.model_validate(row)


async def get_doctor(call: Call[None]) -> DoctorOut | DoctorPublic:
    row = await accounts.get_doctor(call.hub.sessions, call.path_int("id"), call.principal)
    return _doctor_view(call, row)


async def update_doctor(call: Call[DoctorUpdate]) -> DoctorChanged:
    body = call.body
    row = await accounts.update_doctor(
        call.hub.sessions,
        call.hub.passwords,
        call.principal,
        call.path_int("id"),
        _changes(body),
        body.specialization_id,
    )
    out = DoctorOut.model_validate(row).model_dump()
    renewed = await _renewed(call, Role.doctor, row.id, row.session_epoch)
    return DoctorChanged(**out, access_token=renewed)


def _login_endpoint(role: Role) -> Endpoint[Login, TokenOut]:
    return Endpoint(
        "POST",
        f"{role.path}/login",
        _login(role),
        summary=f"Sign in as {'an' if role is Role.admin else 'a'} {role.value} "
        "(OAuth2 password form)",
        tag=role.path[1:],
        response=TokenOut,
        body=Login,
        form=True,
        auth=False,
        errors=(401, 422, 429, 503),
    )


ENDPOINTS: list[Endpoint[Any, Any]] = [
    _login_endpoint(Role.patient),
    Endpoint(
        "GET",
        "/patients/",
        list_patients,
        audit=("patients.list", "patients"),
        summary="Patients: all for admins, a doctor's own patients for a doctor; the front "
        "desk searches (`q`: name, email, phone or date of birth) and sees their contact",
        tag="patients",
        response=list[PatientOut | PatientContact],
        errors=(401, 403, 422),
        query=(Param("q", {"type": "string", "maxLength": 100}, "words to look for"),),
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
        errors=(409, 422, 429),
    ),
    Endpoint(
        "GET",
        "/patients/me",
        me_patient,
        audit=("patient.read", "patient:self"),
        summary="The signed-in patient's record",
        tag="patients",
        response=PatientOut,
        errors=(401, 403),
    ),
    Endpoint(
        "GET",
        "/patients/{id:int}",
        get_patient,
        audit=("patient.read", "patient:{id}"),
        summary="A patient's record (self, their doctors, admins; the front desk sees their "
        "contact)",
        tag="patients",
        response=PatientOut | PatientContact,
        errors=(401, 403, 404),
    ),
    Endpoint(
        "PUT",
        "/patients/{id:int}",
        update_patient,
        audit=("patient.update", "patient:{id}"),
        summary="Change a patient's record (self, admins); your own email or password needs "
        "`current_password` and ends your other sessions",
        tag="patients",
        response=PatientChanged,
        body=PatientUpdate,
        errors=(401, 403, 404, 409, 422),
    ),
    Endpoint(
        "GET",
        "/patients/{id:int}/export",
        export_patient,
        audit=("patient.export", "patient:{id}"),
        summary="Everything the hub holds about a patient, as JSON (self, admins)",
        tag="patients",
        response=PatientExport,
        errors=(401, 403, 404),
    ),
    Endpoint(
        "DELETE",
        "/patients/{id:int}",
        erase_patient,
        audit=("patient.erase", "patient:{id}"),
        summary="Erase a patient's account: anonymised, the doctors' records of past visits "
        "kept (self with `current_password`, admins); 409 while an appointment is upcoming",
        tag="patients",
        body=Erasure,
        status=204,
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
                "specialization_id",
                {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                "Only this specialization",
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
        errors=(404, 409, 422, 429),
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
        summary="Change a doctor's record (self, admins); your own email or password needs "
        "`current_password` and ends your other sessions",
        tag="doctors",
        response=DoctorChanged,
        body=DoctorUpdate,
        errors=(401, 403, 404, 409, 422),
    ),
    _login_endpoint(Role.admin),
    _login_endpoint(Role.staff),
    Endpoint(
        "POST",
        "/staff/",
        create_staff,
        summary="Create a front-desk account (admins)",
        tag="staff",
        response=StaffOut,
        body=StaffCreate,
        status=201,
        errors=(401, 403, 409, 422),
    ),
    Endpoint(
        "GET",
        "/staff/",
        list_staff,
        summary="Every front-desk account (admins)",
        tag="staff",
        response=list[StaffOut],
        errors=(401, 403),
    ),
    Endpoint(
        "GET",
        "/staff/me",
        me_staff,
        summary="The signed-in front-desk account",
        tag="staff",
        response=StaffOut,
        errors=(401, 403),
    ),
    Endpoint(
        "POST",
        "/staff/patients",
        register_at_desk,
        audit=("patient.register", "patients"),
        summary="Register a patient who calls or walks in (front desk, admins): no password; "
        "the patient sets one later",
        tag="staff",
        response=PatientContact,
        body=DeskRegistration,
        status=201,
        errors=(401, 403, 409, 422),
    ),
    Endpoint(
        "PUT",
        "/doctors/{id:int}/approval",
        approve_doctor,
        summary="Approve a doctor, who is then listed and bookable (admins)",
        tag="doctors",
        response=DoctorOut,
        body=Approval,
        errors=(401, 403, 404, 422),
    ),
    *(
        Endpoint(
            "PUT",
            f"{role.path}/{{id:int}}/active",
            _set_active(role),
            summary=f"Deactivate (ending its sessions) or reactivate a {role.value} (admins)",
            tag=role.path[1:],
            body=Standing,
            status=204,
            errors=(401, 403, 404, 422),
        )
        for role in Role
    ),
    *(
        Endpoint(
            "POST",
            f"{role.path}/me/sign-out",
            _sign_out(role),
            summary="Sign out everywhere: every session of this account ends, this one too",
            tag=role.path[1:],
            status=204,
            errors=(401, 403),
        )
        for role in Role
    ),
]
