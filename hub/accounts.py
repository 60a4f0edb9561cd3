from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth import Passwords, Principal, Role, Token, Tokens, require
from hub.availability import Availability
from hub.db import SessionFactory
from hub.errors import EmailTaken, Forbidden, InvalidCredentials, NotFound
from hub.models import Admin, Appointment, Doctor, Patient, Schedule, Specialization
from hub.schedules import row_fields
from hub.schemas import DoctorCreate, PatientCreate, PersonUpdate

Account = TypeVar("Account", Patient, Doctor)
Row = TypeVar("Row", Patient, Doctor, Admin)
TABLES: dict[Role, type[Patient] | type[Doctor] | type[Admin]] = {
    Role.patient: Patient,
    Role.doctor: Doctor,
    Role.admin: Admin,
}


async def login(
    sessions: SessionFactory,
    passwords: Passwords,
    tokens: Tokens,
    role: Role,
    email: str,
    password: str,
) -> Token:
    """A token for the account of `role` with this email and password.
    An unknown email and a wrong password get the same answer, after the same work."""
    table = TABLES[role]
    async with sessions() as session:
        account: Patient | Doctor | Admin | None = await session.scalar(
            select(table).where(table.email == email.lower())
        )
    if account is None:
        passwords.verify_missing(password)
    elif passwords.verify(account.password_hash, password):
        return tokens.issue(Principal(role, account.id))
    raise InvalidCredentials("wrong email or password")


async def register_patient(
    sessions: SessionFactory, passwords: Passwords, data: PatientCreate
) -> Patient:
    """A new patient account."""
    patient = Patient(**_fields(data, passwords))
    return await _insert(sessions, patient)


async def register_doctor(
    sessions: SessionFactory, passwords: Passwords, data: DoctorCreate
) -> Doctor:
    """A new doctor account in an existing specialization."""
    async with sessions() as session:
        await _specialization(session, data.specialization_id)
    doctor = Doctor(**_fields(data, passwords))
    try:
        async with sessions.begin() as session:
            session.add(doctor)
            await session.flush()
            session.add(Schedule(doctor_id=doctor.id, **row_fields(Availability())))
    except IntegrityError as exc:
        raise EmailTaken("an account with this email already exists") from exc
    return await get_doctor(sessions, doctor.id)


async def create_admin(
    sessions: SessionFactory, passwords: Passwords, email: str, pw: str
) -> Admin:
    """A new admin account (the CLI's `create-admin`)."""
    return await _insert(sessions, Admin(email=email.lower(), password_hash=passwords.hash(pw)))


async def get_patient(sessions: SessionFactory, principal: Principal | None, pid: int) -> Patient:
    """A patient record: for that patient, admins, and doctors they have appointments with."""
    caller = require(principal)
    async with sessions() as session:
        if not (
            caller.role is Role.admin
            or caller.is_(Role.patient, pid)
            or (caller.role is Role.doctor and await _treats(session, caller.id, pid))
        ):
            raise Forbidden("you may not read this patient's record")
        patient = await session.get(Patient, pid)
    if patient is None:
        raise NotFound(f"patient {pid} not found")
    return patient


async def list_patients(sessions: SessionFactory, principal: Principal | None) -> Sequence[Patient]:
    """All patients for admins; a doctor's own patients for a doctor."""
    caller = require(principal, Role.admin, Role.doctor)
    query = select(Patient).order_by(Patient.id)
    if caller.role is Role.doctor:
        query = query.where(
            exists().where(Appointment.patient_id == Patient.id, Appointment.doctor_id == caller.id)
        )
    async with sessions() as session:
        return (await session.scalars(query)).all()


async def update_patient(
    sessions: SessionFactory,
    passwords: Passwords,
    principal: Principal | None,
    pid: int,
    data: PersonUpdate,
) -> Patient:
    """Change a patient's record: that patient or an admin."""
    caller = require(principal)
    if not (caller.role is Role.admin or caller.is_(Role.patient, pid)):
        raise Forbidden("you may not change this patient's record")
    return await _update(sessions, passwords, Patient, pid, data)


async def get_doctor(sessions: SessionFactory, did: int) -> Doctor:
    """A doctor; which fields a caller may see is `sees_doctor_in_full`."""
    async with sessions() as session:
        doctor = await session.get(Doctor, did)
    if doctor is None:
        raise NotFound(f"doctor {did} not found")
    return doctor


def sees_doctor_in_full(principal: Principal | None, did: int) -> bool:
    """Anyone sees a doctor's public profile; the doctor and admins see everything."""
    return principal is not None and (
        principal.role is Role.admin or principal.is_(Role.doctor, did)
    )


async def list_doctors(
    sessions: SessionFactory,
    specialization_id: int | None = None,
    specialization: str | None = None,
) -> Sequence[Doctor]:
    """Doctors, optionally of one specialization (by id or by name)."""
    query = select(Doctor).order_by(Doctor.id)
    if specialization_id is not None:
        query = query.where(Doctor.specialization_id == specialization_id)
    if specialization is not None:
        same = func.lower(Specialization.name) == specialization.lower()
        query = query.join(Doctor.specialization).where(same)
    async with sessions() as session:
        return (await session.scalars(query)).unique().all()


async def update_doctor(
    sessions: SessionFactory,
    passwords: Passwords,
    principal: Principal | None,
    did: int,
    data: PersonUpdate,
) -> Doctor:
    """Change a doctor's record: that doctor or an admin."""
    caller = require(principal)
    if not (caller.role is Role.admin or caller.is_(Role.doctor, did)):
        raise Forbidden("you may not change this doctor's record")
    await _update(sessions, passwords, Doctor, did, data)
    return await get_doctor(sessions, did)


async def _treats(session: AsyncSession, doctor_id: int, patient_id: int) -> bool:
    query = select(
        exists().where(Appointment.doctor_id == doctor_id, Appointment.patient_id == patient_id)
    )
    return bool(await session.scalar(query))


async def _specialization(session: AsyncSession, sid: int) -> Specialization:
    found = await session.get(Specialization, sid)
    if found is None:
        raise NotFound(f"specialization {sid} not found")
    return found


def _fields(
    data: PersonUpdate | PatientCreate | DoctorCreate, passwords: Passwords
) -> dict[str, Any]:
    fields = data.model_dump(exclude_unset=True)
    if "email" in fields:
        fields["email"] = fields["email"].lower()
    if "password" in fields:
        fields["password_hash"] = passwords.hash(fields.pop("password"))
    return fields


async def _insert(sessions: SessionFactory, row: Row) -> Row:
    try:
        async with sessions.begin() as session:
            session.add(row)
    except IntegrityError as exc:
        raise EmailTaken("an account with this email already exists") from exc
    return row


async def _update(
    sessions: SessionFactory,
    passwords: Passwords,
    table: type[Account],
    row_id: int,
    data: PersonUpdate,
) -> Account:
    fields = _fields(data, passwords)
    try:
        async with sessions.begin() as session:
            row = await session.get(table, row_id, with_for_update=True)
            if row is None:
                raise NotFound(f"{table.__tablename__[:-1]} {row_id} not found")
            if "specialization_id" in fields:
                await _specialization(session, fields["specialization_id"])
            for name, value in fields.items():
                setattr(row, name, value)
    except IntegrityError as exc:
        raise EmailTaken("an account with this email already exists") from exc
    return row
