"""Which notifications a person wants: each kind on unless they turned it off. A
cancellation and the verification and reset links are always sent."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from hub import access
from hub.auth import Principal, require
from hub.db import SessionFactory
from hub.errors import NotFound
from hub.models import Doctor, Notice, Patient

KINDS = (Notice.booked, Notice.rescheduled, Notice.reminder, Notice.offer)


def of(stored: dict[str, bool] | None) -> dict[str, bool]:
    """Every kind a person may turn off, with its setting."""
    return {kind.value: (stored or {}).get(kind.value, True) for kind in KINDS}


async def _person(
    session: AsyncSession, model: type[Patient | Doctor], id_: int
) -> Patient | Doctor:
    person: Patient | Doctor | None = await session.get(model, id_)
    if person is None:
        raise NotFound(f"{model.__tablename__[:-1]} {id_} not found")
    return person


def _allowed(caller: Principal, model: type[Patient | Doctor], id_: int) -> bool:
    if model is Patient:
        return access.manages_patient(caller, id_)
    return access.manages_doctor(caller, id_)


async def read(
    sessions: SessionFactory, principal: Principal | None, model: type[Patient | Doctor], id_: int
) -> dict[str, bool]:
    """A person's preferences: that person, admins."""
    access.ensure(_allowed(require(principal), model, id_), "only they and admins")
    async with sessions() as session:
        return of((await _person(session, model, id_)).notify)


async def change(
    sessions: SessionFactory,
    principal: Principal | None,
    model: type[Patient | Doctor],
    id_: int,
    wanted: dict[str, bool],
) -> dict[str, bool]:
    """Turn kinds on or off (the ones named; the others stay as they are)."""
    access.ensure(_allowed(require(principal), model, id_), "only they and admins")
    async with sessions.begin() as session:
        person = await _person(session, model, id_)
        person.notify = {**of(person.notify), **wanted}
        return of(person.notify)
