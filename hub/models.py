from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (MySQL DATETIME has no zone)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Status(enum.StrEnum):
    scheduled = "scheduled"
    completed = "completed"
    cancelled = "cancelled"
    no_show = "no_show"


class Gender(enum.StrEnum):
    male = "male"
    female = "female"
    other = "other"
    undisclosed = "undisclosed"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Specialization(Base):
    __tablename__ = "specializations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class Account(Timestamps):
    """What every signed-in party has: sessions end when the account is deactivated or its
    `session_epoch` rises past the epoch their token names."""

    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Person(Account):
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_name: Mapped[str] = mapped_column(String(50))
    last_name: Mapped[str] = mapped_column(String(50))
    date_of_birth: Mapped[date] = mapped_column(Date)
    gender: Mapped[Gender] = mapped_column(_enum(Gender, "gender"))
    email: Mapped[str] = mapped_column(String(100), unique=True)
    phone: Mapped[str] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(200), default=None)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Notifications (migration 0011): the zone their times are written in (None: the
    # doctor's), when the email address was verified, which kinds they want (None: all), and
    # the SHA-256 of their calendar feed's secret (None: no feed).
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    notify: Mapped[dict[str, bool] | None] = mapped_column(JSON, default=None)
    feed_secret: Mapped[str | None] = mapped_column(String(64), default=None, unique=True)


class Patient(Person, Base):
    __tablename__ = "patients"


class Doctor(Person, Base):
    __tablename__ = "doctors"

    specialization_id: Mapped[int] = mapped_column(ForeignKey("specializations.id"), index=True)
    specialization: Mapped[Specialization] = relationship(lazy="raise")
    # Listed, bookable and shown patients only once an admin approved them.
    approved: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    feed_names: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class Staff(Account, Base):
    """A receptionist: finds patients, registers them, books, moves and cancels for them."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)
    first_name: Mapped[str] = mapped_column(String(50))
    last_name: Mapped[str] = mapped_column(String(50))
    password_hash: Mapped[str] = mapped_column(String(255))


class Admin(Account, Base):
    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))


class Appointment(Timestamps, Base):
    """One booking. `active` is 1 unless cancelled and NULL otherwise, so the two UNIQUE keys
    below let any number of cancelled rows share a start but never two live ones: the
    database itself refuses a double booking, whatever the code above it does."""

    __tablename__ = "appointments"
    __table_args__ = (
        UniqueConstraint("doctor_id", "start_at", "active", name="uq_appointments_doctor_slot"),
        UniqueConstraint("patient_id", "start_at", "active", name="uq_appointments_patient_slot"),
        CheckConstraint("end_at > start_at", name="ends_after_start"),
        Index("ix_appointments_doctor_start", "doctor_id", "start_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    doctor_id: Mapped[int] = mapped_column(ForeignKey("doctors.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[Status] = mapped_column(_enum(Status, "status"), default=Status.scheduled)
    cancel_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    late_cancel: Mapped[bool] = mapped_column(Boolean, default=False)
    rescheduled_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("appointments.id"), default=None
    )
    # The visit type booked (None: the doctor's implicit one, or a type since removed), the
    # idle time after it that the doctor's calendar keeps free, and the patient's reason.
    visit_type_id: Mapped[int | None] = mapped_column(
        ForeignKey("visit_types.id", ondelete="SET NULL"), default=None
    )
    buffer_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    active: Mapped[int | None] = mapped_column(
        Integer, Computed("CASE WHEN status <> 'cancelled' THEN 1 ELSE NULL END", persisted=True)
    )

    # Loaded where asked for (hub.appointments.PARTIES), never by default: reading one that was
    # not loaded raises instead of querying behind the caller's back.
    doctor: Mapped[Doctor] = relationship(lazy="raise")
    patient: Mapped[Patient] = relationship(lazy="raise")


class VisitType(Base):
    """A kind of visit a doctor offers: its length, the idle time after it, and whether
    patients book it online (or only the front desk and the doctor). A doctor without any
    has one implicit type as long as their slots (hub.visits)."""

    __tablename__ = "visit_types"
    __table_args__ = (
        CheckConstraint("minutes BETWEEN 5 AND 480 AND minutes % 5 = 0", name="minutes"),
        CheckConstraint(
            "buffer_minutes BETWEEN 0 AND 240 AND buffer_minutes % 5 = 0", name="buffer_minutes"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    doctor_id: Mapped[int] = mapped_column(ForeignKey("doctors.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # the first is the default
    name: Mapped[str] = mapped_column(String(50))
    minutes: Mapped[int] = mapped_column(Integer)
    buffer_minutes: Mapped[int] = mapped_column(Integer)
    online: Mapped[bool] = mapped_column(Boolean)


class Occupancy(Base):
    """One 5-minute unit of a doctor's time taken by an active appointment (its visit and its
    buffer). Written and deleted by triggers on appointments (migration 0009), never by the
    hub: the UNIQUE key refuses two overlapping appointments of one doctor, whatever writes
    them."""

    __tablename__ = "occupancy"
    __table_args__ = (UniqueConstraint("doctor_id", "unit_start", name="uq_occupancy_doctor_unit"),)

    appointment_id: Mapped[int] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE"), primary_key=True
    )
    unit_start: Mapped[int] = mapped_column(Integer, primary_key=True)  # epoch minutes, UTC
    doctor_id: Mapped[int] = mapped_column(Integer)


class OccupancyUnit(Base):
    """The numbers 0..287, which the occupancy triggers join with to write one row a unit."""

    __tablename__ = "occupancy_units"

    n: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class Schedule(Base):
    """A doctor's availability (see hub.availability), edited as one document.
    `weekly` maps weekday names to [["HH:MM", "HH:MM"], ...]; `overrides` is a list of
    {"from": date, "to": date, "intervals": [...]}. A new doctor's values come from
    `hub.schedules.new_schedule`, the one place that knows the defaults."""

    __tablename__ = "schedules"

    doctor_id: Mapped[int] = mapped_column(ForeignKey("doctors.id"), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))
    slot_minutes: Mapped[int] = mapped_column(Integer)
    buffer_minutes: Mapped[int] = mapped_column(Integer)
    notice_minutes: Mapped[int] = mapped_column(Integer)
    horizon_days: Mapped[int] = mapped_column(Integer)
    cancel_cutoff_minutes: Mapped[int] = mapped_column(Integer)
    allow_late_cancel: Mapped[bool] = mapped_column(Boolean)
    one_per_patient: Mapped[bool] = mapped_column(Boolean)
    no_show_grace_minutes: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=0)  # of the doctor's slot states
    weekly: Mapped[dict[str, list[list[str]]]] = mapped_column(JSON)
    overrides: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AppointmentEvent(Base):
    """One state change of an appointment: who, when, from, to, why."""

    __tablename__ = "appointment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_role: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int] = mapped_column(Integer)
    from_status: Mapped[str | None] = mapped_column(String(16), default=None)
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(500), default=None)


class IdempotencyKey(Base):
    """A booking request's Idempotency-Key, kept so a retry returns the first result."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("patient_id", "key", name="uq_idempotency_keys_patient_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    key: Mapped[str] = mapped_column(String(100))
    request_hash: Mapped[str] = mapped_column(String(64))
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class OutboxEvent(Base):
    """An event written in the transaction that caused it and published after commit; a relay
    in every process publishes what a dead process left behind."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("doctor_id", "version", name="uq_outbox_doctor_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(100))
    doctor_id: Mapped[int | None] = mapped_column(Integer, default=None)  # set: a slot event
    version: Mapped[int | None] = mapped_column(Integer, default=None)  # the doctor's, per change
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(32), default=None)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)


class AuditEvent(Base):
    """Who read or changed a patient's record or appointments, or tried to: one row each,
    with no names, tokens or free text. The application's database user may insert and
    select these rows, never update or delete them (README: "Audit trail")."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor_role: Mapped[str | None] = mapped_column(String(16), default=None)
    actor_id: Mapped[int | None] = mapped_column(Integer, default=None)
    action: Mapped[str] = mapped_column(String(40))
    resource: Mapped[str] = mapped_column(String(60), index=True)
    outcome: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(8))
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)


class RefreshToken(Base):
    """One refresh token of a sign-in (kept as its SHA-256, never itself). Each use replaces it
    with the next of its `family`; a token used twice (past a few seconds' grace for two tabs
    at once) ends the whole family: it was stolen."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    family: Mapped[str] = mapped_column(String(32), index=True)
    role: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Waiting(enum.StrEnum):
    waiting = "waiting"  # in line
    offered = "offered"  # an offer is out to the patient
    booked = "booked"  # the patient booked with the doctor (through an offer or not)
    left = "left"  # taken off the list by the patient or the front desk
    ended = "ended"  # its last day passed


class OfferState(enum.StrEnum):
    open = "open"
    accepted = "accepted"
    declined = "declined"
    lapsed = "lapsed"
    withdrawn = "withdrawn"  # the patient booked some other time with the doctor


class WaitlistEntry(Timestamps, Base):
    """A patient waiting for a time with a doctor: local dates first..last, a visit type and,
    optionally, times of day. `live` is 1 while waiting or offered and NULL after, so the
    UNIQUE key allows one live entry per patient and doctor. `moving_id`: the appointment an
    accepted offer moves (the patient wants an earlier time than the one they have)."""

    __tablename__ = "waitlist_entries"
    __table_args__ = (
        UniqueConstraint("patient_id", "doctor_id", "live", name="uq_waitlist_entries_live"),
        Index("ix_waitlist_entries_doctor_live", "doctor_id", "live"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    doctor_id: Mapped[int] = mapped_column(ForeignKey("doctors.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    visit_type_id: Mapped[int | None] = mapped_column(
        ForeignKey("visit_types.id", ondelete="SET NULL"), default=None
    )
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    times: Mapped[list[list[str]] | None] = mapped_column(JSON, default=None)  # [["HH:MM", ...]]
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    moving_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"), default=None)
    by_role: Mapped[str] = mapped_column(String(16))
    status: Mapped[Waiting] = mapped_column(_enum(Waiting, "waiting"), default=Waiting.waiting)
    live: Mapped[int | None] = mapped_column(
        Integer,
        Computed("CASE WHEN status IN ('waiting', 'offered') THEN 1 ELSE NULL END", persisted=True),
    )


class WaitlistOffer(Base):
    """A freed slot held for the first in line until `expires_at`. `open` is 1 while the
    offer stands and NULL after: the UNIQUE keys refuse two open offers of one slot and two
    open offers of one entry, whatever writes them."""

    __tablename__ = "waitlist_offers"
    __table_args__ = (
        UniqueConstraint("doctor_id", "start_at", "open", name="uq_waitlist_offers_slot"),
        UniqueConstraint("entry_id", "open", name="uq_waitlist_offers_entry"),
        Index("ix_waitlist_offers_state_expires", "state", "expires_at"),
        Index("ix_waitlist_offers_patient_doctor", "patient_id", "doctor_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("waitlist_entries.id"))
    doctor_id: Mapped[int] = mapped_column(Integer)
    patient_id: Mapped[int] = mapped_column(Integer)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    visit_type_id: Mapped[int | None] = mapped_column(Integer, default=None)
    hold_id: Mapped[str | None] = mapped_column(String(80), default=None)  # its Redis hold
    state: Mapped[OfferState] = mapped_column(
        _enum(OfferState, "offer_state"), default=OfferState.open
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    open: Mapped[int | None] = mapped_column(
        Integer, Computed("CASE WHEN state = 'open' THEN 1 ELSE NULL END", persisted=True)
    )


class Notice(enum.StrEnum):
    booked = "booked"
    rescheduled = "rescheduled"
    cancelled = "cancelled"
    offer = "offer"
    reminder = "reminder"
    verify = "verify"
    reset = "reset"


class Delivery(enum.StrEnum):
    pending = "pending"
    sent = "sent"
    dropped = "dropped"  # no longer applied when it fell due (cancelled, moved, opted out)
    failed = "failed"  # every attempt failed


class Notification(Base):
    """A message to send, written in the transaction of the change it tells of (as the
    outbox is). The sender of any process claims it when due, reads the appointment again,
    sends or drops it, and records what happened (hub.notices)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_state_due", "state", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[Notice] = mapped_column(_enum(Notice, "notice"))
    channel: Mapped[str] = mapped_column(String(8), default="email")  # email, sms
    role: Mapped[str] = mapped_column(String(16))  # whom: patient, doctor, staff, admin
    account_id: Mapped[int] = mapped_column(Integer)
    appointment_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)  # as written
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[Delivery] = mapped_column(_enum(Delivery, "delivery"), default=Delivery.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(32), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    detail: Mapped[str | None] = mapped_column(String(200), default=None)  # why dropped/failed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
