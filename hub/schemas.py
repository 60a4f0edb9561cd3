from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from hub.models import Gender, Status

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


class AppointmentCreate(Input):
    doctor_id: Id
    scheduled_datetime: UTCInstant = Field(
        description="Start of the slot, ISO 8601 with an offset; normalised to UTC"
    )
    patient_id: Id | None = Field(default=None, description="Must be the caller when given")


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
    doctor: PersonRef
    patient: PersonRef
    created_at: datetime
    updated_at: datetime


class SlotsOut(Output):
    doctor_id: int
    date: date
    slots: list[datetime]


class ErrorOut(Output):
    error: str
    detail: str
    fields: list[dict[str, str]] | None = None
