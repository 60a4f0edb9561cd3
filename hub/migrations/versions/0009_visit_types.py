"""Visit types, and the occupancy that refuses overlapping appointments in the database.

Each doctor may define visit types (name, minutes, buffer after, online or front desk only);
an appointment records its type (`visit_type_id`), the buffer it was booked with
(`buffer_minutes`) and the patient's `reason`.

The UNIQUE keys on appointments refuse only equal starts. Overlap is refused by `occupancy`:
one row per 5-minute unit of a doctor's time that an active appointment takes (its visit and
its buffer), under a UNIQUE key on (doctor_id, unit_start). `unit_start` is minutes since
1970-01-01 UTC (a multiple of 5), an integer so that both engines compare it exactly.

The rows are written by triggers on appointments, not by the hub: an INSERT of an active
appointment inserts its units in the same statement (one INSERT ... SELECT over
`occupancy_units`, the numbers 0..287), and an UPDATE that cancels, reactivates or moves one
deletes and rewrites them; deleting an appointment deletes them (ON DELETE CASCADE). So
whatever writes an appointment, the service or raw SQL, an overlapping one of the same doctor
fails with a duplicate key on `uq_occupancy_doctor_unit` and its statement is undone, and an
occupancy row never outlives its appointment's activity. Triggers are the construct both
engines share: SQLite has no stored procedures and allows no CTE inside a trigger, MariaDB
no exclusion constraint; a join with a numbers table works in both. An appointment is taken
to cover every unit it touches (its start rounded down, its end up): exact for the hub's
times, which lie on 5-minute marks, and never looser for others. One that would take more
than 288 units (24 hours) is refused, as the numbers would not cover it.

The backfill inserts the units of the existing active appointments; it fails (duplicate key)
if two of them already overlap, which the hub's own checks never let happen.

Creating a trigger on MariaDB needs the TRIGGER privilege (and SUPER when binary logging is on
and `log_bin_trust_function_creators` is off): run migrations as the schema's owner. The
triggers run with their definer's rights, so the application's user needs none on occupancy.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UNITS = 288  # 5-minute units in 24 hours: the longest occupancy the numbers cover
# Epoch seconds of a DATETIME column (naive UTC) on each engine, without the session's zone.
SECONDS = {
    "sqlite": "CAST(strftime('%s', {}) AS INTEGER)",
    "mysql": "TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {})",
}
DIV = {"sqlite": "/", "mysql": "DIV"}


def _bounds(dialect: str, row: str) -> tuple[str, str]:
    # The first unit's start and the end of the last, in epoch minutes: rounded outwards.
    seconds, div = SECONDS[dialect], DIV[dialect]
    start = seconds.format(f"{row}.start_at")
    end = f"{seconds.format(f'{row}.end_at')} + 60 * {row}.buffer_minutes"
    return f"(({start}) {div} 300) * 5", f"(({end} + 299) {div} 300) * 5"


def _fill(dialect: str, row: str) -> str:
    """The INSERT ... SELECT writing the units of `row` if it is active (NEW in a trigger, or
    every appointment in the backfill)."""
    first, last = _bounds(dialect, row)
    source = "" if row == "NEW" else f" CROSS JOIN appointments {row}"
    return (
        "INSERT INTO occupancy (doctor_id, unit_start, appointment_id) "
        f"SELECT {row}.doctor_id, {first} + 5 * units.n, {row}.id "
        f"FROM occupancy_units units{source} "
        f"WHERE {row}.status <> 'cancelled' AND {first} + 5 * units.n < {last}"
    )


def _too_long(dialect: str) -> str:
    first, last = _bounds(dialect, "NEW")
    return f"({last}) - ({first}) > {UNITS * 5}"


MOVED = (
    "(NEW.status = 'cancelled') <> (OLD.status = 'cancelled') OR NEW.start_at <> OLD.start_at "
    "OR NEW.end_at <> OLD.end_at OR NEW.buffer_minutes <> OLD.buffer_minutes "
    "OR NEW.doctor_id <> OLD.doctor_id"
)
TOO_LONG = "an appointment occupies at most 24 hours"


def _sqlite_triggers() -> list[str]:
    refuse = f"SELECT RAISE(ABORT, '{TOO_LONG}') WHERE NEW.status <> 'cancelled' AND "
    fill = f"{refuse}{_too_long('sqlite')}; {_fill('sqlite', 'NEW')};"
    return [
        f"CREATE TRIGGER occupancy_on_insert AFTER INSERT ON appointments BEGIN {fill} END",
        f"CREATE TRIGGER occupancy_on_update AFTER UPDATE ON appointments WHEN {MOVED} "
        f"BEGIN DELETE FROM occupancy WHERE appointment_id = OLD.id; {fill} END",
    ]


def _mysql_triggers() -> list[str]:
    fill = (
        f"IF {_too_long('mysql')} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{TOO_LONG}'; "
        f"END IF; {_fill('mysql', 'NEW')};"
    )
    return [
        "CREATE TRIGGER occupancy_on_insert AFTER INSERT ON appointments FOR EACH ROW "
        f"BEGIN IF NEW.status <> 'cancelled' THEN {fill} END IF; END",
        "CREATE TRIGGER occupancy_on_update AFTER UPDATE ON appointments FOR EACH ROW "
        f"BEGIN IF {MOVED} THEN DELETE FROM occupancy WHERE appointment_id = OLD.id; "
        f"IF NEW.status <> 'cancelled' THEN {fill} END IF; END IF; END",
    ]


def upgrade() -> None:
    dialect = "sqlite" if op.get_bind().dialect.name == "sqlite" else "mysql"
    op.create_table(
        "visit_types",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("doctor_id", sa.Integer(), sa.ForeignKey("doctors.id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("buffer_minutes", sa.Integer(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.CheckConstraint("minutes BETWEEN 5 AND 480 AND minutes % 5 = 0", name="minutes"),
        sa.CheckConstraint(
            "buffer_minutes BETWEEN 0 AND 240 AND buffer_minutes % 5 = 0", name="buffer_minutes"
        ),
        sa.Index("ix_visit_types_doctor_id", "doctor_id"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    # Plain ADD COLUMN, as in 0003: SQLite cannot rebuild a table with a generated column.
    op.add_column("appointments", sa.Column("visit_type_id", sa.Integer(), nullable=True))
    op.add_column(
        "appointments",
        sa.Column("buffer_minutes", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("appointments", sa.Column("reason", sa.String(200), nullable=True))
    if dialect != "sqlite":  # SQLite cannot add a constraint in place
        op.create_foreign_key(
            "fk_appointments_visit_type_id_visit_types",
            "appointments",
            "visit_types",
            ["visit_type_id"],
            ["id"],
            ondelete="SET NULL",
        )
    units = op.create_table(
        "occupancy_units",
        sa.Column("n", sa.Integer(), primary_key=True, autoincrement=False),
        mysql_engine="InnoDB",
    )
    op.bulk_insert(units, [{"n": n} for n in range(UNITS)])
    op.create_table(
        "occupancy",
        sa.Column(
            "appointment_id",
            sa.Integer(),
            sa.ForeignKey("appointments.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("unit_start", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("doctor_id", sa.Integer(), nullable=False),
        sa.UniqueConstraint("doctor_id", "unit_start", name="uq_occupancy_doctor_unit"),
        mysql_engine="InnoDB",
    )
    op.execute(_fill(dialect, "a"))
    for trigger in _sqlite_triggers() if dialect == "sqlite" else _mysql_triggers():
        op.execute(trigger)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS occupancy_on_update")
    op.execute("DROP TRIGGER IF EXISTS occupancy_on_insert")
    op.drop_table("occupancy")
    op.drop_table("occupancy_units")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(
            "fk_appointments_visit_type_id_visit_types", "appointments", type_="foreignkey"
        )
    op.drop_column("appointments", "reason")
    op.drop_column("appointments", "buffer_minutes")
    op.drop_column("appointments", "visit_type_id")
    op.drop_table("visit_types")
