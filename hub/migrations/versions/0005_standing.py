"""Accounts that can end: every account's `active` flag and `session_epoch` (a token names
the epoch it was issued in; raising it ends every session issued before), and a doctor's
`approved` flag (a self-registered doctor waits for an admin; doctors there before stay
approved).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ACCOUNTS = ("patients", "doctors", "admins")


def upgrade() -> None:
    for name in ACCOUNTS:
        with op.batch_alter_table(name) as table:
            table.add_column(sa.Column("active", sa.Boolean(), nullable=False, server_default="1"))
            table.add_column(
                sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0")
            )
    with op.batch_alter_table("doctors") as table:
        table.add_column(sa.Column("approved", sa.Boolean(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("doctors") as table:
        table.drop_column("approved")
    for name in ACCOUNTS:
        with op.batch_alter_table(name) as table:
            table.drop_column("session_epoch")
            table.drop_column("active")
