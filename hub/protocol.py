"""The WebSocket wire format: JSON text frames on /ws, one object per frame with a `type`.

Client -> server (each may carry a `ref`, echoed in its reply):
    auth        {token}                                  -> ready | close 4401
    watch       {doctor_id, from, to, since?}            -> snapshot | missed events + resynced
    unwatch     {doctor_id}                              -> unwatched
    hold        {doctor_id, start, appointment_id?, visit_type_id?}  -> held
    release     {hold_id}                                -> released
    book        {hold_id} | {doctor_id, start}, idempotency_key?, visit_type_id?, reason?
                                                         -> booked
    cancel      {appointment_id, reason?}                -> cancelled
    reschedule  {appointment_id, start | hold_id, visit_type_id?}  -> rescheduled
    join_waitlist {doctor_id, from, to, visit_type_id?, times?, urgent?, patient_id?,
                 appointment_id?}                       -> waiting
    leave_waitlist {entry_id}                            -> left
    accept_offer {offer_id}                              -> accepted
    decline_offer {offer_id}                             -> declined
    ping        {}                                       -> pong

Server -> client, unasked:
    slot        {doctor_id, start, state, version}       every watcher of that doctor
    hours       {doctor_id, version}                     the doctor's hours changed: watch again
    appointment {event, appointment_id, doctor_id, patient_id, patient_name, start, status}
                                                         that doctor and that patient only
    offer       {offer_id, entry_id, doctor_id, start, end, expires_at, state}
                                                         a waitlisted patient only
    error       {ref, code, message}                     the connection stays open

Close codes: 1008 policy (message not JSON text), 1009 too big, 1011 internal error, 1012
restart, 1013 too slow, 4401 unauthenticated or expired, 4408 no auth in time, 4429 rate limited.

Every message of either direction is a TypedDict below with a Literal `type`; the AsyncAPI
document at /asyncapi.json is generated from them.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Literal, NotRequired, cast, get_args, get_type_hints

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from hub.availability import SlotState
from hub.errors import InvalidInput, fields_of

Id = Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)]
Ref = Annotated[str, Field(max_length=64)]
Text = Annotated[str, Field(max_length=64)]
HoldId = Annotated[str, Field(max_length=80)]
Instant = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
STRICT = ConfigDict(extra="forbid")
# The ASGI scope extension under which the server (hub.listener.Session) offers a session's
# `write_now(text) -> bool`: a frame sent at once, or refused with nothing sent.
WRITE_NOW = "hub.write_now"


class Close(enum.IntEnum):
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    RESTART = 1012
    TRY_AGAIN_LATER = 1013
    UNAUTHENTICATED = 4401
    AUTH_TIMEOUT = 4408
    RATE_LIMITED = 4429


# -- client -> server ----------------------------------------------------------------------


@with_config(STRICT)
class Auth(TypedDict):
    """Authenticate (first, within 5 s), or extend the session with a fresh token."""

    type: Literal["auth"]
    token: Annotated[str, Field(max_length=4096)]
    ref: NotRequired[Ref]


Watch = TypedDict(  # functional form: "from" is a Python keyword
    "Watch",
    {
        "type": Literal["watch"],
        "doctor_id": Id,
        "from": Text,
        "to": Text,
        "since": NotRequired[Annotated[int, Field(ge=0, strict=True)]],
        "ref": NotRequired[Ref],
    },
)
Watch.__doc__ = "Watch a doctor's slots from..to (dates or ISO times); with since, catch up."
setattr(Watch, "__pydantic_config__", STRICT)  # noqa: B010


@with_config(STRICT)
class Unwatch(TypedDict):
    """Stop the events of a doctor."""

    type: Literal["unwatch"]
    doctor_id: Id
    ref: NotRequired[Ref]


@with_config(STRICT)
class HoldCommand(TypedDict):
    """Hold a free slot while confirming."""

    type: Literal["hold"]
    doctor_id: Id
    start: Text
    appointment_id: NotRequired[Id]  # the appointment to move there (a reschedule)
    visit_type_id: NotRequired[Id]  # one of the doctor's visit types; default: their first
    ref: NotRequired[Ref]


@with_config(STRICT)
class Release(TypedDict):
    """Give a held slot back."""

    type: Literal["release"]
    hold_id: HoldId
    ref: NotRequired[Ref]


@with_config(STRICT)
class Book(TypedDict):
    """Book from a hold, or a slot directly."""

    type: Literal["book"]
    hold_id: NotRequired[HoldId]
    doctor_id: NotRequired[Id]
    patient_id: NotRequired[Id]  # the front desk, or a doctor in their calendar, books for
    start: NotRequired[Text]
    idempotency_key: NotRequired[Annotated[str, Field(min_length=1, max_length=100)]]
    visit_type_id: NotRequired[Id]  # one of the doctor's visit types; default: their first
    reason: NotRequired[Annotated[str, Field(max_length=200)]]  # for the doctor and desk
    ref: NotRequired[Ref]


@with_config(STRICT)
class Cancel(TypedDict):
    """Cancel an appointment."""

    type: Literal["cancel"]
    appointment_id: Id
    reason: NotRequired[Annotated[str, Field(max_length=500)]]
    ref: NotRequired[Ref]


@with_config(STRICT)
class Reschedule(TypedDict):
    """Move an appointment to a start or a held slot of the same doctor."""

    type: Literal["reschedule"]
    appointment_id: Id
    start: NotRequired[Text]
    hold_id: NotRequired[HoldId]
    visit_type_id: NotRequired[Id]  # another of the doctor's visit types; default: the same
    ref: NotRequired[Ref]


class WaitTime(TypedDict):
    start: Annotated[str, Field(max_length=5)]  # HH:MM
    end: Annotated[str, Field(max_length=5)]


JoinWaitlist = TypedDict(  # functional form: "from" is a Python keyword
    "JoinWaitlist",
    {
        "type": Literal["join_waitlist"],
        "doctor_id": Id,
        "from": Text,
        "to": Text,
        "visit_type_id": NotRequired[Id],
        "times": NotRequired[Annotated[list[WaitTime], Field(max_length=4)]],
        "urgent": NotRequired[bool],
        "patient_id": NotRequired[Id],
        "appointment_id": NotRequired[Id],
        "ref": NotRequired[Ref],
    },
)
JoinWaitlist.__doc__ = "Wait for a time with a doctor on local dates from..to (as POST /waitlist)."
setattr(JoinWaitlist, "__pydantic_config__", STRICT)  # noqa: B010


@with_config(STRICT)
class LeaveWaitlist(TypedDict):
    """Leave a waitlist."""

    type: Literal["leave_waitlist"]
    entry_id: Id
    ref: NotRequired[Ref]


@with_config(STRICT)
class AcceptOffer(TypedDict):
    """Accept a waitlist offer: book the slot it holds."""

    type: Literal["accept_offer"]
    offer_id: Id
    ref: NotRequired[Ref]


@with_config(STRICT)
class DeclineOffer(TypedDict):
    """Decline a waitlist offer: the slot goes to the next in line."""

    type: Literal["decline_offer"]
    offer_id: Id
    ref: NotRequired[Ref]


@with_config(STRICT)
class Ping(TypedDict):
    """Ask for a pong."""

    type: Literal["ping"]
    ref: NotRequired[Ref]


Command = (Auth | Watch | Unwatch | HoldCommand | Release | Book | Cancel | Reschedule | Ping) | (
    JoinWaitlist | LeaveWaitlist | AcceptOffer | DeclineOffer
)
COMMAND = TypeAdapter[Command](Annotated[Command, Field(discriminator="type")])


# -- server -> client ----------------------------------------------------------------------


class User(TypedDict):
    role: Literal["patient", "doctor", "admin", "staff"]
    id: int


class Person(TypedDict):
    id: int
    first_name: str
    last_name: str


class Appointment(TypedDict):
    """An appointment as the REST API shows it."""

    id: int
    doctor_id: int
    patient_id: int
    scheduled_datetime: Instant
    end_datetime: Instant
    status: Literal["scheduled", "completed", "cancelled", "no_show"]
    cancel_reason: str | None
    late_cancel: bool
    rescheduled_from_id: int | None
    doctor: Person
    patient: Person
    created_at: Instant
    updated_at: Instant
    outside_hours: bool | None
    visit_type_id: int | None
    reason: str | None  # only for the doctor, the front desk and admins


class SlotInfo(TypedDict):
    start: Instant
    end: Instant
    state: SlotState
    appointment_id: int | None
    patient_id: int | None


class Ready(TypedDict):
    """Authenticated: who you are and when the session's token expires."""

    type: Literal["ready"]
    user: User
    expires_at: Instant
    ref: NotRequired[Ref]


class Snapshot(TypedDict):
    """Every slot in the watched range and the doctor's version."""

    type: Literal["snapshot"]
    doctor_id: int
    version: int
    timezone: str
    slots: list[SlotInfo]
    ref: NotRequired[Ref]


class Resynced(TypedDict):
    """The missed slot events were sent; this is the version reached."""

    type: Literal["resynced"]
    doctor_id: int
    version: int
    ref: NotRequired[Ref]


class Unwatched(TypedDict):
    """No more events of that doctor."""

    type: Literal["unwatched"]
    doctor_id: int
    ref: NotRequired[Ref]


class Held(TypedDict):
    """The slot is held for you until expires_at."""

    type: Literal["held"]
    hold_id: str
    doctor_id: int
    start: Instant
    expires_at: Instant | None
    ref: NotRequired[Ref]


class Released(TypedDict):
    """The hold is released."""

    type: Literal["released"]
    hold_id: str
    ref: NotRequired[Ref]


class Booked(TypedDict):
    """Booked; replayed when an earlier command with the same idempotency key booked it."""

    type: Literal["booked"]
    appointment: Appointment
    replayed: bool
    ref: NotRequired[Ref]


class Cancelled(TypedDict):
    """Cancelled."""

    type: Literal["cancelled"]
    appointment: Appointment
    ref: NotRequired[Ref]


class Rescheduled(TypedDict):
    """Moved: the new appointment."""

    type: Literal["rescheduled"]
    appointment: Appointment
    ref: NotRequired[Ref]


class Offer(TypedDict):
    offer_id: int
    entry_id: int
    doctor_id: int
    start: Instant
    end: Instant
    expires_at: Instant
    state: str


WaitlistEntry = TypedDict(
    "WaitlistEntry",
    {
        "id": int,
        "doctor_id": int,
        "patient_id": int,
        "from": str,
        "to": str,
        "visit_type_id": int | None,
        "times": list[WaitTime],
        "urgent": bool,
        "status": Literal["waiting", "offered", "booked", "left", "ended"],
        "position": int | None,
        "appointment_id": int | None,
        "created_at": Instant,
        "offer": Offer | None,
    },
)
WaitlistEntry.__doc__ = "A waitlist entry as the REST API shows it (GET /waitlist/{id})."


class Waiting(TypedDict):
    type: Literal["waiting"]
    entry: WaitlistEntry
    ref: NotRequired[Ref]


Waiting.__doc__ = "On the waitlist: the entry, its place in line and any offer made at once."


class Left(TypedDict):
    """Off the waitlist."""

    type: Literal["left"]
    entry_id: int
    ref: NotRequired[Ref]


class Accepted(TypedDict):
    """The offer is booked: the appointment."""

    type: Literal["accepted"]
    offer_id: int
    appointment: Appointment
    ref: NotRequired[Ref]


class Declined(TypedDict):
    """The offer is declined and handed on."""

    type: Literal["declined"]
    offer_id: int
    ref: NotRequired[Ref]


class Pong(TypedDict):
    """The answer to ping."""

    type: Literal["pong"]
    ref: NotRequired[Ref]


class SlotEvent(TypedDict):
    """A slot of a watched doctor changed (no patient identity); versions rise by one,
    `collapsed` marks a state that replaced one you were not sent, and `committed_at` (when
    the committing process publishes it) says when the change committed."""

    type: Literal["slot"]
    doctor_id: int
    start: Instant
    state: SlotState
    version: int
    collapsed: NotRequired[bool]
    committed_at: NotRequired[Instant]  # when published right after its commit


class HoursEvent(TypedDict):
    """The doctor's hours changed (it takes a version like a slot event): watch again."""

    type: Literal["hours"]
    doctor_id: int
    version: int


AppointmentChange = Literal["booked", "cancelled", "rescheduled", "completed", "no_show"]


class AppointmentEvent(TypedDict):
    """One of your appointments changed (to its doctor and its patient only)."""

    type: Literal["appointment"]
    event: AppointmentChange
    appointment_id: int
    doctor_id: int
    patient_id: int
    patient_name: str
    start: Instant
    status: str
    late: NotRequired[bool]
    previous_id: NotRequired[int]
    by: NotRequired[str]  # who cancelled: patient, doctor, staff or admin
    reason: NotRequired[str]  # why, as they said it


class OfferEvent(TypedDict):
    """A freed slot is held for you from the doctor's waitlist until expires_at (`state`
    open); accept it or decline it. The same event with another state says it ended:
    accepted, declined, lapsed or withdrawn (you booked another time with the doctor)."""

    type: Literal["offer"]
    offer_id: int
    entry_id: int
    doctor_id: int
    start: Instant
    end: Instant
    expires_at: Instant
    state: Literal["open", "accepted", "declined", "lapsed", "withdrawn"]


class Error(TypedDict):
    """A command failed; the connection stays open."""

    type: Literal["error"]
    code: str
    message: str
    fields: NotRequired[list[dict[str, str]]]
    reason: NotRequired[str]
    ref: NotRequired[Ref]


Reply = (
    Ready | Snapshot | Resynced | Unwatched | Held | Released | Booked | Cancelled | Rescheduled
) | (Waiting | Left | Accepted | Declined | Pong | Error)
Event = SlotEvent | HoursEvent | AppointmentEvent | OfferEvent  # what travels on the bus
ServerMessage = Reply | Event
for _kind in (
    User,
    Person,
    Appointment,
    SlotInfo,
    WaitTime,
    Offer,
    WaitlistEntry,
    *get_args(ServerMessage),
):
    _kind.__pydantic_config__ = STRICT  # as with_config does
SERVER = TypeAdapter[ServerMessage](Annotated[ServerMessage, Field(discriminator="type")])


def _names(union: object) -> tuple[str, ...]:
    return tuple(str(get_args(get_type_hints(kind)["type"])[0]) for kind in get_args(union))


COMMANDS = _names(Command)
EVENTS = _names(ServerMessage)


def parse(text: str) -> Command:
    """One client frame as a validated command; InvalidInput naming the problem if not."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput("the message is not JSON") from exc
    if not isinstance(raw, dict):
        raise InvalidInput("the message must be a JSON object")
    try:
        return COMMAND.validate_python(raw)
    except ValidationError as exc:
        kind = raw.get("type")
        kind = kind[:20] if isinstance(kind, str) else "message"
        raise InvalidInput(f"invalid {kind} message", fields_of(exc, "message")) from exc


def dump(message: ServerMessage) -> str:
    return json.dumps(message, separators=(",", ":"))


def event(payload: object) -> Event:
    """A stored or published event: the hub wrote it (to the outbox, through Redis) from
    these types, so it is taken as one (the tests check every frame against `SERVER`)."""
    return cast(Event, payload)
