"""Signed links in messages: manage one appointment, verify an email address, reset a
password. Each is a JWT (HS256, the hub's key) whose audience names its one purpose, so none
of them is ever a login token and no login token is one of them; each carries a fingerprint
of what it acts on (the appointment's last change, the password hash), so it is refused once
used or once the thing changed, and it expires."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import jwt

from hub.config import Settings
from hub.errors import LinkGone

Purpose = Literal["manage", "verify", "reset"]
ALGORITHM = "HS256"
LIFETIME = {"manage": 90 * 86400, "verify": 7 * 86400, "reset": 3600}  # seconds
PAGE = {"manage": "#/manage", "verify": "#/verify", "reset": "#/reset"}


@dataclass(frozen=True, slots=True)
class Claim:
    subject: str  # "appointment:12", "patient:3"
    fingerprint: str


def fingerprint(*parts: object) -> str:
    """A short digest of what a link acts on, as it is now."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:24]


def changed_at(moment: datetime) -> int:
    """An appointment's last change as a link's fingerprint counts it (microseconds)."""
    return int(moment.timestamp() * 1_000_000)


class Links:
    def __init__(self, settings: Settings) -> None:
        self._key = settings.secret_key
        self._issuer = settings.token_issuer
        self._base = settings.public_url or f"http://{settings.host}:{settings.port}"

    def sign(self, purpose: Purpose, subject: str, print_: str, *, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "sub": subject,
            "fp": print_,
            "iat": issued,
            "exp": issued + LIFETIME[purpose],
            "iss": self._issuer,
            "aud": f"{self._issuer}:{purpose}",
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def read(self, purpose: Purpose, token: str) -> Claim:
        """What a link names; LinkGone when it is not one of ours for `purpose`, or expired."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=f"{self._issuer}:{purpose}",
                issuer=self._issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "fp"]},
            )
            return Claim(str(claims["sub"]), str(claims["fp"]))
        except jwt.ExpiredSignatureError as exc:
            raise LinkGone("this link has expired") from exc
        except (jwt.InvalidTokenError, KeyError, TypeError) as exc:
            raise LinkGone("this link is not valid") from exc

    def url(self, purpose: Purpose, token: str) -> str:
        """The page of the browser app that a link opens."""
        return f"{self._base}/{PAGE[purpose]}?token={token}"

    @property
    def base(self) -> str:
        return self._base


def manage_print(status: str, updated_at: datetime) -> str:
    """The fingerprint a manage link of an appointment carries: its status and last change.
    Any change (cancelled, moved, completed) makes every earlier link of it refused."""
    return fingerprint(status, changed_at(updated_at))
