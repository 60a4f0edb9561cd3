"""The event outbox (events written in the transaction that caused them, published after
commit, replayable by version) and each doctor's slot-state version.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedules") as table:
        table.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("doctor_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(32), nullable=True),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.Index("ix_outbox_published_at", "published_at"),
        sa.UniqueConstraint("doctor_id", "version", name="uq_outbox_doctor_version"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("outbox")
    with op.batch_alter_table("schedules") as table:
        table.drop_column("version")
