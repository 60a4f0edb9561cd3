from __future__ import annotations

from typing import Any

from starlette.responses import Response

from hub import feeds
from hub.api.endpoint import Call, Endpoint, request_id
from hub.auth import Role
from hub.schemas import FeedIn, FeedOut

CALENDAR = "text/calendar; charset=utf-8"
# A feed is personal and a calendar app polls it: no shared cache keeps a copy.
PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


def _out(feed: feeds.FeedUrl) -> FeedOut:
    return FeedOut(url=feed.url, webcal=feed.webcal)


async def patient_feed_on(call: Call[None]) -> FeedOut:
    hub = call.hub
    return _out(
        await feeds.turn_on(
            hub.sessions, hub.settings, call.principal, Role.patient, call.path_int("id")
        )
    )


async def doctor_feed_on(call: Call[FeedIn]) -> FeedOut:
    hub = call.hub
    return _out(
        await feeds.turn_on(
            hub.sessions,
            hub.settings,
            call.principal,
            Role.doctor,
            call.path_int("id"),
            call.body.names,
        )
    )


async def patient_feed_off(call: Call[None]) -> None:
    await feeds.turn_off(call.hub.sessions, call.principal, Role.patient, call.path_int("id"))


async def doctor_feed_off(call: Call[None]) -> None:
    await feeds.turn_off(call.hub.sessions, call.principal, Role.doctor, call.path_int("id"))


async def read_feed(call: Call[None]) -> Response:
    hub, request = call.hub, call.request
    found = await feeds.read(hub.sessions, hub.settings, request.path_params["secret"], hub.clock())
    # Audited here, not by the endpoint: the path holds the secret, the trail holds the owner.
    hub.audit.note(call.principal, "feed.read", found.owner, "ok", "rest", request_id(request))
    return Response(found.body, media_type=CALENDAR, headers=PRIVATE)


async def appointment_invite(call: Call[None]) -> Response:
    appointment_id = call.path_int("id")
    _method, body = await feeds.invite(
        call.hub.sessions, call.hub.settings, call.principal, appointment_id
    )
    disposition = f'attachment; filename="appointment-{appointment_id}.ics"'
    headers = {"Content-Disposition": disposition, "Cache-Control": "no-store"}
    return Response(body, media_type=CALENDAR, headers=headers)


ENDPOINTS: list[Endpoint[Any, Any]] = [
    Endpoint(
        "POST",
        "/patients/{id:int}/calendar-feed",
        patient_feed_on,
        summary="A new secret calendar feed URL of a patient (the patient, admins); the old "
        "one stops working",
        tag="calendar feeds",
        response=FeedOut,
        errors=(401, 403, 404),
        audit=("feed.create", "patient:{id}"),
    ),
    Endpoint(
        "DELETE",
        "/patients/{id:int}/calendar-feed",
        patient_feed_off,
        summary="Revoke a patient's calendar feed (the patient, admins): its URL answers 404",
        tag="calendar feeds",
        status=204,
        errors=(401, 403, 404),
        audit=("feed.revoke", "patient:{id}"),
    ),
    Endpoint(
        "POST",
        "/doctors/{id:int}/calendar-feed",
        doctor_feed_on,
        summary="A new secret calendar feed URL of a doctor (the doctor, admins); the old one "
        "stops working. `names`: patients by name instead of initials",
        tag="calendar feeds",
        response=FeedOut,
        body=FeedIn,
        body_required=False,
        errors=(401, 403, 404, 422),
        audit=("feed.create", "doctor:{id}"),
    ),
    Endpoint(
        "DELETE",
        "/doctors/{id:int}/calendar-feed",
        doctor_feed_off,
        summary="Revoke a doctor's calendar feed (the doctor, admins): its URL answers 404",
        tag="calendar feeds",
        status=204,
        errors=(401, 403, 404),
        audit=("feed.revoke", "doctor:{id}"),
    ),
    Endpoint(
        "GET",
        "/feeds/{secret}.ics",
        read_feed,
        summary="A calendar feed (anyone holding its secret URL): the appointments of the last "
        "30 days and ahead, a cancelled one as CANCELLED for 30 days",
        tag="calendar feeds",
        response=str,
        media=CALENDAR,
        auth=False,
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/appointments/{id:int}/invite.ics",
        appointment_invite,
        summary="An appointment's calendar invite (its patient, its doctor, the front desk, "
        "admins): METHOD:REQUEST, or CANCEL once cancelled",
        tag="calendar feeds",
        response=str,
        media=CALENDAR,
        errors=(401, 403, 404),
        audit=("appointment.invite", "appointment:{id}"),
    ),
]
