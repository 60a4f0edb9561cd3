"""Verified email addresses and password reset: both are links sent to the address, and
following one proves the person reads it.

A verification link's fingerprint is the address itself, so a link to an address the account
no longer has is refused. A reset link's fingerprint is the password hash and the session
epoch, so it works once: the password it sets (and the epoch it raises) refuse it after.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from hub import notices
from hub.auth import Passwords, Principal, Role, require
from hub.db import SessionFactory
from hub.errors import LinkGone
from hub.links import Links, fingerprint
from hub.models import Admin, Doctor, Notice, Patient, Staff

TABLES: dict[Role, type[Patient] | type[Doctor] | type[Admin] | type[Staff]] = {
    Role.patient: Patient,
    Role.doctor: Doctor,
    Role.admin: Admin,
    Role.staff: Staff,
}
# What an unknown address's reset signs instead, so that both answers cost the same.
_NOBODY = ("no account", -1)


def verify_print(email: str) -> str:
    """The fingerprint of a verification link: the address it was sent to."""
    return fingerprint("verify", email.lower())


def reset_print(password_hash: str, epoch: int) -> str:
    """The fingerprint of a reset link: the password and sessions it replaces."""
    return fingerprint("reset", password_hash, epoch)


@dataclass(frozen=True, slots=True)
class Verify:
    """What writing a verification link takes: the key links are signed with, and now."""

    links: Links
    now: datetime

    def notice(self, role: Role, account_id: int, email: str) -> dict[str, object]:
        """The notification row that sends the account a link verifying `email`."""
        token = self.links.sign(
            "verify", _subject(role, account_id), verify_print(email), now=self.now.timestamp()
        )
        return notices.rows(
            Notice.verify, role.value, account_id, self.now, payload={"token": token}
        )


async def request_reset(
    sessions: SessionFactory, links: Links, role: Role, email: str, now: datetime, *, send: bool
) -> None:
    """Send a reset link to the active account of `role` with `email`, if there is one (and
    `send`: the throttle may say the address had enough). An unknown address does the same
    work (the same query, a token signed) and writes nothing: nobody learns which it was."""
    table = TABLES[role]
    query = select(table.id, table.password_hash, table.session_epoch, table.active).where(
        table.email == email.lower()
    )
    async with sessions.begin() as session:
        found = (await session.execute(query)).first()
        account_id, print_ = 0, reset_print(*_NOBODY)
        if found is not None:
            account_id, print_ = found.id, reset_print(found.password_hash, found.session_epoch)
        token = links.sign("reset", _subject(role, account_id), print_, now=now.timestamp())
        if found is not None and found.active and send:
            row = notices.rows(Notice.reset, role.value, found.id, now, payload={"token": token})
            await notices.write(session, [row])


async def reset_password(
    sessions: SessionFactory,
    passwords: Passwords,
    links: Links,
    token: str,
    password: str,
    now: datetime,
) -> Principal:
    """Set a new password through a reset link: every session of the account ends, and its
    email counts as verified. LinkGone when the link is not valid, expired or used. Returns
    whose password it was."""
    claim = links.read("reset", token)
    role, account_id = _parse(claim.subject)
    table = TABLES[role]
    current = select(table.password_hash, table.session_epoch).where(table.id == account_id)
    async with sessions() as session:
        before = (await session.execute(current)).first()
    if before is None or reset_print(*before) != claim.fingerprint:
        raise _used()
    hashed = await passwords.hash(password)  # no connection held while argon2 runs
    async with sessions.begin() as session:
        row: Patient | Doctor | Admin | Staff | None = await session.get(
            table, account_id, with_for_update=True
        )
        # Checked again under the lock: of two uses at once, the second finds it changed.
        if row is None or not row.active:
            raise _used()
        if reset_print(row.password_hash, row.session_epoch) != claim.fingerprint:
            raise _used()
        row.password_hash = hashed
        row.session_epoch += 1
        if isinstance(row, Patient | Doctor) and row.email_verified_at is None:
            row.email_verified_at = now
        return Principal(role, account_id, row.session_epoch)


async def verify_email(sessions: SessionFactory, links: Links, token: str, now: datetime) -> None:
    """Mark the address a verification link was sent to as verified (again: no harm).
    LinkGone when the link is not valid, expired, or the account's address changed since."""
    claim = links.read("verify", token)
    role, account_id = _parse(claim.subject)
    if role not in (Role.patient, Role.doctor):
        raise _used()
    table = Patient if role is Role.patient else Doctor
    async with sessions.begin() as session:
        row: Patient | Doctor | None = await session.get(table, account_id, with_for_update=True)
        if row is None or not row.active or verify_print(row.email) != claim.fingerprint:
            raise LinkGone("this link is for an address the account no longer has")
        if row.email_verified_at is None:
            row.email_verified_at = now


async def send_verification(
    sessions: SessionFactory, principal: Principal | None, verify: Verify
) -> bool:
    """A new verification link for the signed-in patient; False (nothing sent) when their
    address is verified already."""
    caller = require(principal, Role.patient)
    async with sessions.begin() as session:
        row = await session.get(Patient, caller.id)
        if row is None or row.email_verified_at is not None:
            return False
        await notices.write(session, [verify.notice(Role.patient, row.id, row.email)])
    return True


def _subject(role: Role, account_id: int) -> str:
    return f"{role.value}:{account_id}"


def _parse(subject: str) -> tuple[Role, int]:
    name, _, number = subject.partition(":")
    try:
        return Role(name), int(number)
    except ValueError as exc:
        raise LinkGone("this link is not valid") from exc


def _used() -> LinkGone:
    return LinkGone("this link was used already or is no longer valid")
