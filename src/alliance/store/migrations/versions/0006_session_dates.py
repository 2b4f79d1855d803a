"""sessions indexed by patient and date

The caseload orders every visible patient by the date of their last session and shows one
page of them; with ``(patient_id, date)`` indexed the database finds each patient's last
session by a lookup instead of grouping the whole session table on each page view.

Revision ID: 0006_session_dates
Revises: 0005_alert_notes
Create Date: 2026-12-04 13:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0006_session_dates"
down_revision = "0005_alert_notes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sessions_patient_date", "sessions", ["patient_id", "date"])


def downgrade() -> None:
    op.drop_index("ix_sessions_patient_date", table_name="sessions")
