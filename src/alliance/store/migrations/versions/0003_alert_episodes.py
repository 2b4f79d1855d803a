"""alert episodes, the patient's status, the clinic's frozen norms

Alerts become episodes (alliance.dynamics.episodes): the columns of an episode beside the
clinician's workflow ones. Existing alerts become open episodes judged at the session they
were raised at (state "open", last_session = session). Patients get their status; every
patient with answers is marked stale so the application's start-up sweep computes the new
episodes and statuses. The clinic_norms table keeps the first norms the clinic gets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("last_session", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("closed_session", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("state", sa.String(length=8), nullable=False, server_default="open")
        )
        batch.add_column(sa.Column("escalated_session", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("title", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("detail", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("close_reason", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("method", sa.String(length=64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("value", sa.Float(), nullable=True))
        batch.add_column(sa.Column("threshold", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("score", sa.String(length=64), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("key_status", sa.String(length=32), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE alerts SET last_session = session, state = 'open'")
    with op.batch_alter_table("alerts") as batch:
        batch.alter_column("last_session", existing_type=sa.Integer(), nullable=False)

    with op.batch_alter_table("patients") as batch:
        batch.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="steady")
        )
        batch.add_column(sa.Column("status_reason", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("status_since", sa.Integer(), nullable=True))
    stale = sa.text(
        "UPDATE patients SET alerts_stale = :stale "
        "WHERE id IN (SELECT DISTINCT patient_id FROM responses)"
    ).bindparams(stale=True)
    op.execute(stale)

    op.create_table(
        "clinic_norms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.String(length=32), nullable=False),
        sa.Column("score", sa.String(length=64), nullable=False),
        sa.Column("sd", sa.Float(), nullable=False),
        sa.Column("reliability", sa.Float(), nullable=False),
        sa.Column("mean", sa.Float(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("n_patients", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("instrument_id", "score"),
    )


def downgrade() -> None:
    op.drop_table("clinic_norms")
    # Not recreated on SQLite (other tables' foreign keys point at patients): a plain
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later).
    with op.batch_alter_table("patients", recreate="never") as batch:
        batch.drop_column("status_since")
        batch.drop_column("status_reason")
        batch.drop_column("status")
    with op.batch_alter_table("alerts") as batch:
        for column in (
            "updated_at",
            "key_status",
            "score",
            "threshold",
            "value",
            "method",
            "close_reason",
            "detail",
            "title",
            "escalated_session",
            "state",
            "closed_session",
            "last_session",
        ):
            batch.drop_column(column)
