"""The waitlist: patients waiting for a time with a doctor, and the timed offers of freed
slots made to the first in line.

`live` (entries) and `open` (offers) are generated columns, 1 while the row stands and NULL
after, under UNIQUE keys: one live entry per patient and doctor, one open offer per slot of a
doctor, one open offer per entry. So two processes matching the same freed slot at once
cannot both offer it; the second INSERT fails.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _state(name: str, values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    op.create_table(
        "waitlist_entries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("doctor_id", sa.Integer(), sa.ForeignKey("doctors.id"), nullable=False),
        sa.Column("patient_id", sa.Integer(), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column(
            "visit_type_id",
            sa.Integer(),
            sa.ForeignKey("visit_types.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("times", sa.JSON(), nullable=True),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("moving_id", sa.Integer(), sa.ForeignKey("appointments.id"), nullable=True),
        sa.Column("by_role", sa.String(16), nullable=False),
        sa.Column(
            "status",
            _state("waiting", ("waiting", "offered", "booked", "left", "ended")),
            nullable=False,
        ),
        sa.Column(
            "live",
            sa.Integer(),
            sa.Computed(
                "CASE WHEN status IN ('waiting', 'offered') THEN 1 ELSE NULL END", persisted=True
            ),
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("patient_id", "doctor_id", "live", name="uq_waitlist_entries_live"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_waitlist_entries_doctor_live", "waitlist_entries", ["doctor_id", "live"])
    op.create_table(
        "waitlist_offers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("entry_id", sa.Integer(), sa.ForeignKey("waitlist_entries.id"), nullable=False),
        sa.Column("doctor_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("start_at", UTCDateTime(), nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.Column("visit_type_id", sa.Integer(), nullable=True),
        sa.Column("hold_id", sa.String(80), nullable=True),
        sa.Column(
            "state",
            _state("offer_state", ("open", "accepted", "declined", "lapsed", "withdrawn")),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column(
            "open",
            sa.Integer(),
            sa.Computed("CASE WHEN state = 'open' THEN 1 ELSE NULL END", persisted=True),
        ),
        sa.UniqueConstraint("doctor_id", "start_at", "open", name="uq_waitlist_offers_slot"),
        sa.UniqueConstraint("entry_id", "open", name="uq_waitlist_offers_entry"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_waitlist_offers_state_expires", "waitlist_offers", ["state", "expires_at"])
    op.create_index(
        "ix_waitlist_offers_patient_doctor", "waitlist_offers", ["patient_id", "doctor_id"]
    )


def downgrade() -> None:
    op.drop_table("waitlist_offers")
    op.drop_table("waitlist_entries")
