"""The booking path's clash query reads ranges of indexes, never the whole appointments table:
with an OR across its rules it examined every appointment there is (21,085 rows for each
booking of a load run, and growing), on both backends' query plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from hub import ledger
from tests.conftest import World, slot


def test_the_clash_query_reads_index_ranges_only(world: World, raw: Engine) -> None:
    doctor, patient = world.doctor(), world.patient()
    world.book(patient, doctor, slot(10))  # a table with rows, so the planner has a choice
    start = slot(11)
    bound = ledger._CLASHES.statement.params(
        start=start,
        end=start + timedelta(minutes=60),
        since=start - ledger.LONGEST,
        doctor_id=doctor.id,
        patient_id=patient.id,
        one_from=datetime.now(UTC),
        besides=0,
    )
    sql = str(bound.compile(dialect=raw.dialect, compile_kwargs={"literal_binds": True}))
    with raw.connect() as conn:
        if raw.dialect.name == "sqlite":
            plan = [str(row[3]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]
            reads = [step for step in plan if "appointments" in step]
            assert len(reads) == 3 and all(s.startswith("SEARCH") for s in reads), plan
        else:
            plan = [row._mapping for row in conn.execute(text(f"EXPLAIN {sql}"))]
            assert len(plan) == 3, plan
            assert all(step["type"] in ("range", "ref") and step["key"] for step in plan), plan
