"""alert notes as entries

``alert_notes`` keeps each clinician note on an alert as its own entry with author and time,
instead of one text that grew with every acknowledgement. Each existing ``alerts.note`` becomes
one entry (author unknown: the old column did not record it); ``alerts.note`` keeps the latest
note only from now on.

Revision ID: 0005_alert_notes
Revises: 0004_login
Create Date: 2026-12-03 20:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_alert_notes"
down_revision = "0004_login"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.String(length=2000), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"]),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alert_notes_alert_id", "alert_notes", ["alert_id"])
    op.execute(
        "INSERT INTO alert_notes (alert_id, author_id, created_at, text) "
        "SELECT id, NULL, COALESCE(acknowledged_at, created_at), SUBSTR(note, 1, 2000) "
        "FROM alerts WHERE note IS NOT NULL AND note <> ''"
    )


def downgrade() -> None:
    op.drop_index("ix_alert_notes_alert_id", table_name="alert_notes")
    op.drop_table("alert_notes")
