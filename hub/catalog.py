from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from hub.auth import Principal, Role, require
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
        found = await session.get(Specialization, sid)
    if found is None:
        raise NotFound(f"specialization {sid} not found")
    return found


async def add_specialization(
    sessions: SessionFactory, principal: Principal | None, name: str
) -> Specialization:
    """A new specialization (admins only); names are unique."""
    require(principal, Role.admin)
    row = Specialization(name=name)
    try:
        async with sessions.begin() as session:
            same = func.lower(Specialization.name) == name.lower()
            if await session.scalar(select(Specialization.id).where(same)) is not None:
                raise NameTaken(f"specialization {name!r} already exists")
            session.add(row)
    except IntegrityError as exc:
        raise NameTaken(f"specialization {name!r} already exists") from exc
    return row
