from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth import Principal, Role, require
from hub.constraints import duplicates
from hub.db import SessionFactory
from hub.errors import NameTaken, NotFound
from hub.models import Specialization


async def list_specializations(sessions: SessionFactory) -> Sequence[Specialization]:
    """Every specialization, by name."""
    async with sessions() as session:
        return (await session.scalars(select(Specialization).order_by(Specialization.name))).all()


async def get_specialization(sessions: SessionFactory, sid: int) -> Specialization:
    """One specialization."""
    async with sessions() as session:
        return await specialization(session, sid)


async def specialization(session: AsyncSession, sid: int) -> Specialization:
    """The specialization `sid`, read in `session`; NotFound when there is none."""
    found = await session.get(Specialization, sid)
    if found is None:
        raise missing(sid)
    return found


def missing(sid: int) -> NotFound:
    """The refusal for a specialization that does not exist."""
    return NotFound(f"specialization {sid} not found")


async def add_specialization(
    sessions: SessionFactory, principal: Principal | None, name: str
) -> Specialization:
    """A new specialization (admins only); names are unique, whatever their case."""
    require(principal, Role.admin)
    row = Specialization(name=name)
    taken = NameTaken(f"specialization {name!r} already exists")
    try:
        async with sessions.begin() as session:
            same = func.lower(Specialization.name) == name.lower()
            if await session.scalar(select(Specialization.id).where(same)) is not None:
                raise taken
            session.add(row)
    except IntegrityError as exc:
        if duplicates(exc, Specialization.__tablename__, "name"):
            raise taken from exc
        raise
    return row
