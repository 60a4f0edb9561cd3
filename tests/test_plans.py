"""Queries that run with every booking or every round of a sender read ranges of indexes,
never a whole table that grows with every booking, on both backends' query plans: the clash
query (with an OR across its rules it examined every appointment there is, 21,085 rows for
each booking of a load run) and the sender's next due time (a MIN() that scanned every
notification, 44,787 rows each round)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import ClauseElement, Engine, insert, text

from hub import ledger, notices
from hub.models import Delivery, Notice, Notification
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
    plan = _plan(raw, bound)
    if raw.dialect.name == "sqlite":
        reads = [step["detail"] for step in plan if "appointments" in str(step["detail"])]
        assert len(reads) == 3 and all(str(s).startswith("SEARCH") for s in reads), plan
    else:
        assert len(plan) == 3, plan
        assert all(step["type"] in ("range", "ref") and step["key"] for step in plan), plan


def _plan(raw: Engine, statement: ClauseElement) -> list[dict[str, object]]:
    """The backend's plan of `statement`, one dict a step (SQLite's: its detail alone)."""
    sql = str(statement.compile(dialect=raw.dialect, compile_kwargs={"literal_binds": True}))
    with raw.connect() as conn:
        if raw.dialect.name == "sqlite":
            return [
                {"detail": str(row[3])} for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
            ]
        return [dict(row._mapping) for row in conn.execute(text(f"EXPLAIN {sql}"))]


def test_the_senders_next_due_time_reads_the_due_index_in_order(world: World, raw: Engine) -> None:
    # A table of pending reminders (most of a busy clinic's notifications), some claimed.
    now = datetime.now(UTC)
    rows = [
        {
            "kind": Notice.reminder.value,
            "channel": "email",
            "role": "patient",
            "account_id": n,
            "payload": {},
            "due_at": now + timedelta(minutes=n),
            "state": (Delivery.sent if n % 3 == 0 else Delivery.pending).value,
            "attempts": 0,
            "claimed_at": now if n % 7 == 0 else None,
            "created_at": now,
        }
        for n in range(3000)
    ]
    with raw.begin() as conn:
        conn.execute(insert(Notification.__table__), rows)
        if raw.dialect.name != "sqlite":
            conn.execute(text("ANALYZE TABLE notifications"))
    plan = _plan(raw, notices.NEXT_DUE)
    if raw.dialect.name == "sqlite":
        assert [step["detail"] for step in plan] == [
            "SEARCH notifications USING INDEX ix_notifications_state_due (state=?)"
        ], plan
    else:
        assert len(plan) == 1, plan
        assert plan[0]["type"] in ("range", "ref"), plan
        assert plan[0]["key"] == "ix_notifications_state_due", plan
        assert "filesort" not in str(plan[0]["Extra"]), plan
