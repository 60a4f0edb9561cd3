from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.loadtest.plan import Check

CHUNK = 1000
DOUBLES = text(
    "SELECT doctor_id, start_at, COUNT(*) FROM appointments "
    "WHERE status <> 'cancelled' AND doctor_id IN :doctors "
    "GROUP BY doctor_id, start_at HAVING COUNT(*) > 1"
).bindparams(bindparam("doctors", expanding=True))
FOUND = text("SELECT COUNT(*) FROM appointments WHERE id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)


@dataclass(frozen=True, slots=True)
class Audit:
    """What the database holds after a run: starts of the run's doctors with more than one
    active appointment, and appointments the hub answered 201 (or 200 to a reschedule) for
    that are not rows."""

    doubles: list[tuple[int, str, int]]
    answered: int
    missing: int

    def checks(self) -> list[Check]:
        shown = ", ".join(f"doctor {d} at {s}: {n}" for d, s, n in self.doubles[:5])
        return [
            Check("no double booking in the database", not self.doubles, shown or "0"),
            Check(
                "every appointment answered is a row",
                self.missing == 0,
                f"{self.answered - self.missing} of {self.answered}",
            ),
        ]


async def audit(database_url: str, doctor_ids: list[int], appointment_ids: list[int]) -> Audit:
    """Count active appointments per doctor and start (at most one each) and look up every
    appointment id the hub answered with."""
    engine = create_async_engine(database_url)
    ids = sorted(set(appointment_ids))
    try:
        async with engine.connect() as conn:
            doubles = []
            if doctor_ids:
                rows = await conn.execute(DOUBLES, {"doctors": doctor_ids})
                doubles = [(int(d), str(s), int(n)) for d, s, n in rows]
            found = 0
            for n in range(0, len(ids), CHUNK):
                found += (await conn.execute(FOUND, {"ids": ids[n : n + CHUNK]})).scalar_one()
    finally:
        await engine.dispose()
    return Audit(doubles, len(ids), len(ids) - found)
