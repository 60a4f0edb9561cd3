"""Per-doctor availability: time zone, weekly hours, slot length, buffer, notice, horizon,
date overrides. Every existing doctor gets the original rule.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from hub.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ORIGINAL = {
    day: [["09:00", "17:00"]] for day in ("monday", "tuesday", "wednesday", "thursday", "friday")
}


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("doctor_id", sa.Integer(), sa.ForeignKey("doctors.id"), primary_key=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("slot_minutes", sa.Integer(), nullable=False),
        sa.Column("buffer_minutes", sa.Integer(), nullable=False),
        sa.Column("notice_minutes", sa.Integer(), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("weekly", sa.JSON(), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("slot_minutes BETWEEN 5 AND 240", name="slot_minutes"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    op.execute(
        sa.text(
            "INSERT INTO schedules (doctor_id, timezone, slot_minutes, buffer_minutes, "
            "notice_minutes, horizon_days, weekly, overrides, updated_at) "
            "SELECT id, 'UTC', 60, 0, 60, 90, :weekly, '[]', :now FROM doctors"
        ).bindparams(weekly=json.dumps(ORIGINAL), now=now)
    )


def downgrade() -> None:
    op.drop_table("schedules")
