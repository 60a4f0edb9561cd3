from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import date
from typing import TypeVar

from sqlalchemy import ColumnElement, Exists, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from hub import access, catalog, notices
from hub.addresses import Verify
from hub.auth import Passwords, Principal, Role, Token, Tokens, require
from hub.constraints import duplicates, lacks_parent
from hub.db import SessionFactory
from hub.errors import EmailTaken, Forbidden, InvalidCredentials, InvalidInput, NotFound
from hub.models import Admin, Appointment, Doctor, Gender, Patient, Specialization, Staff
from hub.schedules import new_schedule

Account = TypeVar("Account", Patient, Doctor)
Row = TypeVar("Row", Patient, Doctor, Admin, Staff)
TABLES: dict[Role, type[Patient] | type[Doctor] | type[Admin] | type[Staff]] = {
    Role.patient: Patient,
    Role.doctor: Doctor,
    Role.admin: Admin,
    Role.staff: Staff,
}
ROLES = {table: role for role, table in TABLES.items()}


@dataclass(frozen=True, slots=True)
class NewPerson:
    """What registering a patient or a doctor takes."""

    email: str
    password: str
    first_name: str
    last_name: str
    date_of_birth: date
    gender: Gender
    phone: str
    address: str | None = None
    timezone: str | None = None  # the zone their messages are written in (None: the doctor's)


class Keep(enum.Enum):
    """What a PersonChanges field holds when it is not to change."""

    keep = "keep"


KEEP = Keep.keep


@dataclass(frozen=True, slots=True)
class PersonChanges:
    """What to change in a patient's or a doctor's record: a field left at KEEP keeps its
    value; `address=None` clears the address."""

    first_name: str | Keep = KEEP
    last_name: str | Keep = KEEP
    date_of_birth: date | Keep = KEEP
    gender: Gender | Keep = KEEP
    email: str | Keep = KEEP
    phone: str | Keep = KEEP
    address: str | Keep | None = KEEP
    timezone: str | Keep | None = KEEP
    password: str | Keep = KEEP
    current_password: str | Keep = KEEP  # the owner's, to change their email or password


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
    # The connection is back in the pool before argon2 starts.
    if account is None:
        await passwords.verify_missing(password)
    elif await passwords.verify(account.password_hash, password):
        if not account.active:
            raise Forbidden("this account is deactivated")
        return tokens.issue(Principal(role, account.id, account.session_epoch))
    raise InvalidCredentials("wrong email or password")


async def register_patient(
    sessions: SessionFactory,
    passwords: Passwords,
    person: NewPerson,
    *,
    verify: Verify | None = None,
) -> Patient:
    """A new patient account; given `verify`, a link verifying their email address is sent
    (written in the registration's transaction)."""
    row = Patient(**await _columns(person, passwords))
    with _refusals(row.__tablename__):
        async with sessions.begin() as session:
            session.add(row)
            if verify is not None:
                await session.flush()
                await notices.write(session, [verify.notice(Role.patient, row.id, row.email)])
    return row


async def register_doctor(
    sessions: SessionFactory,
    passwords: Passwords,
    person: NewPerson,
    specialization_id: int,
    *,
    approved: bool,
) -> Doctor:
    """A new doctor account in an existing specialization: pending until an admin approves
    it, unless the clinic lets doctors register openly (`approved`)."""
    columns = await _columns(person, passwords)
    doctor = Doctor(specialization_id=specialization_id, approved=approved, **columns)
    with _refusals(Doctor.__tablename__, specialization_id):
        async with sessions.begin() as session:
            await catalog.specialization(session, specialization_id)
            session.add(doctor)
            await session.flush()
            session.add(new_schedule(doctor.id))
    return await _doctor(sessions, doctor.id)


async def create_admin(
    sessions: SessionFactory, passwords: Passwords, email: str, password: str
) -> Admin:
    """A new admin account (the CLI's `create-admin`)."""
    admin = Admin(email=email.lower(), password_hash=await passwords.hash(password))
    return await _insert(sessions, admin)


async def register_at_desk(
    sessions: SessionFactory,
    passwords: Passwords,
    principal: Principal | None,
    person: NewPerson,
    *,
    verify: Verify | None = None,
) -> Patient:
    """A patient the front desk (or an admin) registers: with a password nobody knows, until
    the patient sets their own."""
    require(principal, Role.staff, Role.admin)
    return await register_patient(sessions, passwords, person, verify=verify)


async def add_staff(
    sessions: SessionFactory,
    passwords: Passwords,
    principal: Principal | None,
    email: str,
    password: str,
    names: tuple[str, str],
) -> Staff:
    """A new front-desk account, by an admin."""
    require(principal, Role.admin)
    return await create_staff(sessions, passwords, email, password, names)


async def create_staff(
    sessions: SessionFactory,
    passwords: Passwords,
    email: str,
    password: str,
    names: tuple[str, str],
) -> Staff:
    """A new front-desk account (the CLI's `create-staff`, which needs no admin)."""
    first, last = names
    hashed = await passwords.hash(password)
    row = Staff(email=email.lower(), password_hash=hashed, first_name=first, last_name=last)
    return await _insert(sessions, row)


async def list_staff(sessions: SessionFactory, principal: Principal | None) -> Sequence[Staff]:
    """Every front-desk account: for admins."""
    require(principal, Role.admin)
    async with sessions() as session:
        return (await session.scalars(select(Staff).order_by(Staff.id))).all()


async def get_staff(sessions: SessionFactory, principal: Principal | None) -> Staff:
    """The signed-in front-desk account."""
    caller = require(principal, Role.staff)
    async with sessions() as session:
        row = await session.get(Staff, caller.id)
    if row is None:
        raise NotFound(f"staff {caller.id} not found")
    return row


async def get_patient(sessions: SessionFactory, principal: Principal | None, pid: int) -> Patient:
    """A patient record: for that patient, admins, the front desk (the edge shows it what
    scheduling needs), and doctors they have appointments with."""
    caller = require(principal)
    async with sessions() as session:
        access.ensure(
            access.manages_patient(caller, pid)
            or access.is_staff(caller)
            or (access.is_doctor(caller) and await _treats(session, caller.id, pid)),
            "you may not read this patient's record",
        )
        patient = await session.get(Patient, pid)
    if patient is None:
        raise NotFound(f"patient {pid} not found")
    return patient


async def list_patients(
    sessions: SessionFactory, principal: Principal | None, search: str | None = None
) -> Sequence[Patient]:
    """All patients for admins; a doctor's own patients for a doctor; for the front desk, at
    most 50 whose name, email, phone or date of birth (YYYY-MM-DD) matches `search` (words
    in any order; each at least 2 characters). Admins may search too."""
    caller = require(principal, Role.admin, Role.doctor, Role.staff)
    query = select(Patient).where(Patient.active.is_(True)).order_by(Patient.id)
    if caller.role is Role.staff and not search:
        raise InvalidInput(
            "search by name, email, phone or date of birth",
            [{"field": "q", "message": "what to look for, at least 2 characters"}],
        )
    if search:
        query = query.where(*_matching(search)).limit(SEARCH_LIMIT)
    if caller.role is Role.doctor:  # their own patients, once approved
        if not access.is_doctor(caller):
            return []
        query = query.where(_treated_by(caller.id))
    async with sessions() as session:
        return (await session.scalars(query)).all()


async def update_patient(
    sessions: SessionFactory,
    passwords: Passwords,
    principal: Principal | None,
    pid: int,
    changes: PersonChanges,
    *,
    verify: Verify | None = None,
) -> Patient:
    """Change a patient's record: that patient or an admin. A new email address is not
    verified; given `verify`, a link verifying it is sent."""
    allowed = access.manages_patient(require(principal), pid)
    access.ensure(allowed, "you may not change this patient's record")
    caller = require(principal)
    return await _update(sessions, passwords, caller, Patient, pid, changes, verify=verify)


async def get_doctor(sessions: SessionFactory, did: int, caller: Principal | None) -> Doctor:
    """A doctor; `access.manages_doctor` says who may see more than the public profile, and
    who may see a doctor not yet approved or deactivated (nobody else does)."""
    doctor = await _doctor(sessions, did)
    if not ((doctor.approved and doctor.active) or access.manages_doctor(caller, did)):
        raise NotFound(f"doctor {did} not found")
    return doctor


async def _doctor(sessions: SessionFactory, did: int) -> Doctor:
    async with sessions() as session:
        doctor = await session.get(Doctor, did, options=[joinedload(Doctor.specialization)])
    if doctor is None:
        raise NotFound(f"doctor {did} not found")
    return doctor


async def list_doctors(
    sessions: SessionFactory,
    caller: Principal | None,
    specialization_id: int | None = None,
    specialization: str | None = None,
) -> Sequence[Doctor]:
    """Doctors, optionally of one specialization (by id or by name): those approved and
    active, and for admins every one."""
    query = select(Doctor).options(joinedload(Doctor.specialization)).order_by(Doctor.id)
    if not access.is_admin(caller):
        query = query.where(Doctor.approved.is_(True), Doctor.active.is_(True))
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
    changes: PersonChanges,
    specialization_id: int | None = None,
) -> Doctor:
    """Change a doctor's record (and, given `specialization_id`, their specialization):
    that doctor or an admin."""
    allowed = access.manages_doctor(require(principal), did)
    access.ensure(allowed, "you may not change this doctor's record")
    caller = require(principal)
    await _update(sessions, passwords, caller, Doctor, did, changes, specialization_id)
    return await _doctor(sessions, did)


async def set_standing(
    sessions: SessionFactory,
    principal: Principal | None,
    role: Role,
    account_id: int,
    *,
    active: bool | None = None,
    approved: bool | None = None,
) -> None:
    """An admin deactivates or reactivates an account (deactivating ends its sessions), or
    approves a doctor (or takes the approval back)."""
    require(principal, Role.admin)
    async with sessions.begin() as session:
        row = await _locked_account(session, role, account_id)
        if active is not None:
            if not active:
                row.session_epoch += 1
            row.active = active
        if approved is not None:
            assert isinstance(row, Doctor)
            row.approved = approved


async def end_sessions(sessions: SessionFactory, principal: Principal | None) -> None:
    """Sign out everywhere: every session of the caller's account ends, this one too."""
    caller = require(principal)
    async with sessions.begin() as session:
        row = await _locked_account(session, caller.role, caller.id)
        row.session_epoch += 1


async def _locked_account(
    session: AsyncSession, role: Role, account_id: int
) -> Patient | Doctor | Admin | Staff:
    row: Patient | Doctor | Admin | Staff | None = await session.get(
        TABLES[role], account_id, with_for_update=True
    )
    if row is None:
        raise NotFound(f"{role} {account_id} not found")
    return row


SEARCH_LIMIT = 50


def _matching(search: str) -> list[ColumnElement[bool]]:
    words = [w for w in search.split() if len(w) >= 2][:5]
    if not words:
        raise InvalidInput(
            "search with at least 2 characters",
            [{"field": "q", "message": "at least 2 characters"}],
        )
    conditions = []
    for word in words:
        like = f"%{word.lower().replace('%', '').replace('_', '')}%"
        digits = "".join(ch for ch in word if ch.isdigit())
        either: list[ColumnElement[bool]] = [
            func.lower(Patient.first_name).like(like),
            func.lower(Patient.last_name).like(like),
            func.lower(Patient.email).like(like),
        ]
        if len(digits) >= 4:
            either.append(func.replace(Patient.phone, " ", "").like(f"%{digits}%"))
        with contextlib.suppress(ValueError):
            either.append(Patient.date_of_birth == date.fromisoformat(word))
        conditions.append(or_(*either))
    return conditions


def _treated_by(doctor_id: int) -> Exists:
    # Through an appointment that was not cancelled: a cancellation ends the doctor's access.
    return exists().where(
        Appointment.patient_id == Patient.id,
        Appointment.doctor_id == doctor_id,
        Appointment.active.is_not(None),
    )


async def _treats(session: AsyncSession, doctor_id: int, patient_id: int) -> bool:
    query = select(_treated_by(doctor_id)).where(Patient.id == patient_id)
    return bool(await session.scalar(query))


async def _columns(person: NewPerson | PersonChanges, passwords: Passwords) -> dict[str, object]:
    # Hashed before any transaction opens: no connection waits on argon2.
    given = {field.name: getattr(person, field.name) for field in fields(person)}
    columns: dict[str, object] = {name: v for name, v in given.items() if v is not KEEP}
    email = columns.get("email")
    if isinstance(email, str):
        columns["email"] = email.lower()
    columns.pop("current_password", None)
    password = columns.pop("password", None)
    if isinstance(password, str):
        columns["password_hash"] = await passwords.hash(password)
    return columns


@contextmanager
def _refusals(table: str, specialization_id: int | None = None) -> Iterator[None]:
    # Only the refusals we can name: anything else is a bug, and a 500 says so.
    try:
        yield
    except IntegrityError as exc:
        if duplicates(exc, table, "email"):
            raise EmailTaken("an account with this email already exists") from exc
        if specialization_id is not None and lacks_parent(exc, "specialization_id"):
            raise catalog.missing(specialization_id) from exc
        raise


async def _insert(sessions: SessionFactory, row: Row) -> Row:
    with _refusals(row.__tablename__):
        async with sessions.begin() as session:
            session.add(row)
    return row


async def _update(
    sessions: SessionFactory,
    passwords: Passwords,
    caller: Principal,
    table: type[Account],
    row_id: int,
    changes: PersonChanges,
    specialization_id: int | None = None,
    *,
    verify: Verify | None = None,
) -> Account:
    columns = await _columns(changes, passwords)
    credentials = "email" in columns or "password_hash" in columns
    if credentials and caller.is_(ROLES[table], row_id):
        await _confirm(sessions, passwords, table, row_id, changes.current_password)
    with _refusals(table.__tablename__, specialization_id):
        async with sessions.begin() as session:
            row = await session.get(table, row_id, with_for_update=True)
            if row is None:
                raise NotFound(f"{table.__tablename__[:-1]} {row_id} not found")
            if credentials:  # every session of the old email or password ends
                columns["session_epoch"] = row.session_epoch + 1
            moved = "email" in columns and columns["email"] != row.email
            if moved:  # a new address is verified by a link sent to it, not by the old one
                columns["email_verified_at"] = None
            if specialization_id is not None:
                await catalog.specialization(session, specialization_id)
                columns["specialization_id"] = specialization_id
            for name, value in columns.items():
                setattr(row, name, value)
            if moved and verify is not None:
                role = ROLES[table]
                await notices.write(session, [verify.notice(role, row_id, str(columns["email"]))])
    return row


async def _confirm(
    sessions: SessionFactory,
    passwords: Passwords,
    table: type[Account],
    row_id: int,
    current: str | Keep,
) -> None:
    # The owner changing their email or password proves they know the current one (a stolen
    # session alone cannot take the account over). Verified outside any transaction.
    if not isinstance(current, str):
        raise InvalidInput(
            "changing the email or password needs the current password",
            [{"field": "current_password", "message": "required with email or password"}],
        )
    async with sessions() as session:
        stored = await session.scalar(select(table.password_hash).where(table.id == row_id))
    if stored is None or not await passwords.verify(stored, current):
        raise Forbidden("the current password is wrong")
