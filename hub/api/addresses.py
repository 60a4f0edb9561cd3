from __future__ import annotations

from typing import Any

from hub import addresses
from hub.api.endpoint import Call, Endpoint
from hub.auth import Role, require
from hub.links import Links
from hub.schemas import Accepted, ResetConfirm, ResetRequest, VerifyIn

# The one answer to a reset request, whether or not the address has an account.
RESET_SENT = (
    "If an account with this email address exists, a link to set a new password is on its "
    "way. It works once, within the hour."
)
LINK_SENT = "A new link to verify your email address is on its way."


def verifying(call: Call[Any]) -> addresses.Verify:
    """What the edge hands a service that sends a verification link."""
    return addresses.Verify(Links(call.hub.settings), call.hub.clock())


async def request_reset(call: Call[ResetRequest]) -> Accepted:
    hub, body = call.hub, call.body
    send = await hub.throttle.mail(call.address, f"{body.role.value}:{body.email}")
    await addresses.request_reset(
        hub.sessions, Links(hub.settings), body.role, body.email, hub.clock(), send=send
    )
    return Accepted(detail=RESET_SENT)


async def confirm_reset(call: Call[ResetConfirm]) -> None:
    hub, body = call.hub, call.body
    whose = await addresses.reset_password(
        hub.sessions, hub.passwords, Links(hub.settings), body.token, body.password, hub.clock()
    )
    hub.standings.forget(whose.role, whose.id)  # every session of the account ends now


async def verify_email(call: Call[VerifyIn]) -> None:
    hub = call.hub
    await addresses.verify_email(hub.sessions, Links(hub.settings), call.body.token, hub.clock())


async def send_verification(call: Call[None]) -> Accepted:
    caller = require(call.principal, Role.patient)
    await call.hub.throttle.mail(call.address, f"verify:patient:{caller.id}")
    sent = await addresses.send_verification(call.hub.sessions, caller, verifying(call))
    return Accepted(detail=LINK_SENT if sent else "Your email address is verified already.")


ENDPOINTS: list[Endpoint[Any, Any]] = [
    Endpoint(
        "POST",
        "/password-reset",
        request_reset,
        summary="Ask for a link to set a new password (single-use, valid for an hour), sent "
        "to the account's email; the same answer whether or not the address has an account",
        tag="auth",
        response=Accepted,
        body=ResetRequest,
        status=202,
        auth=False,
        errors=(422, 429),
    ),
    Endpoint(
        "POST",
        "/password-reset/confirm",
        confirm_reset,
        summary="Set a new password with a reset link's token: every session of the account "
        "ends, and its email counts as verified; 410 once used or expired",
        tag="auth",
        body=ResetConfirm,
        status=204,
        auth=False,
        errors=(410, 422, 503),
    ),
    Endpoint(
        "POST",
        "/verify",
        verify_email,
        summary="Verify an email address with a verification link's token; 410 when it is "
        "expired or the account's address changed since",
        tag="auth",
        body=VerifyIn,
        status=204,
        auth=False,
        errors=(410, 422),
    ),
    Endpoint(
        "POST",
        "/patients/me/verify-email",
        send_verification,
        summary="Send the signed-in patient a new link verifying their email address",
        tag="patients",
        response=Accepted,
        status=202,
        errors=(401, 403, 429),
    ),
]
