from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth import Principal, Role, require
from hub.constraints import duplicates, referenced
from hub.db import SessionFactory
from hub.errors import InUse, NameTaken, NotFound
from hub.models import Doctor, Specialization


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

    async def add(session: AsyncSession) -> Specialization:
        session.add(row)
        return row

    return await _named(sessions, name, None, add)


async def rename_specialization(
    sessions: SessionFactory, principal: Principal | None, sid: int, name: str
) -> Specialization:
    """Give a specialization another name (admins only); unique, whatever its case. Its
    doctors keep it."""
    require(principal, Role.admin)

    async def rename(session: AsyncSession) -> Specialization:
        row = await specialization(session, sid)
        row.name = name
        return row

    return await _named(sessions, name, sid, rename)


async def remove_specialization(
    sessions: SessionFactory, principal: Principal | None, sid: int
) -> None:
    """Delete a specialization no doctor has (admins only); InUse while one has it."""
    require(principal, Role.admin)
    in_use = InUse(f"specialization {sid} is in use by a doctor: move them to another first")
    try:
        async with sessions.begin() as session:
            # Locked: a doctor registering with it at the same moment waits, then finds it gone.
            row = await session.get(Specialization, sid, with_for_update=True)
            if row is None:
                raise missing(sid)
            used = select(Doctor.id).where(Doctor.specialization_id == sid).limit(1)
            if await session.scalar(used) is not None:
                raise in_use
            await session.delete(row)
    except IntegrityError as exc:
        if referenced(exc):  # a doctor's row written before the lock, committed since
            raise in_use from exc
        raise


Write = Callable[[AsyncSession], Awaitable[Specialization]]


async def _named(
    sessions: SessionFactory, name: str, besides: int | None, write: Write
) -> Specialization:
    # The one place a name is checked as unique, with the UNIQUE key as the last word.
    taken = NameTaken(f"specialization {name!r} already exists")
    try:
        async with sessions.begin() as session:
            same = func.lower(Specialization.name) == name.lower()
            if besides is not None:
                same = same & (Specialization.id != besides)
            if await session.scalar(select(Specialization.id).where(same)) is not None:
                raise taken
            row = await write(session)
    except IntegrityError as exc:
        if duplicates(exc, Specialization.__tablename__, "name"):
            raise taken from exc
        raise
    return row
