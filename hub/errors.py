"""The hub's one exception tree.

Services raise these; only the edges translate them. Each class carries a stable
`code` (the `error` field of every JSON error body and WebSocket `error` event) and
the HTTP status the REST edge answers with.

    HubError                       500 internal
    ├── ConfigError                    (start-up only: the hub refuses to start)
    ├── InvalidInput               422 invalid            (+ `fields`)
    │   ├── NotOffered             422 not_offered        (+ `reason`)
    │   └── IdempotencyMismatch    422 idempotency_mismatch
    ├── Unauthenticated            401 unauthenticated
    │   └── InvalidCredentials     401 invalid_credentials
    ├── Forbidden                  403 forbidden
    │   ├── FrontDeskOnly          403 front_desk_only
    │   └── UnverifiedEmail        403 unverified_email   (HUB_REQUIRE_VERIFIED_EMAIL)
    ├── NotFound                   404 not_found
    ├── Conflict                   409 conflict
    │   ├── EmailTaken             409 email_taken
    │   ├── NameTaken              409 name_taken
    │   ├── InUse                  409 in_use
    │   ├── SlotTaken              409 slot_taken
    │   ├── PatientBusy            409 patient_busy
    │   ├── AlreadyBooked          409 already_booked
    │   ├── HoldExpired            409 hold_expired
    │   ├── TooManyHolds           409 too_many_holds
    │   │   └── TooManyAddressHolds 409 too_many_address_holds
    │   ├── TooLate                409 too_late
    │   ├── InvalidTransition      409 invalid_transition
    │   ├── AlreadyWaiting         409 already_waiting
    │   └── OfferGone              409 offer_gone
    ├── LinkGone                   410 link_gone          (a used, changed or expired link)
    ├── PayloadTooLarge            413 payload_too_large
    ├── TooManyAttempts            429 too_many_attempts  (+ `retry_after`)
    └── Unavailable                503 unavailable
        ├── HoldsUnavailable       503 holds_unavailable
        └── Overloaded             503 overloaded         (+ `retry_after`)

An error with `retry_after` (seconds) is answered with a `Retry-After` header over REST.
On a WebSocket the same code travels in an `error` event and the connection stays open.
Services name concepts in `fields` (`start`, `hold_id`); `problem()` gives each edge the facts
of an error with the field names it speaks, and the edge only shapes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from pydantic import ValidationError
from pydantic_core import ErrorDetails


class HubError(Exception):
    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    retry_after: int | None = None

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code


class ConfigError(HubError):
    code = "config"


class InvalidInput(HubError):
    code = "invalid"
    status = 422

    def __init__(self, detail: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.fields = fields or []


class NotOffered(InvalidInput):
    code = "not_offered"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail, [{"field": "start", "message": detail}])
        self.reason = reason


class IdempotencyMismatch(InvalidInput):
    code = "idempotency_mismatch"

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was used with another request",
            [{"field": "Idempotency-Key", "message": "reused with a different body"}],
        )


class Unauthenticated(HubError):
    code = "unauthenticated"
    status = 401


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"


class Forbidden(HubError):
    code = "forbidden"
    status = 403


class FrontDeskOnly(Forbidden):
    code = "front_desk_only"  # a visit type patients cannot book online


class UnverifiedEmail(Forbidden):
    code = "unverified_email"  # a patient books once their address is verified


class NotFound(HubError):
    code = "not_found"
    status = 404


class Conflict(HubError):
    code = "conflict"
    status = 409


class EmailTaken(Conflict):
    code = "email_taken"


class NameTaken(Conflict):
    code = "name_taken"


class InUse(Conflict):
    code = "in_use"


class SlotTaken(Conflict):
    code = "slot_taken"


class PatientBusy(Conflict):
    code = "patient_busy"


class AlreadyBooked(Conflict):
    code = "already_booked"


class HoldExpired(Conflict):
    code = "hold_expired"


class TooManyHolds(Conflict):
    code = "too_many_holds"


class TooManyAddressHolds(TooManyHolds):
    code = "too_many_address_holds"


class TooLate(Conflict):
    code = "too_late"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class AlreadyWaiting(Conflict):
    code = "already_waiting"


class OfferGone(Conflict):
    code = "offer_gone"


class LinkGone(HubError):
    code = "link_gone"
    status = 410


class Unavailable(HubError):
    code = "unavailable"
    status = 503
    retry_after = 2  # seconds: the database or Redis is away, the hub comes back by itself


class HoldsUnavailable(Unavailable):
    code = "holds_unavailable"


class Overloaded(Unavailable):
    code = "overloaded"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PayloadTooLarge(HubError):
    code = "payload_too_large"
    status = 413


class TooManyAttempts(HubError):
    code = "too_many_attempts"
    status = 429

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Problem:
    """What an edge tells a client about an error: the stable code, the HTTP status, a
    message, the fields at fault (named as that edge names them) and, for not_offered, why."""

    code: str
    status: int
    detail: str
    fields: list[dict[str, str]] | None = None
    reason: str | None = None


def problem(exc: HubError, names: Mapping[str, str] | None = None) -> Problem:
    """The facts of `exc` for an edge that calls the concepts in `names` by other names."""
    fields = None
    if isinstance(exc, InvalidInput):
        rename = names or {}
        fields = [{**f, "field": rename.get(f["field"], f["field"])} for f in exc.fields]
    reason = exc.reason if isinstance(exc, NotOffered) else None
    return Problem(exc.code, exc.status, exc.detail, fields, reason)


def fields_of(exc: ValidationError, root: str) -> list[dict[str, str]]:
    """Each problem pydantic found, as `{field, message}` (the dotted location, or `root`),
    the message in plain words: never a pattern, a type's name or a field path."""
    return [
        {"field": ".".join(str(p) for p in error["loc"]) or root, "message": _plain(error)}
        for error in exc.errors(include_url=False, include_input=False)
    ]


# What a field's pattern asks for, in words (a pattern itself tells a reader nothing).
SHAPES = {
    "phone": "Use digits, spaces and + ( ) . / -, 5 to 20 characters",
    "hold_id": "Not a hold this hub gave out",
    "date_of_birth": "Write the date as YYYY-MM-DD",
}
# pydantic's error types whose own words name no type, pattern or path, and what to say for
# the ones that would; anything else is said generically.
WORDS = {
    "missing": "Required",
    "extra_forbidden": "Not a field this request takes",
    "string_type": "Must be text",
    "bool_type": "Must be true or false",
    "bool_parsing": "Must be true or false",
    "int_type": "Must be a whole number",
    "int_parsing": "Must be a whole number",
    "int_from_float": "Must be a whole number",
    "float_type": "Must be a number",
    "list_type": "Must be a list",
    "dict_type": "Must be an object",
    "model_type": "Must be an object",
    "model_attributes_type": "Must be an object",
    "typed_dict_type": "Must be an object",
    "none_required": "Must be empty",
}
PLAIN_AS_IS = {"enum", "literal_error", "greater_than_equal", "less_than_equal", "greater_than"}
PLAIN_AS_IS |= {"less_than", "too_short", "too_long"}


def _plain(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    names = [part for part in error["loc"] if isinstance(part, str)]
    name = names[-1] if names else ""
    if kind == "string_pattern_mismatch":
        return SHAPES.get(name, "Not in the expected form")
    if kind == "string_too_short":
        least = int(ctx.get("min_length", 1))
        return "Required" if least <= 1 else f"At least {least} characters"
    if kind == "string_too_long":
        return f"At most {ctx.get('max_length')} characters"
    if kind in ("value_error", "assertion_error"):
        said = str(error["msg"]).split(", ", 1)[-1]  # without "Value error, "
        return said.removeprefix("value is not a valid email address: ")
    if kind in WORDS:
        return WORDS[kind]
    if kind.startswith("datetime") or kind == "timezone_aware":
        return "Write a time with its offset, such as 2030-01-07T10:00:00Z"
    if kind.startswith("date"):
        return "Write the date as YYYY-MM-DD"
    if kind.startswith("time"):
        return "Write the time as HH:MM"
    if kind in PLAIN_AS_IS:
        return str(error["msg"]).replace("Input should", "Should")
    return "Not a valid value"
