from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, time
from typing import Annotated, Any
from zoneinfo import available_timezones

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from hub.auth import Role
from hub.availability import SlotState
from hub.models import Gender, Status
from hub.schedules import Policy
from hub.waitlist import Wanted, wait_spans

# Each length is the column's (hub.models): a longer value is a 422 here, never the database's.
# (What the schema says is what is checked: a name has a character that is not a space; a
# phone is not trimmed, so that its pattern means the same to a client as here.)
# A name is trimmed of Unicode White_Space (as pydantic trims), keeps no other control character
# and has a character left. Both sets are spelled out: `\s` means another set in Python and in
# the ECMA-262 patterns of JSON Schema (U+001C-U+001F are space to Python alone).
SPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
CONTROL = r"\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f"
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=50,
        pattern=f"^[^{CONTROL}]*[^{SPACE}{CONTROL}][^{CONTROL}]*$",
    ),
]
Phone = Annotated[
    str, StringConstraints(max_length=20, pattern=r"^\+?[0-9][0-9 ()./-]{3,18}[0-9()./-]$")
]
Address = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]


def _json_integer(value: object) -> object:
    # A JSON integer, as JSON Schema counts them (3 and 3.0), never `true` or "3".
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _ci(word: str) -> str:
    return "".join(f"[{c.upper()}{c}]" for c in word)


# email-validator refuses the special-use domains (RFC 6761: mail to them goes nowhere); the
# schema says so, so that what it describes as valid is accepted.
SPECIAL_USE = r"\.(" + "|".join(_ci(name) for name in SPECIAL_USE_DOMAIN_NAMES) + r")\.?$"
Email = Annotated[
    EmailStr,
    StringConstraints(max_length=100),
    Field(json_schema_extra={"not": {"pattern": SPECIAL_USE}}),
]
# Integers on the wire are JSON integers (3 or 3.0): not true, 1.5 or "1".
# (The constraints sit before the converter, or the schema shows them under pydantic's names.)
Int = Annotated[int, Field(strict=True), BeforeValidator(_json_integer)]
Id = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1), BeforeValidator(_json_integer)]
FIRST_BIRTH_YEAR = 1900


def _in_the_past(value: date) -> date:
    if value >= datetime.now(UTC).date():
        raise ValueError("date of birth must be in the past")
    if value.year < FIRST_BIRTH_YEAR:
        raise ValueError(f"date of birth must be in {FIRST_BIRTH_YEAR} or later")
    return value


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the instant is out of range in UTC") from exc


def _text(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string")
    return value


def _iso_date(value: object) -> object:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date written YYYY-MM-DD")
    return value


BirthDate = Annotated[
    date,
    AfterValidator(_in_the_past),
    # The pattern is a safe subset for generated requests (JSON schema cannot say "past").
    Field(
        description=f"In the past, from {FIRST_BIRTH_YEAR}-01-01",
        json_schema_extra={"pattern": r"^(19\d\d|20[01]\d)-\d\d-\d\d$"},
    ),
]
UTCInstant = Annotated[AwareDatetime, BeforeValidator(_text), AfterValidator(_utc)]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]


def _omittable(schema: dict[str, Any]) -> None:
    # A field that may be omitted but not null (`Unset`) has the default None in Python only:
    # a schema that said `"default": null` of a string would contradict itself.
    for field in schema.get("properties", {}).values():
        nullable = field.get("type") == "null" or any(
            option.get("type") == "null" for option in field.get("anyOf", ())
        )
        if field.get("default", ...) is None and not nullable:
            del field["default"]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, json_schema_extra=_omittable)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# The IANA names, not the files beside them in the zone database.
ZONES = frozenset(available_timezones() - {"localtime", "posixrules", "Factory"})


def _zone(value: str) -> str:
    if value not in ZONES:
        raise ValueError(f"unknown time zone {value!r}")
    return value


# The schema lists the names, so a client (or a fuzzer) knows exactly which are taken.
Zone = Annotated[
    str, Field(max_length=64, json_schema_extra={"enum": sorted(ZONES)}), AfterValidator(_zone)
]


class DeskRegistration(Input):
    """A patient the front desk registers (on the phone, at the counter): no password; the
    patient sets one when they first sign in through a reset."""

    first_name: Name
    last_name: Name
    date_of_birth: BirthDate
    gender: Gender
    email: Email
    phone: Phone
    address: Address | None = None
    timezone: Zone | None = Field(
        default=None, description="IANA zone their messages are written in (default: the doctor's)"
    )


class PersonCreate(DeskRegistration):
    password: Password


class StaffCreate(Input):
    first_name: Name
    last_name: Name
    email: Email
    password: Password


class StaffOut(Output):
    id: int
    first_name: str
    last_name: str
    email: str
    active: bool
    created_at: datetime


class PatientContact(Output):
    """What scheduling needs of a patient, all the front desk sees."""

    id: int
    first_name: str
    last_name: str
    date_of_birth: date
    email: str
    phone: str


class PatientCreate(PersonCreate):
    pass


class DoctorCreate(PersonCreate):
    specialization_id: Id


# Omitted keeps a field's value; null is refused (see PersonUpdate), so the schema shows none.
Unset = SkipJsonSchema[None]


def _proves_the_password(schema: dict[str, Any]) -> None:
    # The owner changing their email or password gives the current one (admins need not:
    # the schema says what an owner sends).
    _omittable(schema)
    schema["dependentRequired"] = {
        "password": ["current_password"],
        "email": ["current_password"],
    }


class PersonUpdate(Input):
    model_config = ConfigDict(extra="forbid", strict=False, json_schema_extra=_proves_the_password)

    first_name: Name | Unset = None
    last_name: Name | Unset = None
    date_of_birth: BirthDate | Unset = None
    gender: Gender | Unset = None
    email: Email | Unset = None
    phone: Phone | Unset = None
    address: Address | None = None
    timezone: Zone | None = Field(default=None, description="null: the doctor's zone")
    password: Password | Unset = None
    current_password: Annotated[str, StringConstraints(max_length=128)] | Unset = Field(
        default=None, description="needed to change your own email or password"
    )

    @field_validator("*")
    @classmethod
    def _no_null_but_address(cls, value: object, info: ValidationInfo) -> object:
        # Omitted fields keep their value; an explicit null may only clear the address.
        if value is None and info.field_name != "address":
            raise ValueError("cannot be null")
        return value


class PatientUpdate(PersonUpdate):
    pass


class DoctorUpdate(PersonUpdate):
    specialization_id: Id | Unset = None


class SpecializationCreate(Input):
    name: Name = Field(description="1 to 50 characters, unique whatever their case")


HoldId = Annotated[str, StringConstraints(min_length=7, max_length=80, pattern=r"^[0-9a-f-]+$")]
VisitTypeId = Annotated[
    Id | None, Field(description="One of the doctor's visit types; default: their first")
]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class HoldCreate(Input):
    doctor_id: Id
    scheduled_datetime: UTCInstant = Field(
        description="Start of the slot, ISO 8601 with an offset; normalised to UTC"
    )
    appointment_id: Id | None = Field(
        default=None, description="When rescheduling: the appointment to move to this slot"
    )
    visit_type_id: VisitTypeId = None


class AppointmentCreate(Input):
    doctor_id: Id | None = Field(default=None, description="Required without hold_id")
    scheduled_datetime: UTCInstant | None = Field(
        default=None,
        description="Start of the slot, ISO 8601 with an offset; normalised to UTC. "
        "Required without hold_id",
    )
    patient_id: Id | None = Field(default=None, description="Must be the caller when given")
    hold_id: HoldId | None = Field(default=None, description="Book the slot this hold keeps")
    visit_type_id: VisitTypeId = None
    reason: Reason | None = Field(
        default=None, description="Why the visit: seen by the doctor, the front desk, admins"
    )


class RescheduleRequest(Input):
    scheduled_datetime: UTCInstant | None = Field(default=None, description="The new start")
    hold_id: HoldId | None = Field(default=None, description="Or: the hold on the new slot")
    visit_type_id: Id | None = Field(
        default=None, description="Another of the doctor's visit types; default: the same"
    )


class HoldOut(Output):
    hold_id: str
    doctor_id: int
    scheduled_datetime: datetime
    expires_at: datetime | None


class HistoryOut(Output):
    at: datetime
    actor_role: str
    actor_id: int
    from_status: str | None
    to_status: str
    reason: str | None


DEFAULT_POLICY = Policy()


class PolicyIn(Input):
    cancel_cutoff_minutes: Int = Field(
        default=DEFAULT_POLICY.cancel_cutoff_minutes, ge=0, le=60 * 24 * 30
    )
    allow_late_cancel: StrictBool = DEFAULT_POLICY.allow_late_cancel
    one_per_patient: StrictBool = DEFAULT_POLICY.one_per_patient
    no_show_grace_minutes: Int = Field(
        default=DEFAULT_POLICY.no_show_grace_minutes, ge=0, le=24 * 60
    )


class CancelRequest(Input):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class Login(Input):
    username: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="The account's email"
    )
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class TokenOut(Output):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class SessionOut(TokenOut):
    role: str
    id: int


class SpecializationOut(Output):
    id: int
    name: str


def _verified(value: object) -> bool:
    # From a row: when it was verified (None: not yet); from a dump of this model: the bool.
    return value if isinstance(value, bool) else value is not None


class PatientOut(Output):
    id: int
    first_name: str
    last_name: str
    date_of_birth: date
    gender: Gender
    email: str
    email_verified: Annotated[bool, BeforeValidator(_verified)] = Field(
        validation_alias=AliasChoices("email_verified_at", "email_verified"),
        description="the patient followed a link sent to this address",
    )
    phone: str
    address: str | None
    timezone: str | None = Field(description="the zone their messages are written in")
    active: bool
    created_at: datetime
    updated_at: datetime


class DoctorPublic(Output):
    id: int
    first_name: str
    last_name: str
    specialization: SpecializationOut
    address: str | None


class DoctorOut(DoctorPublic):
    date_of_birth: date
    gender: Gender
    email: str
    phone: str
    specialization_id: int
    approved: bool = Field(description="an admin approved them: listed and bookable")
    timezone: str | None = Field(description="the zone their messages are written in")
    active: bool
    created_at: datetime
    updated_at: datetime


class Renewed(BaseModel):
    access_token: str | None = Field(
        default=None,
        description="a new token when the change ended the account's sessions (its owner "
        "changed their email or password): the token it was made with no longer works",
    )


class PatientChanged(PatientOut, Renewed):
    pass


class DoctorChanged(DoctorOut, Renewed):
    pass


class Standing(Input):
    active: bool


class Approval(Input):
    approved: bool


class PersonRef(Output):
    id: int
    first_name: str
    last_name: str


class AppointmentOut(Output):
    id: int
    doctor_id: int
    patient_id: int
    scheduled_datetime: datetime = Field(validation_alias="start_at")
    end_datetime: datetime = Field(validation_alias="end_at")
    status: Status
    cancel_reason: str | None
    late_cancel: bool
    rescheduled_from_id: int | None
    doctor: PersonRef
    patient: PersonRef
    created_at: datetime
    updated_at: datetime
    outside_hours: bool | None = Field(
        default=None,
        description="In the doctor's listing: the doctor's hours no longer cover this start",
    )
    visit_type_id: int | None = Field(description="None: the doctor's implicit visit type")
    # Never read from the row by itself: the edge adds it for the callers who may see it.
    reason: str | None = Field(
        default=None,
        validation_alias="shown_reason",
        description="Why the visit, as the patient said: only for the doctor, the front desk "
        "and admins",
    )


class PatientOnCall(Output):
    """What the clinic's day shows of a patient: who, and how to call them."""

    id: int
    first_name: str
    last_name: str
    phone: str


class DayAppointmentOut(Output):
    id: int
    start: datetime
    end: datetime
    status: Status
    patient: PatientOnCall
    visit_type_id: int | None = Field(description="None: the doctor's implicit visit type")
    visit_type: str | None = Field(description="Its name; None for the implicit type")
    reason: str | None = Field(description="Why the visit, as the patient said")
    cancel_reason: str | None
    rescheduled_from_id: int | None
    moved_to: datetime | None = Field(
        description="Cancelled by a reschedule: the start of the appointment it became"
    )


class DoctorDayOut(Output):
    doctor: DoctorPublic
    timezone: str = Field(description="The doctor's zone: the day is their local date")
    appointments: list[DayAppointmentOut]


class VisitTypeIn(Input):
    id: Id | None = Field(default=None, description="One of the doctor's to change; none: new")
    name: Name
    minutes: Int = Field(ge=5, le=480, multiple_of=5)
    buffer_minutes: Int = Field(default=0, ge=0, le=240, multiple_of=5)
    online: bool = Field(default=True, description="Patients book it; false: the front desk")


class VisitTypeOut(Output):
    id: int | None = Field(description="None: the implicit type of a doctor who defined none")
    name: str
    minutes: int
    buffer_minutes: int
    online: bool


class SlotsOut(Output):
    doctor_id: int
    date: date
    slots: list[datetime]


class ErrorOut(Output):
    error: str
    detail: str
    fields: list[dict[str, str]] | None = None


def _hhmm(value: object) -> object:
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d|24:00", value):
        raise ValueError("must be a time written HH:MM")
    return "00:00" if value == "24:00" else value


def _write_hhmm(value: time) -> str:
    return value.strftime("%H:%M")


HHMM = Annotated[time, BeforeValidator(_hhmm), PlainSerializer(_write_hhmm, return_type=str)]


def _minutes(value: time) -> int:
    return value.hour * 60 + value.minute or 24 * 60  # 00:00 as an end is midnight


class IntervalIn(Input):
    start: HHMM
    end: HHMM = Field(description='Exclusive; "24:00" (or "00:00") is midnight')

    @model_validator(mode="after")
    def _ordered(self) -> IntervalIn:
        if self.start.hour * 60 + self.start.minute >= _minutes(self.end):
            raise ValueError("start must be before end")
        return self


def _no_overlap(intervals: list[IntervalIn]) -> list[IntervalIn]:
    ordered = sorted(intervals, key=lambda i: i.start)
    for before, after in itertools.pairwise(ordered):
        if after.start.hour * 60 + after.start.minute < _minutes(before.end):
            raise ValueError(
                f"intervals overlap: {_write_hhmm(before.start)}-{_write_hhmm(before.end)} "
                f"and {_write_hhmm(after.start)}-{_write_hhmm(after.end)}"
            )
    return ordered


DayHours = Annotated[list[IntervalIn], Field(max_length=12), AfterValidator(_no_overlap)]


class Week(Input):
    monday: DayHours = []
    tuesday: DayHours = []
    wednesday: DayHours = []
    thursday: DayHours = []
    friday: DayHours = []
    saturday: DayHours = []
    sunday: DayHours = []


class OverrideIn(Input):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    first: IsoDate = Field(alias="from", description="First local date")
    last: IsoDate | None = Field(
        default=None, alias="to", description="Last local date (inclusive); default: from"
    )
    intervals: DayHours = Field(default=[], description="Working hours; none is a day off")

    @model_validator(mode="after")
    def _range(self) -> OverrideIn:
        if self.last is not None and self.last < self.first:
            raise ValueError("to must not be before from")
        if self.last is not None and (self.last - self.first).days > 366:
            raise ValueError("an override spans at most 366 days")
        return self


class AvailabilityIn(Input):
    timezone: Zone = Field(default="UTC", description="IANA time zone the hours are in")
    weekly: Week
    # Multiples of 5: the unit of the occupancy that refuses overlaps (hub.visits).
    slot_minutes: Int = Field(default=60, ge=5, le=240, multiple_of=5)
    buffer_minutes: Int = Field(default=0, ge=0, le=240, multiple_of=5)
    notice_minutes: Int = Field(default=60, ge=0, le=60 * 24 * 30)
    horizon_days: Int = Field(default=90, ge=1, le=730)
    overrides: list[OverrideIn] = Field(default=[], max_length=500)
    policy: PolicyIn = Field(default_factory=PolicyIn, description="Booking rules")


class SlotOut(Output):
    start: datetime
    end: datetime
    state: SlotState
    appointment_id: int | None = Field(
        default=None, description="Only for that patient, the doctor and admins"
    )
    patient_id: int | None = Field(
        default=None, description="Only for that patient, the doctor and admins"
    )


class CalendarOut(Output):
    doctor_id: int
    timezone: str
    slots: list[SlotOut]
    policy: PolicyIn = Field(description="The doctor's booking rules (cancel cutoff and more)")


class Erasure(Input):
    current_password: str | None = Field(
        default=None, max_length=128, description="the patient's own (admins need none)"
    )


class ExportedAppointment(Output):
    id: int
    doctor_id: int
    scheduled_datetime: datetime
    end_datetime: datetime
    status: Status
    cancel_reason: str | None
    late_cancel: bool
    rescheduled_from_id: int | None
    created_at: datetime
    updated_at: datetime
    history: list[HistoryOut]


class AuditOut(Output):
    id: int
    at: datetime
    actor_role: str | None
    actor_id: int | None
    action: str
    resource: str
    outcome: str
    channel: str
    request_id: str | None


class ExportedWait(Output):
    model_config = ConfigDict(from_attributes=True, serialize_by_alias=True)

    id: int
    doctor_id: int
    first: date = Field(validation_alias="first_day", serialization_alias="from")
    last: date = Field(validation_alias="last_day", serialization_alias="to")
    times: list[list[str]] | None
    urgent: bool
    status: str
    created_at: datetime
    updated_at: datetime


class PatientExport(Output):
    exported_at: datetime
    patient: PatientOut
    appointments: list[ExportedAppointment]
    audit: list[AuditOut] = Field(
        description="who read or changed the record, and what the patient did"
    )
    waitlist: list[ExportedWait] = Field(default=[], description="every waitlist entry")


class WaitlistJoin(Input):
    """Wait for a time with a doctor: local dates from..to (at most 92 days), optionally a
    visit type and times of day. The front desk and the doctor name the patient and may mark
    it urgent (first in line)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    doctor_id: Id
    first: IsoDate = Field(alias="from", description="First local date (the doctor's zone)")
    last: IsoDate = Field(alias="to", description="Last local date (inclusive)")
    visit_type_id: VisitTypeId = None
    times: list[IntervalIn] = Field(
        default=[], max_length=4, description="Times of day a start may fall in; none: any"
    )
    urgent: bool = Field(default=False, description="Front desk and doctor only")
    patient_id: Id | None = Field(default=None, description="Required for the front desk")
    appointment_id: Id | None = Field(
        default=None,
        description="The upcoming appointment an accepted offer moves (default: the "
        "patient's earliest upcoming one with the doctor, if any)",
    )

    def wanted(self) -> Wanted:
        """The request as the waitlist takes it."""
        return Wanted(
            self.doctor_id,
            self.first,
            self.last,
            self.visit_type_id,
            tuple(wait_spans(self.times)),
            self.urgent,
            self.patient_id,
            self.appointment_id,
        )


class WaitTimeOut(Output):
    start: HHMM
    end: HHMM


class OfferOut(Output):
    offer_id: int = Field(validation_alias="id")
    entry_id: int
    doctor_id: int
    start: datetime
    end: datetime
    expires_at: datetime
    state: str


class WaitlistOut(Output):
    model_config = ConfigDict(from_attributes=True, serialize_by_alias=True)

    id: int
    doctor_id: int
    patient_id: int
    first: date = Field(validation_alias="first_day", serialization_alias="from")
    last: date = Field(validation_alias="last_day", serialization_alias="to")
    visit_type_id: int | None
    times: list[WaitTimeOut]
    urgent: bool
    status: str = Field(description="waiting, offered, booked, left or ended")
    position: int | None = Field(description="1: first in line; null once off the line")
    appointment_id: int | None = Field(description="The appointment an accepted offer moves")
    created_at: datetime
    offer: OfferOut | None = Field(description="The open offer, if one is out")


class FeedIn(Input):
    names: bool | None = Field(
        default=None,
        description="Doctors: patients by name in the feed instead of initials (default: as "
        "before, initials at first)",
    )


class FeedOut(Output):
    url: str = Field(description="The feed's secret URL (anyone holding it reads the feed)")
    webcal: str = Field(description="The same as webcal://, which calendar apps subscribe to")


class ManageReschedule(Input):
    start: UTCInstant = Field(description="The new start, one of the free starts")


class ManagedDoctorOut(Output):
    first_name: str
    last_name: str
    specialization: SpecializationOut


class ManagedPolicyOut(Output):
    cancel_cutoff_minutes: int
    allow_late_cancel: bool
    words: str = Field(description="The policy in words, as the booking page says it")


class ManagedOut(Output):
    """What a link that manages one appointment shows: no patient identity beyond a first
    name, no reason for the visit."""

    id: int
    start: datetime
    end: datetime
    status: Status
    late_cancel: bool
    rescheduled_from_id: int | None
    timezone: str = Field(description="The doctor's zone, the one the times are meant in")
    doctor: ManagedDoctorOut
    patient_first_name: str
    policy: ManagedPolicyOut
    cancelling: str = Field(description="free, late (recorded as late) or refused, if now")
    cancel_until: datetime = Field(description="Until when a cancellation is free")


class ManagedSlotsOut(Output):
    date: date
    slots: list[datetime]


Token = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class ResetRequest(Input):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    role: Role = Field(description="whose account: patient, doctor, staff (front desk), admin")


class ResetConfirm(Input):
    token: Token = Field(description="the token of the reset link")
    password: Password


class VerifyIn(Input):
    token: Token = Field(description="the token of the verification link")


class Accepted(Output):
    detail: str
