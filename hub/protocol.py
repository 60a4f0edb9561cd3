"""The WebSocket wire format: JSON text frames on /ws, one object per frame with a `type`.

Client -> server (each may carry a `ref`, echoed in its reply):
    auth        {token}                                  -> ready | close 4401
    watch       {doctor_id, from, to, since?}            -> snapshot | missed events + resynced
    unwatch     {doctor_id}                              -> unwatched
    hold        {doctor_id, start}                       -> held
    release     {hold_id}                                -> released
    book        {hold_id} | {doctor_id, start}, idempotency_key?  -> booked
    cancel      {appointment_id, reason?}                -> cancelled
    reschedule  {appointment_id, start | hold_id}        -> rescheduled
    ping        {}                                       -> pong

Server -> client, unasked:
    slot        {doctor_id, start, state, version}       every watcher of that doctor
    hours       {doctor_id, version}                     the doctor's hours changed: watch again
    appointment {event, appointment_id, doctor_id, patient_id, patient_name, start, status}
                                                         that doctor and that patient only
    error       {ref, code, message}                     the connection stays open

Close codes: 1008 policy (message not JSON text), 1009 too big, 1012 restart, 1013 too slow,
4401 unauthenticated or expired, 4408 no auth in time, 4429 rate limited.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from hub.errors import InvalidInput

Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
Ref = Annotated[str, Field(max_length=64)]
Text = Annotated[str, Field(max_length=64)]
STRICT = ConfigDict(extra="forbid")


class Close(enum.IntEnum):
    POLICY = 1008
    TOO_BIG = 1009
    RESTART = 1012
    TRY_AGAIN_LATER = 1013
    UNAUTHENTICATED = 4401
    AUTH_TIMEOUT = 4408
    RATE_LIMITED = 4429


@with_config(STRICT)
class Auth(TypedDict):
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
        "since": NotRequired[Annotated[int, Field(ge=0)]],
        "ref": NotRequired[Ref],
    },
)
setattr(Watch, "__pydantic_config__", STRICT)  # noqa: B010


@with_config(STRICT)
class Unwatch(TypedDict):
    type: Literal["unwatch"]
    doctor_id: Id
    ref: NotRequired[Ref]


@with_config(STRICT)
class HoldCommand(TypedDict):
    type: Literal["hold"]
    doctor_id: Id
    start: Text
    ref: NotRequired[Ref]


@with_config(STRICT)
class Release(TypedDict):
    type: Literal["release"]
    hold_id: Annotated[str, Field(max_length=80)]
    ref: NotRequired[Ref]


@with_config(STRICT)
class Book(TypedDict):
    type: Literal["book"]
    hold_id: NotRequired[Annotated[str, Field(max_length=80)]]
    doctor_id: NotRequired[Id]
    start: NotRequired[Text]
    idempotency_key: NotRequired[Annotated[str, Field(min_length=1, max_length=100)]]
    ref: NotRequired[Ref]


@with_config(STRICT)
class Cancel(TypedDict):
    type: Literal["cancel"]
    appointment_id: Id
    reason: NotRequired[Annotated[str, Field(max_length=500)]]
    ref: NotRequired[Ref]


@with_config(STRICT)
class Reschedule(TypedDict):
    type: Literal["reschedule"]
    appointment_id: Id
    start: NotRequired[Text]
    hold_id: NotRequired[Annotated[str, Field(max_length=80)]]
    ref: NotRequired[Ref]


@with_config(STRICT)
class Ping(TypedDict):
    type: Literal["ping"]
    ref: NotRequired[Ref]


Command = Annotated[
    Auth | Watch | Unwatch | HoldCommand | Release | Book | Cancel | Reschedule | Ping,
    Field(discriminator="type"),
]
COMMAND = TypeAdapter[Any](Command)
COMMANDS = ("auth", "watch", "unwatch", "hold", "release", "book", "cancel", "reschedule", "ping")
EVENTS = (
    "ready",
    "snapshot",
    "resynced",
    "unwatched",
    "held",
    "released",
    "booked",
    "cancelled",
    "rescheduled",
    "pong",
    "slot",
    "hours",
    "appointment",
    "error",
)


def parse(text: str) -> dict[str, Any]:
    """One client frame as a validated command; InvalidInput naming the problem if not."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidInput("the message is not JSON") from exc
    if not isinstance(raw, dict):
        raise InvalidInput("the message must be a JSON object")
    try:
        return dict(COMMAND.validate_python(raw))
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]) or "message", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidInput(f"invalid {raw.get('type', 'message')!s:.20} message", fields) from exc


def dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
