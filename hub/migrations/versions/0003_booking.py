"""Booking engine: per-doctor policy, late cancellation and reschedule links, the history of
every state change, and idempotency keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedules") as table:
        table.add_column(
            sa.Column("cancel_cutoff_minutes", sa.Integer(), nullable=False, server_default="1440")
        )
        table.add_column(
            sa.Column("allow_late_cancel", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        table.add_column(
            sa.Column("one_per_patient", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        table.add_column(
            sa.Column("no_show_grace_minutes", sa.Integer(), nullable=False, server_default="15")
        )
    # Plain ADD COLUMN (no batch copy): SQLite cannot rebuild a table with a generated column
    # through Alembic's batch mode, and it does not need to for these.
    op.add_column(
        "appointments",
        sa.Column("late_cancel", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("appointments", sa.Column("rescheduled_from_id", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name != "sqlite":  # SQLite cannot add a constraint in place
        op.create_foreign_key(
            "fk_appointments_rescheduled_from_id_appointments",
            "appointments",
            "appointments",
            ["rescheduled_from_id"],
            ["id"],
        )
    op.create_table(
        "appointment_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("appointment_id", sa.Integer(), sa.ForeignKey("appointments.id"), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Index("ix_appointment_events_appointment_id", "appointment_id"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("patient_id", sa.Integer(), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("appointment_id", sa.Integer(), sa.ForeignKey("appointments.id"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("patient_id", "key", name="uq_idempotency_keys_patient_key"),
        sa.Index("ix_idempotency_keys_created_at", "created_at"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("appointment_events")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(
            "fk_appointments_rescheduled_from_id_appointments", "appointments", type_="foreignkey"
        )
    op.drop_column("appointments", "rescheduled_from_id")
    op.drop_column("appointments", "late_cancel")
    with op.batch_alter_table("schedules") as table:
        for column in (
            "no_show_grace_minutes",
            "one_per_patient",
            "allow_late_cancel",
            "cancel_cutoff_minutes",
        ):
            table.drop_column(column)
