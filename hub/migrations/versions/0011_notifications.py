"""Notifications: the messages a change sends (written in its transaction, sent by any
process's sender), and what people need for them: the patient's own time zone, a verified
email address, their preferences, a calendar feed's secret (its SHA-256), and whether a
doctor's feed names patients.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

PEOPLE = ("patients", "doctors")


def _state(name: str, values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    for table in PEOPLE:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("timezone", sa.String(64), nullable=True))
            batch.add_column(sa.Column("email_verified_at", UTCDateTime(), nullable=True))
            batch.add_column(sa.Column("notify", sa.JSON(), nullable=True))
            batch.add_column(sa.Column("feed_secret", sa.String(64), nullable=True))
            batch.create_unique_constraint(f"uq_{table}_feed_secret", ["feed_secret"])
    with op.batch_alter_table("doctors") as batch:
        batch.add_column(sa.Column("feed_names", sa.Boolean(), nullable=False, server_default="0"))
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "kind",
            _state(
                "notice",
                ("booked", "rescheduled", "cancelled", "offer", "reminder", "verify", "reset"),
            ),
            nullable=False,
        ),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column("start_at", UTCDateTime(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column(
            "state", _state("delivery", ("pending", "sent", "dropped", "failed")), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(32), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("detail", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_notifications_state_due", "notifications", ["state", "due_at"])
    op.create_index("ix_notifications_appointment_id", "notifications", ["appointment_id"])


def downgrade() -> None:
    op.drop_table("notifications")
    with op.batch_alter_table("doctors") as batch:
        batch.drop_column("feed_names")
    for table in PEOPLE:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_feed_secret", type_="unique")
            for column in ("feed_secret", "notify", "email_verified_at", "timezone"):
                batch.drop_column(column)
