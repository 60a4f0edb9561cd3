"""Calendar feeds and downloadable invites: a person's appointments as ICS.

A feed is a secret URL (`/feeds/<secret>.ics`, also as `webcal://`) that a calendar app
polls without signing in: anyone holding it reads its owner's appointments of the last
`WINDOW` and everything ahead, so the hub stores only the secret's SHA-256 and a new one
revokes the old. An appointment and everything it was moved to are one event (hub.invites);
a cancelled one stays as CANCELLED for `WINDOW` after it was cancelled, then leaves. A
doctor's feed names patients by initials unless the doctor chose names; no feed or invite
carries the reason for a visit or any other clinical text.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from hub import access, appointments, invites
from hub.appointments import PARTIES
from hub.auth import Principal, Role, require
from hub.config import Settings
from hub.db import SessionFactory
from hub.errors import NotFound
from hub.invites import Entry, Method
from hub.links import Links
from hub.models import Appointment, Doctor, Patient, Status, VisitType

WINDOW = timedelta(days=30)
MAX_ENTRIES = 2000  # a feed's bound, whatever a calendar holds
SECRET = re.compile(r"[A-Za-z0-9_-]{32,64}")  # what secrets.token_urlsafe(32) makes
MAX_MOVES = 1000


@dataclass(frozen=True, slots=True)
class FeedUrl:
    """Where a new feed is read: over HTTP(S), and the same as webcal:// for calendar apps."""

    url: str
    webcal: str


@dataclass(frozen=True, slots=True)
class FeedBody:
    """A feed as its reader gets it, and whose it is (for the audit trail)."""

    owner: str  # "patient:3", "doctor:7"
    body: bytes


def digest(secret: str) -> str:
    """What the hub stores of a feed's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def initials(first: str, last: str) -> str:
    """ "Ada Lovelace" -> "A. L."."""
    return " ".join(f"{name.strip()[:1].upper()}." for name in (first, last) if name.strip())


def host_of(settings: Settings) -> str:
    """The hub's public host, as every UID it writes names it."""
    return urlsplit(Links(settings).base).hostname or "hub"


def _manages(caller: Principal, role: Role, owner_id: int) -> bool:
    if role is Role.patient:
        return access.manages_patient(caller, owner_id)
    return access.manages_doctor(caller, owner_id)


async def _owner(session: AsyncSession, role: Role, owner_id: int) -> Patient | Doctor:
    row: Patient | Doctor | None
    if role is Role.patient:
        row = await session.get(Patient, owner_id, with_for_update=True)
    else:
        row = await session.get(Doctor, owner_id, with_for_update=True)
    if row is None:
        raise NotFound(f"{role.value} {owner_id} not found")
    return row


async def turn_on(
    sessions: SessionFactory,
    settings: Settings,
    principal: Principal | None,
    role: Role,
    owner_id: int,
    names: bool | None = None,
) -> FeedUrl:
    """A new secret feed URL of a patient or a doctor (themselves, admins); the old one, if
    any, stops working. `names` (doctors): patients by name instead of initials."""
    caller = require(principal)
    access.ensure(_manages(caller, role, owner_id), f"only that {role.value} and admins")
    secret = secrets.token_urlsafe(32)
    async with sessions.begin() as session:
        row = await _owner(session, role, owner_id)
        row.feed_secret = digest(secret)
        if isinstance(row, Doctor) and names is not None:
            row.feed_names = names
    url = f"{Links(settings).base}/feeds/{secret}.ics"
    return FeedUrl(url, "webcal://" + url.split("://", 1)[1])


async def turn_off(
    sessions: SessionFactory, principal: Principal | None, role: Role, owner_id: int
) -> None:
    """Revoke a patient's or a doctor's feed (themselves, admins): its URL answers 404."""
    caller = require(principal)
    access.ensure(_manages(caller, role, owner_id), f"only that {role.value} and admins")
    async with sessions.begin() as session:
        (await _owner(session, role, owner_id)).feed_secret = None


async def read(
    sessions: SessionFactory, settings: Settings, secret: str, now: datetime
) -> FeedBody:
    """The feed a secret opens (anyone holding it); NotFound when it opens none: unknown,
    revoked, or its account deactivated."""
    if not SECRET.fullmatch(secret):
        raise NotFound("no such calendar feed")
    stored = digest(secret)
    async with sessions() as session:
        owner: Patient | Doctor | None = await session.scalar(
            select(Patient).where(Patient.feed_secret == stored, Patient.active.is_(True))
        )
        if owner is None:
            owner = await session.scalar(
                select(Doctor).where(Doctor.feed_secret == stored, Doctor.active.is_(True))
            )
        if owner is None:
            raise NotFound("no such calendar feed")
        host = host_of(settings)
        if isinstance(owner, Doctor):
            rows = await _recent(session, Appointment.doctor_id == owner.id, now)
            types = await _type_names(session, owner.id)
            entries = [
                await appointment_entry(session, host, row, _doctor_summary(row, owner, types))
                for row in rows
            ]
            kind = "doctor"
        else:
            rows = await _recent(session, Appointment.patient_id == owner.id, now)
            entries = [
                await appointment_entry(session, host, row, _patient_summary(row)) for row in rows
            ]
            kind = "patient"
    name = f"{settings.clinic_name}: appointments"
    return FeedBody(f"{kind}:{owner.id}", invites.calendar(entries, "PUBLISH", name))


async def invite(
    sessions: SessionFactory, settings: Settings, principal: Principal | None, appointment_id: int
) -> tuple[Method, bytes]:
    """The invite of an appointment (its patient, its doctor, the front desk, admins), as
    the messages about it attach it: REQUEST, or CANCEL once cancelled. One that was moved
    gives the invite of where it went, so it never cancels the moved event."""
    caller = require(principal)
    async with sessions() as session:
        row = await appointments.find(session, appointment_id, parties=True)
        access.ensure(
            access.party_to(caller, doctor_id=row.doctor_id, patient_id=row.patient_id),
            "you may not read this appointment",
        )
        row = await _latest(session, row)
        _, organizer = parseaddr(settings.mail_from)
        entry = await appointment_entry(
            session,
            host_of(settings),
            row,
            _patient_summary(row),
            organizer=organizer or None,
            attendee=row.patient.email,
        )
    return invites.invite(entry)


async def _recent(
    session: AsyncSession, whose: ColumnElement[bool], now: datetime
) -> Sequence[Appointment]:
    since = now - WINDOW
    later = aliased(Appointment)
    moved = select(later.id).where(later.rescheduled_from_id == Appointment.id).exists()
    query = (
        select(Appointment)
        .where(
            whose,
            Appointment.start_at >= since,
            or_(Appointment.status != Status.cancelled, Appointment.updated_at >= since),
            ~moved,  # a moved one is the event it was moved to
        )
        .options(*PARTIES)
        .order_by(Appointment.start_at, Appointment.id)
        .limit(MAX_ENTRIES)
    )
    return (await session.scalars(query)).all()


async def _latest(session: AsyncSession, row: Appointment) -> Appointment:
    for _ in range(MAX_MOVES):
        later = await session.scalar(
            select(Appointment).where(Appointment.rescheduled_from_id == row.id).options(*PARTIES)
        )
        if later is None:
            break
        row = later
    return row


async def _type_names(session: AsyncSession, doctor_id: int) -> dict[int, str]:
    query = select(VisitType.id, VisitType.name).where(VisitType.doctor_id == doctor_id)
    return {type_id: name for type_id, name in await session.execute(query)}


def _patient_summary(row: Appointment) -> str:
    return f"Appointment with Dr {row.doctor.first_name} {row.doctor.last_name}"


def _doctor_summary(row: Appointment, doctor: Doctor, types: dict[int, str]) -> str:
    patient = row.patient
    who = (
        f"{patient.first_name} {patient.last_name}"
        if doctor.feed_names
        else initials(patient.first_name, patient.last_name)
    )
    kind = types.get(row.visit_type_id) if row.visit_type_id is not None else None
    return f"{kind or 'Appointment'}: {who}"


async def appointment_entry(
    session: AsyncSession,
    host: str,
    row: Appointment,
    summary: str,
    *,
    organizer: str | None = None,
    attendee: str | None = None,
) -> Entry:
    """`row` as a calendar shows it (its parties loaded): the UID of its series on `host`, a
    SEQUENCE of its moves (one more once cancelled), UTC times, the doctor's address."""
    first_id, moves = await appointments.series_of(session, row)
    cancelled = row.status is Status.cancelled
    return Entry(
        uid=invites.uid_of(first_id, host),
        sequence=moves + (1 if cancelled else 0),
        start=row.start_at,
        end=row.end_at,
        summary=summary,
        location=row.doctor.address,
        cancelled=cancelled,
        organizer=organizer,
        attendee=attendee,
        stamp=row.updated_at,
    )
