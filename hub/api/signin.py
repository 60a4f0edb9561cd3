"""Sign-ins that outlive the access token: the refresh cookie (see `hub/renewal.py`)."""

from __future__ import annotations

from typing import Any

from hub.api.endpoint import Call, Endpoint
from hub.auth import Principal
from hub.errors import Unauthenticated
from hub.schemas import SessionOut

COOKIE = "hub_refresh"
PATH = "/auth"  # the browser sends the cookie to these routes only


def remember(call: Call[Any], refresh: str) -> None:
    """Set the refresh cookie on this answer: HttpOnly (no script reads it), SameSite=Strict
    (no other site's page sends it), Secure over HTTPS."""
    call.cookies.append(
        {
            "key": COOKIE,
            "value": refresh,
            "max_age": int(call.hub.renewals.lifetime.total_seconds()),
            "path": PATH,
            "httponly": True,
            "samesite": "strict",
            "secure": call.request.url.scheme == "https",
        }
    )


def forget(call: Call[Any]) -> None:
    call.cookies.append({"key": COOKIE, "value": "", "max_age": 0, "path": PATH, "httponly": True})


async def start(call: Call[Any], principal: Principal) -> None:
    """A fresh sign-in: a new family, its first refresh token in the cookie."""
    remember(call, await call.hub.renewals.start(principal))


async def refresh(call: Call[None]) -> SessionOut:
    value = call.request.cookies.get(COOKIE)
    if not value:
        raise Unauthenticated("no sign-in to renew: sign in again")
    try:
        renewed = await call.hub.renewals.renew(value)
    except Unauthenticated:
        forget(call)
        raise
    remember(call, renewed.refresh)
    access = renewed.access
    return SessionOut(
        access_token=access.access_token,
        expires_in=access.expires_in,
        role=renewed.principal.role.value,
        id=renewed.principal.id,
    )


async def sign_out(call: Call[None]) -> None:
    value = call.request.cookies.get(COOKIE)
    if value:
        await call.hub.renewals.end(value)
    forget(call)


ENDPOINTS: list[Endpoint[Any, Any]] = [
    Endpoint(
        "POST",
        "/auth/refresh",
        refresh,
        summary="A new access token from the sign-in's refresh cookie (set by every login), "
        "and the next refresh cookie; a refresh token used twice ends its sign-in",
        tag="auth",
        response=SessionOut,
        auth=False,
        errors=(401,),
    ),
    Endpoint(
        "POST",
        "/auth/sign-out",
        sign_out,
        summary="Sign out in this browser: its refresh cookie ends",
        tag="auth",
        status=204,
        auth=False,
    ),
]
