"""Sign-ins that outlive the hour: a rotating refresh token beside the short access token.

A sign-in starts a *family*. Its refresh token travels in an HttpOnly, SameSite=Strict cookie
(the edge sets it; page scripts never see it), so every tab of the browser shares the sign-in,
and a page keeps working past its access token's hour. Each use of a refresh token retires it
and gives the next one of the family. A retired token used again, past `GRACE` seconds (two
tabs renewing at once), means it was copied: the whole family ends. A sign-out everywhere, a
deactivation or a password change raise the account's epoch, which ends every family of the
account too (a family remembers the epoch it began in).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth import Principal, Role, Token, Tokens
from hub.clock import Clock
from hub.db import SessionFactory
from hub.errors import Unauthenticated
from hub.models import RefreshToken
from hub.standing import Standings

GRACE = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class Renewed:
    principal: Principal
    access: Token
    refresh: str  # the next refresh token, for the cookie


class Renewals:
    def __init__(
        self,
        sessions: SessionFactory,
        tokens: Tokens,
        standings: Standings,
        clock: Clock,
        lifetime: timedelta,
    ) -> None:
        self._sessions = sessions
        self._tokens = tokens
        self._standings = standings
        self._clock = clock
        self.lifetime = lifetime

    async def start(self, principal: Principal) -> str:
        """A new family for a fresh sign-in; its first refresh token."""
        async with self._sessions.begin() as session:
            return self._next(session, principal, secrets.token_hex(16))

    async def renew(self, refresh: str) -> Renewed:
        """An access token and the next refresh token for this one; Unauthenticated if it is
        unknown, expired, ended, or used before (which ends its family)."""
        now = self._clock()
        async with self._sessions.begin() as session:
            query = select(RefreshToken).where(RefreshToken.token_hash == _hash(refresh))
            row = await session.scalar(query.with_for_update())
            if row is None or row.revoked or row.expires_at <= now:
                raise Unauthenticated("no sign-in to renew: sign in again")
            if row.used_at is not None and now - row.used_at > GRACE:
                await session.execute(
                    update(RefreshToken)
                    .where(RefreshToken.family == row.family)
                    .values(revoked=True)
                )
                reused = True
            else:
                reused = False
                principal = Principal(Role(row.role), row.account_id, row.epoch)
                row.used_at = row.used_at or now
                next_refresh = self._next(session, principal, row.family)
        if reused:  # committed: the family stays ended
            raise Unauthenticated("this sign-in was used twice and has ended: sign in again")
        principal = await self._standings.ensure(principal)  # deactivated, signed out: refused
        return Renewed(principal, self._tokens.issue(principal), next_refresh)

    async def end(self, refresh: str) -> None:
        """Sign out here: the family of this refresh token ends."""
        async with self._sessions.begin() as session:
            family = await session.scalar(
                select(RefreshToken.family).where(RefreshToken.token_hash == _hash(refresh))
            )
            if family is not None:
                await session.execute(
                    update(RefreshToken).where(RefreshToken.family == family).values(revoked=True)
                )

    def _next(self, session: AsyncSession, principal: Principal, family: str) -> str:
        value = secrets.token_urlsafe(32)
        now = self._clock()
        row = RefreshToken(
            family=family,
            role=principal.role.value,
            account_id=principal.id,
            epoch=principal.epoch,
            token_hash=_hash(value),
            issued_at=now,
            expires_at=now + self.lifetime,
            revoked=False,
        )
        session.add(row)
        return value


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
