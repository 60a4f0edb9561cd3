from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, time
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hub.availability import SlotState
from hub.models import Gender, Status
from hub.schedules import Policy

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 ()./-]{4,19}$")
]
Address = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
Email = Annotated[EmailStr, StringConstraints(max_length=100)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]


def _in_the_past(value: date) -> date:
    if value >= datetime.now(UTC).date():
        raise ValueError("date of birth must be in the past")
    if value.year < 1900:
        raise ValueError("date of birth must be after 1900")
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


BirthDate = Annotated[date, AfterValidator(_in_the_past)]
UTCInstant = Annotated[AwareDatetime, BeforeValidator(_text), AfterValidator(_utc)]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PersonCreate(Input):
    first_name: Name
    last_name: Name
    date_of_birth: BirthDate
    gender: Gender
    email: Email
    phone: Phone
    address: Address | None = None
    password: Password


class PatientCreate(PersonCreate):
    pass


class DoctorCreate(PersonCreate):
    specialization_id: Id


class PersonUpdate(Input):
    first_name: Name | None = None
    last_name: Name | None = None
    date_of_birth: BirthDate | None = None
    gender: Gender | None = None
    email: Email | None = None
    phone: Phone | None = None
    address: Address | None = None
    password: Password | None = None

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
    specialization_id: Id | None = None


class SpecializationCreate(Input):
    name: Name


HoldId = Annotated[str, StringConstraints(min_length=7, max_length=80, pattern=r"^[0-9a-f-]+$")]


class HoldCreate(Input):
    doctor_id: Id
    scheduled_datetime: UTCInstant = Field(
        description="Start of the slot, ISO 8601 with an offset; normalised to UTC"
    )


class AppointmentCreate(Input):
    doctor_id: Id | None = Field(default=None, description="Required without hold_id")
    scheduled_datetime: UTCInstant | None = Field(
        default=None,
        description="Start of the slot, ISO 8601 with an offset; normalised to UTC. "
        "Required without hold_id",
    )
    patient_id: Id | None = Field(default=None, description="Must be the caller when given")
    hold_id: HoldId | None = Field(default=None, description="Book the slot this hold keeps")


class RescheduleRequest(Input):
    scheduled_datetime: UTCInstant | None = Field(default=None, description="The new start")
    hold_id: HoldId | None = Field(default=None, description="Or: the hold on the new slot")


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
    cancel_cutoff_minutes: int = Field(
        default=DEFAULT_POLICY.cancel_cutoff_minutes, ge=0, le=60 * 24 * 30
    )
    allow_late_cancel: bool = DEFAULT_POLICY.allow_late_cancel
    one_per_patient: bool = DEFAULT_POLICY.one_per_patient
    no_show_grace_minutes: int = Field(
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


class SpecializationOut(Output):
    id: int
    name: str


class PatientOut(Output):
    id: int
    first_name: str
    last_name: str
    date_of_birth: date
    gender: Gender
    email: str
    phone: str
    address: str | None
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
    created_at: datetime
    updated_at: datetime


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


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


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
    timezone: Annotated[str, Field(max_length=64), AfterValidator(_zone)] = Field(
        default="UTC", description="IANA time zone the hours are in"
    )
    weekly: Week
    slot_minutes: int = Field(default=60, ge=5, le=240)
    buffer_minutes: int = Field(default=0, ge=0, le=240)
    notice_minutes: int = Field(default=60, ge=0, le=60 * 24 * 30)
    horizon_days: int = Field(default=90, ge=1, le=730)
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
