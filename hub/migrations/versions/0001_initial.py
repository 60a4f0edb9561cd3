"""Initial schema: specializations, doctors, patients, admins, appointments.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from hub.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SPECIALIZATIONS = (
    "Cardiology",
    "Dermatology",
    "Neurology",
    "Pediatrics",
    "Psychiatry",
    "Oncology",
    "Orthopedics",
    "Radiology",
    "Urology",
    "Gastroenterology",
    "Endocrinology",
    "Ophthalmology",
)
GENDERS = "gender IN ('male', 'female', 'other', 'undisclosed')"
STATUSES = "status IN ('scheduled', 'completed', 'cancelled', 'no_show')"
MYSQL: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


def _person(table: str) -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("first_name", sa.String(50), nullable=False),
        sa.Column("last_name", sa.String(50), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("gender", sa.String(16), nullable=False),
        sa.Column("email", sa.String(100), nullable=False, unique=True),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("address", sa.String(200), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        *_timestamps(),
    ]


def upgrade() -> None:
    specializations = op.create_table(
        "specializations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(50), nullable=False, unique=True),
        **MYSQL,
    )
    op.bulk_insert(specializations, [{"name": name} for name in SPECIALIZATIONS])
    op.create_table(
        "patients",
        *_person("patients"),
        sa.CheckConstraint(GENDERS, name="gender"),
        **MYSQL,
    )
    op.create_table(
        "doctors",
        *_person("doctors"),
        sa.Column(
            "specialization_id", sa.Integer(), sa.ForeignKey("specializations.id"), nullable=False
        ),
        sa.CheckConstraint(GENDERS, name="gender"),
        sa.Index("ix_doctors_specialization_id", "specialization_id"),
        **MYSQL,
    )
    op.create_table(
        "admins",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(100), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        *_timestamps(),
        **MYSQL,
    )
    op.create_table(
        "appointments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("doctor_id", sa.Integer(), sa.ForeignKey("doctors.id"), nullable=False),
        sa.Column("patient_id", sa.Integer(), sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("start_at", UTCDateTime(), nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cancel_reason", sa.String(500), nullable=True),
        sa.Column(
            "active",
            sa.Integer(),
            sa.Computed("CASE WHEN status <> 'cancelled' THEN 1 ELSE NULL END", persisted=True),
        ),
        *_timestamps(),
        sa.CheckConstraint(STATUSES, name="status"),
        sa.CheckConstraint("end_at > start_at", name="ends_after_start"),
        sa.UniqueConstraint("doctor_id", "start_at", "active", name="uq_appointments_doctor_slot"),
        sa.UniqueConstraint(
            "patient_id", "start_at", "active", name="uq_appointments_patient_slot"
        ),
        sa.Index("ix_appointments_doctor_start", "doctor_id", "start_at"),
        sa.Index("ix_appointments_patient_id", "patient_id"),
        **MYSQL,
    )


def downgrade() -> None:
    for table in ("appointments", "admins", "doctors", "patients", "specializations"):
        op.drop_table(table)
