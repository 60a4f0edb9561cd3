from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from hub import preferences
from hub.api.endpoint import Call, Endpoint
from hub.models import Doctor, Patient
from hub.schemas import Input, Output


class PreferencesIn(Input):
    """The kinds to turn on or off; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    booked: bool | None = None
    rescheduled: bool | None = None
    reminder: bool | None = None
    offer: bool | None = None


class PreferencesOut(Output):
    booked: bool
    rescheduled: bool
    reminder: bool
    offer: bool


def _handlers(model: type[Patient | Doctor]) -> tuple[Any, Any]:
    # One pair per kind of person, each with its own name (the OpenAPI operation ids).
    async def get_preferences(call: Call[None]) -> PreferencesOut:
        found = await preferences.read(
            call.hub.sessions, call.principal, model, call.path_int("id")
        )
        return PreferencesOut(**found)

    async def put_preferences(call: Call[PreferencesIn]) -> PreferencesOut:
        wanted = call.body.model_dump(exclude_none=True)
        found = await preferences.change(
            call.hub.sessions, call.principal, model, call.path_int("id"), wanted
        )
        return PreferencesOut(**found)

    noun = model.__tablename__[:-1]
    get_preferences.__name__ = f"get_{noun}_notifications"
    put_preferences.__name__ = f"put_{noun}_notifications"
    return get_preferences, put_preferences


ENDPOINTS: list[Endpoint[Any, Any]] = [
    endpoint
    for base, who, (get_preferences, put_preferences) in (
        ("/patients", "that patient", _handlers(Patient)),
        ("/doctors", "that doctor", _handlers(Doctor)),
    )
    for endpoint in (
        Endpoint(
            "GET",
            f"{base}/{{id:int}}/notifications",
            get_preferences,
            summary=f"Which notifications are sent ({who}, admins); all on by default",
            tag="notifications",
            response=PreferencesOut,
            errors=(401, 403, 404),
        ),
        Endpoint(
            "PUT",
            f"{base}/{{id:int}}/notifications",
            put_preferences,
            summary=f"Turn kinds of notification on or off ({who}, admins); a cancellation "
            "is always sent",
            tag="notifications",
            response=PreferencesOut,
            body=PreferencesIn,
            errors=(401, 403, 404, 422),
        ),
    )
]
