"""expected trajectories: the clinic's model fits and each session's expected range

``expected_models`` keeps every fit of the clinic's growth model of a score (the newest is
in force); ``expected_bands`` the expected range of each analysed session, computed once
from the fit then in force, so that a refit never moves an earlier decision.

Revision ID: 0007_expected_bands
Revises: 0006_session_dates
Create Date: 2026-12-04 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_expected_bands"
down_revision = "0006_session_dates"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "expected_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("score", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("n_patients", sa.Integer(), nullable=False),
        sa.Column("n_sessions", sa.Integer(), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_expected_models_score", "expected_models", ["score"])
    op.create_table(
        "expected_bands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("session", sa.Integer(), nullable=False),
        sa.Column("score", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("expected", sa.Float(), nullable=False),
        sa.Column("sd", sa.Float(), nullable=False),
        sa.Column("lower", sa.Float(), nullable=False),
        sa.Column("upper", sa.Float(), nullable=False),
        sa.Column("observed", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.ForeignKeyConstraint(["model_id"], ["expected_models.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_id", "session", "score"),
    )
    op.create_index("ix_expected_bands_patient_id", "expected_bands", ["patient_id"])


def downgrade() -> None:
    op.drop_index("ix_expected_bands_patient_id", table_name="expected_bands")
    op.drop_table("expected_bands")
    op.drop_index("ix_expected_models_score", table_name="expected_models")
    op.drop_table("expected_models")
